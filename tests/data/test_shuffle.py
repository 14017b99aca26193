"""``index_shuffle``: the shuffled window order, a keyed bijection computed per index."""

import numpy as np
import pytest

from flax_embed.data import Batcher, SlidingWindowDataset, epoch_permutation, index_shuffle
from flax_embed.data import shuffle as shuffle_module

M64 = (1 << 64) - 1


def reference_index_shuffle(p, n, seed, epoch):
    """The documented algorithm in plain Python ints: no NumPy, no wrapping arithmetic."""

    def mix(z):
        z &= M64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    gamma = 0x9E3779B97F4A7C15
    key = mix(mix(seed + gamma) ^ (epoch * gamma))
    keys = [mix(key + (r + 1) * gamma) for r in range(shuffle_module.SHUFFLE_ROUNDS)]
    bits = (n - 1).bit_length() if n > 1 else 0
    h, w = bits // 2, bits - bits // 2

    def permute(x):
        for k in keys:
            lo, hi = x & ((1 << h) - 1), x >> h
            x = (lo << w) | ((hi ^ mix(lo ^ k)) & ((1 << w) - 1))
        return x

    if bits == 0:
        return p
    x = permute(p)
    while x >= n:
        x = permute(x)
    return x


@pytest.mark.parametrize("n", [*range(1, 70), 255, 256, 257, 1000, 4097])
def test_every_epoch_is_a_permutation_of_the_windows(n):
    for seed, epoch in [(0, 0), (1, 0), (0, 1), (123456789, 7)]:
        order = epoch_permutation(n, seed, epoch)
        assert order.dtype == np.int64
        np.testing.assert_array_equal(np.sort(order), np.arange(n))


@pytest.mark.parametrize(
    ("n", "seed", "epoch"), [(10, 0, 0), (97, 3, 2), (1 << 20, 2**64 - 1, 5), (10**12, 42, 10**9)]
)
def test_numpy_equals_the_plain_integer_algorithm(n, seed, epoch):
    positions = np.unique(np.linspace(0, n - 1, 50).astype(np.int64))
    expected = [reference_index_shuffle(int(p), n, seed, epoch) for p in positions]
    np.testing.assert_array_equal(index_shuffle(positions, n, seed, epoch), expected)


def test_the_order_is_pinned():
    # Integer arithmetic only: these are the orders on every machine and NumPy version.
    np.testing.assert_array_equal(epoch_permutation(10, 0, 0), [8, 7, 6, 1, 4, 9, 2, 0, 5, 3])
    np.testing.assert_array_equal(epoch_permutation(10, 0, 1), [5, 3, 2, 6, 7, 8, 0, 9, 1, 4])
    np.testing.assert_array_equal(epoch_permutation(10, 1, 0), [5, 2, 8, 4, 0, 3, 1, 7, 6, 9])


def test_seed_and_epoch_are_separate_keys():
    # (seed + epoch) keys, as Grain's, would make seed 0 epoch 1 repeat seed 1 epoch 0.
    orders = {tuple(epoch_permutation(50, s, e)) for s, e in [(0, 1), (1, 0), (0, 0), (1, 1)]}
    assert len(orders) == 4


def test_each_window_lands_on_each_position_about_equally_often():
    # Window 0's position over 4,000 seeds, 10 windows: binomial(4000, 1/10) counts,
    # mean 400 and standard deviation 19; the pinned seeds make the bound exact, and
    # 400 +- 100 is over 5 standard deviations.
    n = 10
    counts = np.bincount(
        [int(np.flatnonzero(epoch_permutation(n, s, 0) == 0)[0]) for s in range(4000)],
        minlength=n,
    )
    assert counts.min() > 300 and counts.max() < 500


def test_any_positions_of_a_huge_epoch_are_computed_directly():
    n = 10**12  # 8 TB as a materialised permutation
    positions = np.array([0, 1, n // 2, n - 1])
    windows = index_shuffle(positions, n, seed=0, epoch=3)
    assert windows.min() >= 0 and windows.max() < n and len(set(windows.tolist())) == 4
    np.testing.assert_array_equal(index_shuffle(positions[2:3], n, 0, 3), windows[2:3])


def test_positions_keep_their_shape():
    assert index_shuffle(np.arange(12).reshape(3, 4), 12, 0, 0).shape == (3, 4)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: index_shuffle([10], 10, 0, 0), IndexError, r"positions must be in \[0, 10\)"),
        (lambda: index_shuffle([-1], 10, 0, 0), IndexError, "positions must be in"),
        (lambda: index_shuffle([0.5], 10, 0, 0), TypeError, "positions must be integers"),
        (lambda: index_shuffle([0], 10, -1, 0), ValueError, "seed must be at least 0"),
        (lambda: index_shuffle([0], 10, 2**64, 0), ValueError, "seed must be at most"),
    ],
)
def test_bad_arguments_raise(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_batch_is_its_slice_of_the_epoch_order():
    ds = SlidingWindowDataset(np.arange(1000), max_length=3, stride=3)
    batcher = Batcher(ds, batch_size=7, seed=9, shard_index=0, shard_count=1)
    order = epoch_permutation(len(ds), 9, 4)
    for index in [0, 1, 17, len(batcher) - 1]:
        np.testing.assert_array_equal(batcher.batch_windows(4, index), order[index * 7 :][:7])


def test_a_seed_beyond_64_bits_is_refused_by_the_batcher():
    ds = SlidingWindowDataset(np.arange(100), max_length=3, stride=3)
    with pytest.raises(ValueError, match=r"seed must be at most 18446744073709551615"):
        Batcher(ds, batch_size=4, seed=2**64, shard_index=0, shard_count=1)
