"""``BatchIterator``: a ``Batcher``'s batches, epoch after epoch, resumable from a saved state.

Grain's iterator protocol: ``next(it)``, ``it.get_state()``, ``it.set_state(state)``.
The iterator, not the ``Batcher``, holds where an iteration stands. The state is a
small JSON-serialisable dict::

  {"version": 2, "seed": 0, "epoch": 3, "position": 17,
   "fingerprint": {"dataset": "9c0e...", "batch_size": 64, "shuffle": True, "drop_last": True}}

``position`` counts *global* batches within ``epoch``, so the state does not depend
on the shard: every process holds the same state, any one of them can save it, and
it restores on any number of processes (``batch_size`` is the global batch size).

``version`` names the window order a state refers to. Version 2 (the current one)
shuffles with ``index_shuffle``; version 1 states (no ``version`` key) were saved
with the earlier PCG64 permutation, a different order, so they are refused rather
than resumed at other windows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from flax_embed._validation import check_positive_int

if TYPE_CHECKING:
    from flax_embed.data import Batch, Batcher

__all__ = ["BatchIterator"]

STATE_VERSION = 2
"""The iterator-state format: 2 since the shuffled order became ``index_shuffle``."""

_STATE_KEYS = ("seed", "epoch", "position", "fingerprint")

_WINDOW_BLOCK = 1 << 16
"""Window indices an iterator computes at a time (512 KB of int64): a shuffled epoch
costs one ``index_shuffle`` call per block, not per batch, and memory stays bounded."""


def _state_int(state: Mapping[str, Any], key: str) -> int:
    value = state[key]
    # A JSON state holds Python ints; its ranges are checked against the batcher later.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"iterator state {key!r} must be an int, got {value!r}")
    return value


class BatchIterator:
    """Yields this shard's batches of epochs ``first_epoch, first_epoch + 1, ...``.

    Made by ``iter(batcher)`` (one epoch), ``batcher.iter_epoch(e)`` or
    ``batcher.iterate(num_epochs)`` (several epochs, or forever with ``None``);
    each epoch is reshuffled (``index_shuffle(position, n, seed, epoch)``). It holds
    the epoch and position, and the window indices of the next positions of the
    epoch, at most ``max(batch_size, 65536)`` of them, whatever the dataset size.

    Example::

      >>> import numpy as np
      >>> from flax_embed.data import Batcher, SlidingWindowDataset
      >>> batcher = Batcher(SlidingWindowDataset(np.arange(100), max_length=4, stride=4), 8)
      >>> it = batcher.iterate()                # epochs 0, 1, 2, ... forever
      >>> x_BxT, y_BxT = next(it)
      >>> state = it.get_state()                # json.dumps(state) to checkpoint it
      >>> it2 = batcher.iterate(); it2.set_state(state)
      >>> bool((next(it2)[0] == next(it)[0]).all())   # the batch next(it) would have been
      True

    Args:
      batcher: the ``Batcher`` whose batches it yields.
      first_epoch: the first epoch it runs.
      num_epochs: how many epochs it runs; ``None`` for no end.
    """

    def __init__(self, batcher: Batcher, first_epoch: int = 0, num_epochs: int | None = None):
        check_positive_int("first_epoch", first_epoch, minimum=0)
        if num_epochs is not None:
            check_positive_int("num_epochs", num_epochs, minimum=0)
        self._batcher = batcher
        self._first_epoch = int(first_epoch)
        self._stop_epoch = None if num_epochs is None else int(first_epoch + num_epochs)
        self._epoch = self._first_epoch
        self._position = 0
        self._fingerprint: dict[str, Any] | None = None
        # (epoch, first position, window indices of the positions from there)
        self._block: tuple[int, int, np.ndarray] | None = None

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> Batch:
        batches_per_epoch = len(self._batcher)
        if batches_per_epoch == 0 or (
            self._stop_epoch is not None and self._epoch >= self._stop_epoch
        ):
            raise StopIteration
        batch = self._batcher.gather(self._batcher.shard_slice(self._global_windows()))
        self._position += 1
        if self._position == batches_per_epoch:
            self._epoch, self._position = self._epoch + 1, 0
        return batch

    def _global_windows(self) -> np.ndarray:
        """The window indices of global batch ``self._position`` of ``self._epoch``."""
        batcher = self._batcher
        n, size = len(batcher.dataset), batcher.batch_size
        start = self._position * size
        stop = min(start + size, n)
        block = self._block
        if (
            block is None
            or block[0] != self._epoch
            or not (block[1] <= start and stop <= block[1] + len(block[2]))
        ):
            end = min(n, start + max(size, _WINDOW_BLOCK))
            block = (self._epoch, start, batcher.epoch_windows(self._epoch, start, end))
            self._block = block
        return block[2][start - block[1] : stop - block[1]]

    def _our_fingerprint(self) -> dict[str, Any]:
        if self._fingerprint is None:
            self._fingerprint = self._batcher.fingerprint()
        return self._fingerprint

    def get_state(self) -> dict[str, Any]:
        """Where the iterator stands: ``{"version", "seed", "epoch", "position", "fingerprint"}``.

        ``epoch`` and ``position`` name the next batch (global batch ``position`` of
        ``epoch``); after the last batch of an epoch the state is ``(epoch + 1, 0)``.
        """
        return {
            "version": STATE_VERSION,
            "seed": int(self._batcher.seed),
            "epoch": self._epoch,
            "position": self._position,
            "fingerprint": self._our_fingerprint(),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Continues from ``state``: the next batches are those the saved iterator had left.

        Raises:
          ValueError: ``state`` is not an iterator state, has another ``version``
            (an earlier window order), comes from another
            dataset or other options (batch size, shuffle, drop_last, seed), or
            names a batch outside this iterator's epochs.
        """
        if not isinstance(state, Mapping) or not all(k in state for k in _STATE_KEYS):
            raise ValueError(
                f"not an iterator state: expected a dict with keys {list(_STATE_KEYS)}, "
                f"got {state!r}"
            )
        version = state.get("version", 1)
        if version != STATE_VERSION:
            raise ValueError(
                f"iterator state version {version!r} cannot be restored: this flax-embed "
                f"reads version {STATE_VERSION}, whose shuffled window order "
                f"(index_shuffle) differs from version 1's (a PCG64 permutation), so the "
                "state would resume at other windows; start a new iterator instead"
            )
        ours = self._our_fingerprint()
        theirs = state["fingerprint"]
        if not isinstance(theirs, Mapping) or dict(theirs) != ours:
            theirs = theirs if isinstance(theirs, Mapping) else {"fingerprint": theirs}
            diffs = ", ".join(
                f"{k} {theirs.get(k)!r} (state) != {ours.get(k)!r} (here)"
                for k in sorted(set(ours) | set(theirs))
                if theirs.get(k) != ours.get(k)
            )
            raise ValueError(
                f"iterator state was saved from another dataset or other options: {diffs}"
            )
        seed = _state_int(state, "seed")
        if seed != self._batcher.seed:
            raise ValueError(
                f"iterator state has seed {seed}, but this loader has seed {self._batcher.seed}"
            )
        epoch = _state_int(state, "epoch")
        position = _state_int(state, "position")
        stop = self._stop_epoch
        if epoch < self._first_epoch or (stop is not None and epoch > stop):
            last = "no end" if stop is None else f"epoch {stop - 1}"
            raise ValueError(
                f"iterator state is in epoch {epoch}, outside this iterator's epochs "
                f"(epoch {self._first_epoch} to {last})"
            )
        batches_per_epoch = len(self._batcher)
        limit = 1 if stop is not None and epoch == stop else max(batches_per_epoch, 1)
        if not 0 <= position < limit:
            raise ValueError(
                f"iterator state position {position} is outside [0, {limit}): "
                f"epoch {epoch} has {batches_per_epoch} batches"
            )
        self._epoch, self._position = epoch, position

    def __repr__(self) -> str:
        stop = "None" if self._stop_epoch is None else self._stop_epoch - self._first_epoch
        return (
            f"BatchIterator(epoch={self._epoch}, position={self._position}, "
            f"first_epoch={self._first_epoch}, num_epochs={stop})"
        )
