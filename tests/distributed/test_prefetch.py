"""``prefetch_to_device``: background device prefetching, in order, bounded, resumable."""

import itertools
import threading
import time

import jax
import numpy as np
import pytest

from flax_embed.data import Batcher, SlidingWindowDataset
from flax_embed.distributed.prefetch import prefetch_to_device


def make_batcher():
    tokens = np.random.default_rng(1).integers(0, 50257, size=300)
    return Batcher(SlidingWindowDataset(tokens, 4, 4), batch_size=4, shard_index=0, shard_count=1)


class Counting:
    """An iterator of ``n`` small batches that counts how many were pulled."""

    def __init__(self, n, fail_at=None):
        self.n, self.fail_at, self.pulled = n, fail_at, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.pulled == self.fail_at:
            raise RuntimeError(f"source failed at {self.fail_at}")
        if self.pulled == self.n:
            raise StopIteration
        self.pulled += 1
        return np.full((2, 3), self.pulled, np.int32)


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def test_yields_the_same_batches_in_order_as_device_arrays():
    expected = list(make_batcher().iter_epoch(0))
    with prefetch_to_device(make_batcher().iter_epoch(0), size=3) as batches:
        got = list(batches)
    assert len(got) == len(expected)
    for (x, y), (ex, ey) in zip(got, expected, strict=True):
        assert isinstance(x, jax.Array) and isinstance(y, jax.Array)
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)


@pytest.mark.parametrize("size", [1, 2, 4])
def test_runs_at_most_size_plus_one_batches_ahead(size):
    source = Counting(50)
    with prefetch_to_device(source, size=size) as batches:
        for consumed in range(1, 6):
            next(batches)
            # the thread fills the queue (size) and holds one more, then waits
            assert wait_until(lambda c=consumed: source.pulled == c + size + 1)
            time.sleep(0.05)
            assert source.pulled == consumed + size + 1


def test_an_error_in_the_source_is_raised_after_the_batches_before_it():
    batches = prefetch_to_device(Counting(10, fail_at=3), size=2)
    assert [int(b[0, 0]) for b in itertools.islice(batches, 3)] == [1, 2, 3]
    with pytest.raises(RuntimeError, match="source failed at 3"):
        next(batches)
    with pytest.raises(StopIteration):
        next(batches)


def test_state_is_that_of_the_last_batch_handed_out_not_of_the_prefetched_ones():
    uninterrupted = list(make_batcher().iterate(2))
    for k in (0, 1, 5, len(uninterrupted) - 1):
        with prefetch_to_device(make_batcher().iterate(2), size=3) as batches:
            before = list(itertools.islice(batches, k))
            state = batches.get_state()
        resumed = make_batcher().iterate(2)
        resumed.set_state(state)
        got = [x for x, _ in before] + [x for x, _ in resumed]
        assert len(got) == len(uninterrupted)
        for a, (b, _) in zip(got, uninterrupted, strict=True):
            np.testing.assert_array_equal(a, b)


def test_close_stops_the_thread_without_pulling_more():
    source = Counting(10_000)
    batches = prefetch_to_device(source, size=2)
    next(batches)
    assert wait_until(lambda: source.pulled == 4)
    batches.close()
    assert source.pulled == 4
    assert not batches._thread.is_alive()
    assert not any(t.name == "prefetch_to_device" and t.is_alive() for t in threading.enumerate())
    with pytest.raises(StopIteration):
        next(batches)


def test_get_state_needs_a_source_with_state():
    with (
        prefetch_to_device(Counting(3)) as batches,
        pytest.raises(TypeError, match="Counting has no get_state"),
    ):
        batches.get_state()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"size": 0}, ValueError, "size must be at least 1, got 0"),
        ({"sharding": "data"}, TypeError, "sharding must be a jax.sharding.Sharding"),
    ],
)
def test_bad_options_raise(kwargs, error, message):
    with pytest.raises(error, match=message):
        prefetch_to_device(Counting(3), **kwargs)
