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
from flax_embed.data.sources import Batch, SlidingWindowDataset, WindowSource
from flax_embed.tokenizer import encode

__all__ = ["Batcher", "create_dataloader", "epoch_permutation"]


def epoch_permutation(num_windows: int, seed: int, epoch: int) -> np.ndarray:
    """The window order of one shuffled epoch: the same on every machine.

    A permutation of ``range(num_windows)`` drawn from ``PCG64`` seeded with
    ``(seed, epoch)``, so each epoch has its own order and every window appears once.
    """
    rng = np.random.Generator(np.random.PCG64([int(seed), int(epoch)]))
    return rng.permutation(num_windows)


@dataclasses.dataclass(frozen=True)
class Batcher:
    """Cuts a window source into batches, epoch after epoch, for one shard of the processes.

    The options are fixed at construction (a frozen dataclass: ``dataclasses.replace``
    makes a changed copy). The one thing that changes is the epoch counter that
    ``iter(batcher)`` advances; resumable iteration state lives in the iterator.

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
    epoch: int = dataclasses.field(default=0, kw_only=True, compare=False)
    """The epoch the next ``iter()`` runs (advanced by ``iter()``)."""
    shard_index: int | None = dataclasses.field(default=None, kw_only=True)
    shard_count: int | None = dataclasses.field(default=None, kw_only=True)
    _order_cache: tuple[int, np.ndarray] | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )
    _fingerprint_cache: str | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self):
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("seed", self.seed, minimum=0)
        self._check_shards()

    def _check_shards(self) -> None:
        if self.shard_index is None or self.shard_count is None:
            import jax  # only to default to this process's place among the processes

            if self.shard_count is None:
                object.__setattr__(self, "shard_count", jax.process_count())
            if self.shard_index is None:
                object.__setattr__(self, "shard_index", jax.process_index())
        count = check_positive_int("shard_count", self.shard_count)  # type: ignore[arg-type]
        object.__setattr__(self, "shard_count", count)
        index = check_positive_int("shard_index", self.shard_index, minimum=0)  # type: ignore[arg-type]
        if index >= count:
            raise ValueError(
                f"shard_index={index} is out of range for shard_count={count}: "
                f"expected 0 <= shard_index < {count}"
            )
        object.__setattr__(self, "shard_index", index)
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
    def _shard(self) -> tuple[int, int]:
        """``(shard_index, shard_count)``, ints once ``__post_init__`` has filled the defaults."""
        assert self.shard_index is not None and self.shard_count is not None
        return self.shard_index, self.shard_count

    @property
    def local_batch_size(self) -> int:
        """Windows per full batch of this shard: ``batch_size // shard_count``."""
        return self.batch_size // self._shard[1]

    def window_order(self, epoch: int) -> np.ndarray:
        """The window indices of ``epoch`` in the order they are batched (all shards)."""
        n = len(self.dataset)
        return epoch_permutation(n, self.seed, epoch) if self.shuffle else np.arange(n)

    def batch_windows(self, epoch: int, index: int) -> np.ndarray:
        """The window indices of global batch ``index`` of ``epoch``: every shard's rows."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch index {index} out of range for {len(self)} batches")
        cached = self._order_cache
        if cached is None or cached[0] != epoch:
            cached = (epoch, self.window_order(epoch))
            object.__setattr__(self, "_order_cache", cached)
        return cached[1][index * self.batch_size : (index + 1) * self.batch_size]

    def shard_windows(self, epoch: int, index: int) -> np.ndarray:
        """The window indices this shard reads of global batch ``index``: a contiguous slice."""
        windows = self.batch_windows(epoch, index)
        shard, count = self._shard
        rows = len(windows) // count
        return windows[shard * rows : (shard + 1) * rows]

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
        if self._fingerprint_cache is None:
            object.__setattr__(self, "_fingerprint_cache", dataset_fingerprint(self.dataset))
        return {
            "dataset": self._fingerprint_cache,
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
        epoch = self.epoch
        object.__setattr__(self, "epoch", epoch + 1)
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
