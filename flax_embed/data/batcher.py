"""Batches of windows, epoch after epoch: the book's ``DataLoader``, in NumPy.

``Batcher`` cuts an epoch of a window source into batches, each one a single
vectorized gather; ``create_dataloader`` is the NumPy port of the book's
``create_dataloader_v1`` (``GPTDatasetV1`` + torch ``DataLoader``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from flax_embed._validation import check_positive_int
from flax_embed.data.fingerprint import dataset_fingerprint
from flax_embed.data.iterator import BatchIterator
from flax_embed.data.shuffle import index_shuffle
from flax_embed.data.sources import SlidingWindowDataset
from flax_embed.data.windows import Batch, WindowSource
from flax_embed.tokenizer import encode

__all__ = ["Batcher", "create_dataloader"]


def _process_index() -> int:
    import jax  # only to default to this process's place among the processes

    return jax.process_index()


def _process_count() -> int:
    import jax

    return jax.process_count()


@dataclasses.dataclass(frozen=True)
class Batcher:
    """Cuts a window source into batches, epoch after epoch, for one shard of the processes.

    Immutable: the options are fixed at construction (a frozen dataclass;
    ``dataclasses.replace`` makes a checked, changed copy) and a ``Batcher`` holds no
    position. Where an iteration stands, its epoch and batch, lives in the iterator
    (``BatchIterator``), as in Grain. Any batch of any epoch is computed directly
    (``local_batch(epoch, index)``).

    ``iter(batcher)`` runs epoch 0, every time, and ``len(batcher)`` is the number of
    batches in an epoch; ``batcher.iter_epoch(e)`` runs epoch ``e``, and
    ``batcher.iterate(num_epochs)`` runs epoch after epoch, reshuffled every epoch,
    and can be checkpointed and resumed (``get_state`` / ``set_state``). With
    ``shuffle=False`` the windows come in order; with ``shuffle=True`` position ``p``
    of epoch ``e`` reads window ``index_shuffle(p, len(dataset), seed, e)``, a keyed
    permutation computed per index in O(1) memory (``flax_embed.data.shuffle``).

    Sharding: ``batch_size`` is the *global* batch size. Global batch ``b`` of an
    epoch is the same ``batch_size`` windows whatever the number of shards; shard
    ``i`` of ``P`` reads only its contiguous slice of it, rows
    ``[i * B/P, (i + 1) * B/P)``, so the shards are disjoint, their union is the
    epoch, and stacking the shards' batches in shard order gives the one-process
    batch. ``shard_index`` / ``shard_count`` default to ``jax.process_index()`` /
    ``jax.process_count()`` at construction (call ``jax.distributed.initialize()`` first).

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
      seed: the shuffle seed, in ``[0, 2**64)``.
      shard_index: which shard this process reads, in ``[0, shard_count)``.
      shard_count: how many shards (processes) read the dataset, at least 1 and at
        most the number of windows.
    """

    dataset: WindowSource
    batch_size: int
    shuffle: bool = True
    drop_last: bool = True
    seed: int = 0
    shard_index: int = dataclasses.field(default_factory=_process_index, kw_only=True)
    shard_count: int = dataclasses.field(default_factory=_process_count, kw_only=True)

    def __post_init__(self):
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("seed", self.seed, minimum=0, maximum=(1 << 64) - 1)
        self._check_shards()

    def _check_shards(self) -> None:
        count = check_positive_int("shard_count", self.shard_count)
        index = check_positive_int("shard_index", self.shard_index, minimum=0)
        if index >= count:
            raise ValueError(
                f"shard_index={index} is out of range for shard_count={count}: "
                f"expected 0 <= shard_index < {count}"
            )
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

    def epoch_windows(self, epoch: int, start: int, stop: int) -> np.ndarray:
        """The window indices at positions ``[start, stop)`` of ``epoch`` (all shards).

        Memory and time are proportional to ``stop - start``, whatever the dataset size.
        """
        n = len(self.dataset)
        if not 0 <= start <= stop <= n:
            raise IndexError(f"positions [{start}, {stop}) out of range for {n} windows")
        positions = np.arange(start, stop, dtype=np.int64)
        return index_shuffle(positions, n, self.seed, epoch) if self.shuffle else positions

    def window_order(self, epoch: int) -> np.ndarray:
        """All window indices of ``epoch`` in the order they are batched: O(n) memory."""
        return self.epoch_windows(epoch, 0, len(self.dataset))

    def _batch_span(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        start = index * self.batch_size
        return start, min(start + self.batch_size, len(self.dataset))

    def batch_windows(self, epoch: int, index: int) -> np.ndarray:
        """The window indices of global batch ``index`` of ``epoch``: every shard's rows."""
        return self.epoch_windows(epoch, *self._batch_span(index))

    def shard_windows(self, epoch: int, index: int) -> np.ndarray:
        """The window indices this shard reads of global batch ``index``: a contiguous slice."""
        return self.shard_slice(self.batch_windows(epoch, index))

    def shard_slice(self, windows_B: np.ndarray) -> np.ndarray:
        """This shard's contiguous part of a global batch's window indices."""
        rows = len(windows_B) // self.shard_count
        return windows_B[self.shard_index * rows : (self.shard_index + 1) * rows]

    def local_batch(self, epoch: int, index: int) -> Batch:
        """This shard's part of global batch ``index`` of ``epoch``: one gather.

        Returns:
          ``(inputs_bxT, targets_bxT)`` int32 with ``b = local_batch_size`` (fewer
          for a short last batch kept by ``drop_last=False``).
        """
        return self.gather(self.shard_windows(epoch, index))

    def gather(self, indices_b: np.ndarray) -> Batch:
        """The windows ``indices_b`` of the dataset as one batch ``(inputs_bxT, targets_bxT)``."""
        gather = getattr(self.dataset, "gather", None)
        if gather is not None:
            return gather(indices_b)
        pairs = [self.dataset[int(i)] for i in indices_b]
        return (
            np.stack([np.asarray(x, np.int32) for x, _ in pairs]),
            np.stack([np.asarray(y, np.int32) for _, y in pairs]),
        )

    def fingerprint(self) -> dict[str, Any]:
        """What an iterator state must match: the dataset's content and the batch options.

        Shards are not part of it: a state restores on any number of processes.
        Hashes the dataset's tokens on every call (see ``dataset_fingerprint``);
        an iterator computes it once.
        """
        return {
            "dataset": dataset_fingerprint(self.dataset),
            "batch_size": int(self.batch_size),
            "shuffle": bool(self.shuffle),
            "drop_last": bool(self.drop_last),
        }

    def iterate(self, num_epochs: int | None = None, *, first_epoch: int = 0) -> BatchIterator:
        """A resumable iterator over ``num_epochs`` epochs (``None``: no end) from ``first_epoch``.

        See ``BatchIterator`` for ``get_state`` / ``set_state``.
        """
        return BatchIterator(self, first_epoch, num_epochs)

    def iter_epoch(self, epoch: int) -> BatchIterator:
        """Yields the batches of ``epoch``."""
        return BatchIterator(self, epoch, 1)

    def __iter__(self) -> BatchIterator:
        """Yields the batches of epoch 0: the same batches on every ``iter()``."""
        return self.iter_epoch(0)


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
    shards = {"shard_index": shard_index, "shard_count": shard_count}
    return Batcher(
        dataset,
        batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        seed=seed,
        **{name: value for name, value in shards.items() if value is not None},
    )
