"""The book's sliding-window data loader, in NumPy.

``SlidingWindowDataset`` views one token array as overlapping windows without
copying them; ``Batcher`` cuts an epoch of such windows into batches, each one a
single vectorized gather; ``create_dataloader`` is the NumPy port of the book's
``create_dataloader_v1`` (``GPTDatasetV1`` + torch ``DataLoader``).
"""

from __future__ import annotations

import dataclasses
import operator
import os
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from flax_embed.batch_iterator import BatchIterator
from flax_embed.fingerprint import dataset_fingerprint
from flax_embed.tokenizer import encode
from flax_embed.validation import check_positive_int

__all__ = [
    "Batch",
    "BatchIterator",
    "Batcher",
    "SlidingWindowDataset",
    "WindowSource",
    "create_dataloader",
    "epoch_permutation",
]

Batch = tuple[np.ndarray, np.ndarray]
"""``(inputs_BxT, targets_BxT)``, two int32 arrays; targets are inputs shifted by one."""


class WindowSource(Protocol):
    """What ``Batcher`` reads: a random-access source of ``(inputs, targets)`` pairs."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Batch: ...


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
        if tokens_N.ndim != 1:
            raise ValueError(f"token_ids must have rank 1, got shape {tokens_N.shape}")
        if tokens_N.size and not np.issubdtype(tokens_N.dtype, np.integer):
            raise TypeError(f"token_ids must be integers, got dtype {tokens_N.dtype}")
        if tokens_N.size == 0:
            tokens_N = tokens_N.astype(np.int32)
        if tokens_N.dtype.itemsize > 4 or tokens_N.dtype == np.uint32:
            if tokens_N.size and (tokens_N.min() < 0 or tokens_N.max() > np.iinfo(np.int32).max):
                raise ValueError("token_ids do not fit in int32")
            tokens_N = tokens_N.astype(np.int32)
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
    ) -> SlidingWindowDataset:
        """Windows over a token file (``.npy``, or ``.bin`` + sidecar), memory-mapped.

        Nothing is copied: resident memory stays O(batch) for any file size. The file
        is checked first (see ``token_files.read_token_file`` for ``vocab_size`` and
        ``check_ids``). Returns a ``token_files.TokenFileDataset``.
        """
        from flax_embed.token_files import TokenFileDataset

        return TokenFileDataset(
            path, max_length, stride, vocab_size=vocab_size, check_ids=check_ids
        )

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


def epoch_permutation(num_windows: int, seed: int, epoch: int) -> np.ndarray:
    """The window order of one shuffled epoch: the same on every machine.

    A permutation of ``range(num_windows)`` drawn from ``PCG64`` seeded with
    ``(seed, epoch)``, so each epoch has its own order and every window appears once.
    """
    rng = np.random.Generator(np.random.PCG64([int(seed), int(epoch)]))
    return rng.permutation(num_windows)


@dataclasses.dataclass
class Batcher:
    """Cuts a window source into batches, epoch after epoch, for one shard of the processes.

    Each ``iter(batcher)`` runs one epoch and the next ``iter`` the following one,
    as a torch ``DataLoader`` does; ``batcher.iterate()`` runs epoch after epoch and
    can be checkpointed and resumed (``get_state`` / ``set_state``, see
    ``BatchIterator``). With ``shuffle=False`` the windows come in order; with
    ``shuffle=True`` in the order of ``epoch_permutation(len(dataset), seed,
    epoch)``, a new order every epoch. ``len(batcher)`` is the number of batches in
    an epoch.

    Sharding: ``batch_size`` is the *global* batch size. Global batch ``b`` of an
    epoch is the same ``batch_size`` windows whatever the number of shards; shard
    ``i`` of ``P`` reads only its contiguous slice of it, rows
    ``[i * B/P, (i + 1) * B/P)``, so the shards are disjoint, their union is the
    epoch, and stacking the shards' batches in shard order gives the one-process
    batch. ``shard_index`` / ``shard_count`` default to ``jax.process_index()`` /
    ``jax.process_count()`` (call ``jax.distributed.initialize()`` first).

    Example::

      >>> ds = SlidingWindowDataset(np.arange(100), max_length=4, stride=4)
      >>> inputs_BxT, targets_BxT = next(iter(Batcher(ds, batch_size=8)))
      >>> inputs_BxT.shape, targets_BxT.dtype
      ((8, 4), dtype('int32'))
      >>> half = Batcher(ds, batch_size=8, shard_index=1, shard_count=2)
      >>> next(iter(half))[0].shape                  # rows 4..7 of the global batch
      (4, 4)

    Attributes:
      dataset: the windows; a ``SlidingWindowDataset`` or any source with
        ``__len__`` and ``__getitem__`` returning ``(inputs, targets)``.
      batch_size: windows per global batch, ``B``; a multiple of ``shard_count``.
        Each shard's batches hold ``local_batch_size = B // shard_count`` windows.
      shuffle: whether each epoch visits the windows in a seeded random order.
      drop_last: whether to drop the last batch when it has fewer than ``B`` windows.
        With several shards a kept short batch must split evenly over them.
      seed: the shuffle seed.
      shard_index: which shard this process reads, in ``[0, shard_count)``.
      shard_count: how many shards (processes) read the dataset, at least 1 and at
        most the number of windows.
    """

    dataset: WindowSource
    batch_size: int
    shuffle: bool = True
    drop_last: bool = True
    seed: int = 0
    epoch: int = dataclasses.field(default=0, kw_only=True)
    """The epoch the next ``iter()`` runs."""
    shard_index: int | None = dataclasses.field(default=None, kw_only=True)
    shard_count: int | None = dataclasses.field(default=None, kw_only=True)
    _order_cache: tuple[tuple, np.ndarray] | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )
    _fingerprint_cache: tuple[int, str] | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self):
        check_positive_int("batch_size", self.batch_size)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {type(self.seed).__name__}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")
        self._check_shards()

    def _check_shards(self) -> None:
        if self.shard_index is None or self.shard_count is None:
            import jax  # only to default to this process's place among the processes

            if self.shard_count is None:
                self.shard_count = jax.process_count()
            if self.shard_index is None:
                self.shard_index = jax.process_index()
        count = self.shard_count = check_positive_int("shard_count", self.shard_count)
        index = self.shard_index
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"shard_index must be an int, got {type(index).__name__}")
        if not 0 <= index < count:
            raise ValueError(
                f"shard_index={index} is out of range for shard_count={count}: "
                f"expected 0 <= shard_index < {count}"
            )
        self.shard_index = int(index)
        n, b = len(self.dataset), self.batch_size
        if count > n:
            raise ValueError(
                f"shard_count={count} exceeds the {n} windows of the dataset: "
                "every shard needs at least one window"
            )
        if b % count:
            raise ValueError(
                f"batch_size={b} must be a multiple of shard_count={count}: batch_size is "
                f"the global batch, of which each shard reads batch_size // shard_count windows"
            )
        if not self.drop_last and (short := n % b) and short % count:
            raise ValueError(
                f"drop_last=False keeps a last batch of {short} windows, which does not "
                f"split evenly over shard_count={count} shards; use drop_last=True"
            )

    def __len__(self) -> int:
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    @property
    def local_batch_size(self) -> int:
        """Windows per full batch of this shard: ``batch_size // shard_count``."""
        return self.batch_size // self.shard_count

    def window_order(self, epoch: int) -> np.ndarray:
        """The window indices of ``epoch`` in the order they are batched (all shards)."""
        n = len(self.dataset)
        return epoch_permutation(n, self.seed, epoch) if self.shuffle else np.arange(n)

    def batch_windows(self, epoch: int, index: int) -> np.ndarray:
        """The window indices of global batch ``index`` of ``epoch``: every shard's rows."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        # Keyed by everything the order depends on: the fields may be changed in place.
        key = (epoch, self.seed, self.shuffle, len(self.dataset))
        cached = self._order_cache
        if cached is None or cached[0] != key:
            cached = self._order_cache = (key, self.window_order(epoch))
        return cached[1][index * self.batch_size : (index + 1) * self.batch_size]

    def shard_windows(self, epoch: int, index: int) -> np.ndarray:
        """The window indices this shard reads of global batch ``index``: a contiguous slice."""
        windows = self.batch_windows(epoch, index)
        rows = len(windows) // self.shard_count
        return windows[self.shard_index * rows : (self.shard_index + 1) * rows]

    def local_batch(self, epoch: int, index: int) -> Batch:
        """This shard's part of global batch ``index`` of ``epoch``: one gather.

        Returns:
          ``(inputs_bxT, targets_bxT)`` int32 with ``b = local_batch_size`` (fewer
          for a short last batch kept by ``drop_last=False``).
        """
        indices_B = self.shard_windows(epoch, index)
        gather = getattr(self.dataset, "gather", None)
        if gather is not None:
            return gather(indices_B)
        pairs = [self.dataset[int(i)] for i in indices_B]
        return (
            np.stack([np.asarray(x, np.int32) for x, _ in pairs]),
            np.stack([np.asarray(y, np.int32) for _, y in pairs]),
        )

    def fingerprint(self) -> dict[str, Any]:
        """What an iterator state must match: the dataset's content and the batch options.

        Shards are not part of it: a state restores on any number of processes.
        """
        cached = self._fingerprint_cache
        if cached is None or cached[0] != id(self.dataset):
            cached = self._fingerprint_cache = (id(self.dataset), dataset_fingerprint(self.dataset))
        return {
            "dataset": cached[1],
            "batch_size": int(self.batch_size),
            "shuffle": bool(self.shuffle),
            "drop_last": bool(self.drop_last),
        }

    def iterate(self, num_epochs: int | None = None) -> BatchIterator:
        """A resumable iterator over ``num_epochs`` epochs (``None``: no end) from ``self.epoch``.

        It does not advance ``self.epoch``; see ``BatchIterator`` for
        ``get_state`` / ``set_state``.
        """
        return BatchIterator(self, self.epoch, num_epochs)

    def iter_epoch(self, epoch: int) -> BatchIterator:
        """Yields the batches of ``epoch`` without advancing ``self.epoch``."""
        return BatchIterator(self, epoch, 1)

    def __iter__(self) -> BatchIterator:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self.iter_epoch(epoch)


def create_dataloader(
    text: str,
    batch_size: int = 4,
    max_length: int = 256,
    stride: int = 128,
    shuffle: bool = True,
    drop_last: bool = True,
    seed: int = 0,
    *,
    shard_index: int | None = None,
    shard_count: int | None = None,
) -> Batcher:
    """The NumPy port of the book's ``create_dataloader_v1``, with its defaults.

    Tokenizes ``text`` with GPT-2 BPE (``<|endoftext|>`` allowed), cuts it into
    sliding windows and batches them. With ``shuffle=False`` the batches equal the
    book's ``GPTDatasetV1`` + torch ``DataLoader`` batch for batch.
    ``batch_size`` is global; ``shard_index`` / ``shard_count`` as in ``Batcher``.

    Returns:
      A ``Batcher`` yielding ``(inputs_BxT, targets_BxT)`` int32 arrays.
    """
    dataset = SlidingWindowDataset(encode(text), max_length=max_length, stride=stride)
    return Batcher(
        dataset,
        batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        seed=seed,
        shard_index=shard_index,
        shard_count=shard_count,
    )
