"""Background prefetching of batches to the devices, so host batching overlaps compute."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
from jax.sharding import Sharding

from flax_embed._validation import check_positive_int
from flax_embed.distributed.sharding import global_batch

__all__ = ["DevicePrefetcher", "prefetch_to_device"]

_BATCH, _END, _ERROR = "batch", "end", "error"


class DevicePrefetcher:
    """Iterates device copies of another iterator's batches, prepared by a background thread.

    A thread pulls batches from ``iterator`` and puts them on the devices while the
    caller computes on earlier ones: at most ``size`` batches wait on the devices
    and one more may be in preparation. Exceptions raised by ``iterator`` are
    raised again by ``next``, after the batches that came before them.

    Resumable: when ``iterator`` has ``get_state`` (a ``BatchIterator``),
    ``get_state()`` here is the state *after the last batch handed out*, not after
    the batches prefetched ahead, so restoring it loses and repeats nothing.
    The wrapped iterator belongs to the thread: call ``set_state`` on it before
    wrapping, never while it is wrapped.

    Use it as a context manager (or call ``close()``) to stop the thread early;
    ``close()`` returns within ``CLOSE_TIMEOUT`` seconds whatever the wrapped
    iterator does, and the thread is a daemon (it never keeps the process alive).
    """

    CLOSE_TIMEOUT = 1.0
    """Seconds ``close()`` waits for a thread blocked in the wrapped iterator."""

    def __init__(self, iterator: Iterable[Any], size: int = 2, sharding: Sharding | None = None):
        self.size = check_positive_int("size", size)
        if sharding is not None and not isinstance(sharding, Sharding):
            raise TypeError(f"sharding must be a jax.sharding.Sharding, got {type(sharding)}")
        self._iterator: Iterator[Any] = iter(iterator)
        self._sharding = sharding
        self._get_state: Callable[[], dict[str, Any]] | None = getattr(
            self._iterator, "get_state", None
        )
        self._state: dict[str, Any] | None = (
            self._get_state() if callable(self._get_state) else None
        )
        self._queue: queue.Queue = queue.Queue(maxsize=self.size)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(
            target=self._produce, name="prefetch_to_device", daemon=True
        )
        self._thread.start()

    def _to_device(self, batch: Any) -> Any:
        if self._sharding is None:
            return jax.device_put(batch)
        return global_batch(batch, self._sharding)

    def _put(self, item: tuple[str, Any, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    batch = next(self._iterator)
                except StopIteration:
                    self._put((_END, None, None))
                    return
                state = self._get_state() if callable(self._get_state) else None
                if not self._put((_BATCH, self._to_device(batch), state)):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            self._put((_ERROR, error, None))

    def __iter__(self) -> DevicePrefetcher:
        return self

    def __next__(self) -> Any:
        if self._finished:
            raise StopIteration
        kind, value, state = self._queue.get()
        if kind == _BATCH:
            self._state = state
            return value
        self._finished = True
        self._thread.join()
        if kind == _ERROR:
            raise value
        raise StopIteration

    def get_state(self) -> dict[str, Any]:
        """The wrapped iterator's state after the last batch ``next`` returned."""
        if self._state is None:
            raise TypeError(f"{type(self._iterator).__name__} has no get_state()")
        return self._state

    def close(self, timeout: float | None = None) -> bool:
        """Stops the thread and drops the prefetched batches; returns within ``timeout`` seconds.

        The thread stops at its next step. If it is blocked inside the wrapped
        iterator (a producer waiting on a socket, a lock, a slow disk), ``close``
        does not wait for it past ``timeout`` (default ``CLOSE_TIMEOUT``, 1 s): it
        returns False and leaves the thread to finish that step and exit on its
        own. The thread is a daemon, so it never keeps the process alive, and it
        hands out nothing more once closed.

        Returns:
          True when the thread has stopped, False when it was still blocked.
        """
        timeout = self.CLOSE_TIMEOUT if timeout is None else timeout
        self._stop.set()
        self._finished = True
        deadline = time.monotonic() + timeout
        while self._thread.is_alive():
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._thread.join(timeout=min(0.05, remaining))
        return True

    def __enter__(self) -> DevicePrefetcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def prefetch_to_device(
    iterator: Iterable[Any], size: int = 2, sharding: Sharding | None = None
) -> DevicePrefetcher:
    """Puts ``iterator``'s batches on the devices ``size`` batches ahead, in a background thread.

    Args:
      iterator: yields pytrees of NumPy arrays, e.g. ``batcher.iterate()``.
      size: how many batches may wait on the devices; at least 1.
      sharding: ``None`` puts each batch on the default device
        (``jax.device_put``); a ``NamedSharding`` (``sharding.batch_sharding(mesh)``)
        makes global arrays from each process's local batch (``global_batch``).

    Returns:
      A ``DevicePrefetcher``: an iterator with ``get_state()`` and ``close()``.

    Example::

      >>> import numpy as np
      >>> from flax_embed.data import Batcher, SlidingWindowDataset
      >>> batcher = Batcher(SlidingWindowDataset(np.arange(1000), max_length=16, stride=16), 4)
      >>> with prefetch_to_device(batcher.iterate(), size=2) as batches:
      ...     for step, (inputs_BxT, targets_BxT) in zip(range(100), batches):
      ...         total = inputs_BxT.sum()      # the train step, on jax.Arrays
      ...     checkpoint = batches.get_state()  # after the 100th batch, not the prefetched ones
      >>> checkpoint["epoch"], checkpoint["position"]   # 15 batches per epoch
      (6, 10)
    """
    return DevicePrefetcher(iterator, size=size, sharding=sharding)
