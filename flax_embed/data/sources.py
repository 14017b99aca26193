"""The random-access window sources that ``Batcher`` reads.

``SlidingWindowDataset`` views one token array as overlapping input/target windows
without copying them (the book's ``GPTDatasetV1``); ``TokenFileDataset`` is the same
over a memory-mapped token file, with resident memory bounded by the batch.
Both satisfy Grain's ``RandomAccessDataSource`` protocol.
"""

from __future__ import annotations

import mmap
import operator
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from flax_embed._validation import as_token_ids, check_ids_1d, check_positive_int
from flax_embed.data.shards import ShardedTokenDataset, open_shards
from flax_embed.data.token_files import TokenFileError, open_token_file
from flax_embed.data.windows import Batch

__all__ = ["SlidingWindowDataset", "TokenFileDataset"]


class SlidingWindowDataset:
    """Input/target windows over one token array, as the book's ``GPTDatasetV1``.

    Window ``i`` starts at token ``i * stride``; its inputs are
    ``token_ids[i*stride : i*stride + max_length]`` and its targets the same span
    shifted by one token. As in the book (``range(0, N - max_length, stride)``) there
    are ``(N - max_length - 1) // stride + 1`` windows, so every target exists.

    The windows are a strided view of ``token_ids`` (``np.lib.stride_tricks``): no
    window is copied until it is read. A ``np.memmap`` works too, in any integer
    dtype (uint16 token files included); what is read is widened to int32.

    It satisfies Grain's ``RandomAccessDataSource`` protocol.

    Example::

      >>> ds = SlidingWindowDataset(np.arange(10), max_length=4, stride=2)
      >>> len(ds)
      3
      >>> ds[1]
      (array([2, 3, 4, 5], dtype=int32), array([3, 4, 5, 6], dtype=int32))

    Args:
      token_ids: the token ids, shape ``(N,)``, an integer array-like.
      max_length: tokens per window, ``T``.
      stride: tokens between the starts of consecutive windows.
    """

    def __init__(self, token_ids: np.ndarray | Sequence[int], max_length: int, stride: int):
        self.max_length = check_positive_int("max_length", max_length)
        self.stride = check_positive_int("stride", stride)
        tokens_N = token_ids if isinstance(token_ids, np.ndarray) else np.asarray(token_ids)
        check_ids_1d("token_ids", tokens_N)
        if tokens_N.size == 0:
            tokens_N = tokens_N.astype(np.int32)
        if tokens_N.dtype.itemsize > 4 or tokens_N.dtype == np.uint32:
            # int32, checked: an int64 id >= 2**31 would wrap at jit's boundary.
            tokens_N = as_token_ids(tokens_N, vocab_size=2**31)
        n = tokens_N.shape[0]
        if n < self.max_length + 1:
            raise ValueError(
                f"text too short: {n} tokens, but one window of max_length={self.max_length} "
                f"needs at least {self.max_length + 1} (inputs plus the shifted target)"
            )
        self.token_ids = tokens_N
        # One row per window start, max_length + 1 tokens each: inputs are [:-1], targets [1:].
        self._windows_WxT1 = np.lib.stride_tricks.sliding_window_view(
            tokens_N, self.max_length + 1
        )[:: self.stride]

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        max_length: int,
        stride: int,
        *,
        vocab_size: int | None = None,
        check_ids: bool = True,
        dtype: str | np.dtype | None = None,
    ) -> SlidingWindowDataset:
        """Windows over a token file (``.npy``, or ``.bin`` + sidecar), memory-mapped.

        Nothing is copied: resident memory stays O(batch) for any file size. The file
        is checked first (see ``token_files.read_token_file`` for ``vocab_size``,
        ``check_ids`` and ``dtype``: ``dtype="uint16"`` reads nanoGPT's raw ``.bin``
        files, which have no sidecar). Returns a ``TokenFileDataset``.
        """
        return TokenFileDataset(
            path, max_length, stride, vocab_size=vocab_size, check_ids=check_ids, dtype=dtype
        )

    @classmethod
    def from_files(
        cls,
        paths_or_manifest: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        max_length: int,
        stride: int,
        *,
        vocab_size: int | None = None,
        check_ids: bool = True,
        verify: bool = True,
        dtype: str | np.dtype | None = None,
    ) -> ShardedTokenDataset:
        """Windows over several token files read as one stream, each window with ``pread``.

        The batches equal those of one ``SlidingWindowDataset`` over the concatenated
        ids, windows that cross a file boundary included; resident memory stays
        O(batch), as with ``from_file``.

        Args:
          paths_or_manifest: a list of token files, or the ``manifest.json`` (or the
            folder holding it) that ``flax-embed tokenize -o DIR/`` writes. With a
            manifest, each shard's size, and with ``verify=True`` its sha256, must
            agree with it (else ``TokenFileError`` naming the shard).
          max_length: tokens per window, ``T``.
          stride: tokens between the starts of consecutive windows.
          vocab_size: as in ``read_token_file``, for every file (default: the manifest's).
          check_ids: as in ``read_token_file``, for every file.
          verify: with a manifest, check each shard's sha256 against it (reads every shard).
          dtype: as in ``read_token_file``, for every file (raw ``.bin`` files).

        Returns:
          ShardedTokenDataset: the windows, ``(inputs_T, targets_T)`` int32 pairs.
        """
        return open_shards(paths_or_manifest, max_length, stride, vocab_size=vocab_size,
                           check_ids=check_ids, verify=verify, dtype=dtype)  # fmt: skip

    def __len__(self) -> int:
        return self._windows_WxT1.shape[0]

    def __getitem__(self, index: int) -> Batch:
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(f"window index must be an int, got {type(index).__name__}") from None
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"window index {i} out of range for {n} windows")
        window_T1 = self._windows_WxT1[i].astype(np.int32)
        return window_T1[:-1], window_T1[1:]

    def gather(self, indices_B: np.ndarray) -> Batch:
        """Reads the windows ``indices_B`` at once: one fancy-indexing gather.

        Returns:
          ``(inputs_BxT, targets_BxT)``, int32 arrays of shape ``(B, max_length)``.
        """
        windows_BxT1 = self._windows_WxT1[np.asarray(indices_B, dtype=np.intp)]
        windows_BxT1 = windows_BxT1.astype(np.int32, copy=False)
        return windows_BxT1[:, :-1], windows_BxT1[:, 1:]

    def __repr__(self) -> str:
        return (
            f"SlidingWindowDataset(num_tokens={self.token_ids.shape[0]}, "
            f"max_length={self.max_length}, stride={self.stride}, num_windows={len(self)})"
        )


class TokenFileDataset(SlidingWindowDataset):
    """``SlidingWindowDataset`` over a memory-mapped token file; ``from_file`` builds it.

    The windows are views of the mapping: nothing is read until a window is. Pages a
    read maps into the process (the kernel maps up to a large folio, ~1-2 MB, per
    fault) are handed back with ``madvise(MADV_DONTNEED)`` every ``RELEASE_EVERY``
    windows, so resident memory stays O(batch) however large the file is; the data
    stays in the page cache, and a re-read is a minor fault. Pickling reopens the file
    by path (no copy of the ids), e.g. for Grain's worker processes.

    Example::

      ds = SlidingWindowDataset.from_file("tokens.npy", max_length=256, stride=128)
      for inputs_BxT, targets_BxT in Batcher(ds, batch_size=8):
          ...

    Args:
      path: a token file (see ``read_token_file``).
      max_length: tokens per window, ``T``.
      stride: tokens between the starts of consecutive windows.
      vocab_size: see ``read_token_file``.
      check_ids: see ``read_token_file``.
      dtype: see ``read_token_file`` (``"uint16"`` for nanoGPT's raw ``.bin`` files).
    """

    RELEASE_EVERY = 16
    """Windows read between two page releases: at most ~16 x 2 MB mapped at a time.

    Measured on a 1 GB file: each unit adds about 2 MB to the peak RSS, while the time
    per window hardly depends on it (about 5 us, spent re-faulting released pages)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_length: int,
        stride: int,
        *,
        vocab_size: int | None = None,
        check_ids: bool = True,
        dtype: str | np.dtype | None = None,
    ):
        self.path = Path(path)
        self.vocab_size = vocab_size
        self.dtype = dtype
        tokens_N, vocab = open_token_file(self.path, vocab_size, check_ids, dtype=dtype)
        self._mapping = getattr(tokens_N, "_mmap", None)
        # The mapping's end in the file: reads check that the file still reaches it.
        self._mapped_end = getattr(tokens_N, "offset", 0) + tokens_N.nbytes
        if tokens_N.dtype == np.uint32:
            # The base class would copy uint32 into int32; a view is exact for ids < 2**31.
            if vocab > 2**31:
                raise ValueError(f"{path}: vocab_size {vocab} > 2**31 ids do not fit int32")
            tokens_N = tokens_N.view(np.int32)
        super().__init__(tokens_N, max_length, stride)
        self._reads = 0

    def _count_reads(self, windows: int) -> None:
        self._reads += windows
        if self._reads >= self.RELEASE_EVERY:
            self.release_pages()

    def check_size(self) -> None:
        """Raises TokenFileError if the file is now shorter than when it was mapped.

        Called before every read: reading a page past the end of a file that another
        process truncated kills the process with SIGBUS, which no exception handler
        sees. One ``fstat`` (about a microsecond). What remains: a truncation between
        this check and the read (microseconds) still ends in SIGBUS; a file
        *replaced* by a rename is not an error (the old one stays mapped, whole);
        content rewritten in place is read as it now is.
        """
        if self._mapping is None:
            return
        try:
            size = self._mapping.size()
        except (OSError, ValueError):  # closed
            return
        if size < self._mapped_end:
            raise TokenFileError(
                f"{self.path}: truncated while in use: {size} bytes, but {self._mapped_end} "
                "were mapped (another process shortened it); reading on would crash "
                "the process (SIGBUS)"
            )

    def __getitem__(self, index: int) -> Batch:
        self.check_size()
        pair = super().__getitem__(index)
        self._count_reads(1)
        return pair

    def gather(self, indices_B: np.ndarray) -> Batch:
        indices_B = np.asarray(indices_B, dtype=np.intp)
        self.check_size()
        step = self.RELEASE_EVERY
        if indices_B.shape[0] <= step:
            batch = super().gather(indices_B)
            self._count_reads(indices_B.shape[0])
            return batch
        parts = []
        for i in range(0, indices_B.shape[0], step):
            parts.append(super().gather(indices_B[i : i + step]))
            self._count_reads(step)
        return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])

    def release_pages(self) -> None:
        """Unmaps the file's pages from this process now (they stay in the page cache)."""
        self._reads = 0
        if self._mapping is not None and hasattr(self._mapping, "madvise"):
            self._mapping.madvise(mmap.MADV_DONTNEED)

    def __getstate__(self) -> dict:
        return {"path": self.path, "max_length": self.max_length, "stride": self.stride,
                "vocab_size": self.vocab_size, "dtype": self.dtype}  # fmt: skip

    def __setstate__(self, state: dict) -> None:
        self.__init__(**{"dtype": None, **state}, check_ids=False)  # checked when first opened

    def __repr__(self) -> str:
        fields = super().__repr__().partition("(")[2]
        return f"TokenFileDataset(path={str(self.path)!r}, {fields}"
