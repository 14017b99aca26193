"""The shuffled window order: a keyed permutation computed per index, in O(1) memory.

``index_shuffle(positions, n, seed, epoch)`` maps positions of a shuffled epoch to
window indices without building the permutation: a Feistel network over the
``b = bit_length(n - 1)`` bit domain (a bijection of ``[0, 2**b)``), with cycle
walking to stay inside ``[0, n)`` (``2**b < 2n``, so fewer than 2 walks per index on
average). The round function is the SplitMix64 finalizer, keyed by ``(seed, epoch)``:
explicit uint64 multiplies, xors and shifts, so the order is the same on every
machine and every NumPy version (no NumPy random generator is involved). Grain
shuffles a ``MapDataset`` the same way (its ``index_shuffle``).
"""

from __future__ import annotations

import numpy as np

from flax_embed._validation import check_positive_int

__all__ = ["SHUFFLE_ROUNDS", "epoch_permutation", "index_shuffle"]

SHUFFLE_ROUNDS = 6
"""Feistel rounds. Four rounds of a pseudo-random function give a strong pseudo-random
permutation (Luby-Rackoff; Grain's ``index_shuffle`` runs 4); two more leave margin for
the halves of odd widths, which differ by one bit."""

_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15  # SplitMix64's increment: 2**64 / golden ratio
_MUL1 = 0xBF58476D1CE4E5B9
_MUL2 = 0x94D049BB133111EB


def _mix_int(z: int) -> int:
    """The SplitMix64 finalizer on a Python int: a bijection of 64-bit words."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * _MUL1) & _MASK64
    z = ((z ^ (z >> 27)) * _MUL2) & _MASK64
    return z ^ (z >> 31)


def _mix(z_N: np.ndarray) -> np.ndarray:
    """``_mix_int`` on a uint64 array (NumPy's uint64 arithmetic wraps modulo 2**64)."""
    z_N = (z_N ^ (z_N >> np.uint64(30))) * np.uint64(_MUL1)
    z_N = (z_N ^ (z_N >> np.uint64(27))) * np.uint64(_MUL2)
    return z_N ^ (z_N >> np.uint64(31))


def round_keys(seed: int, epoch: int) -> list[int]:
    """The ``SHUFFLE_ROUNDS`` 64-bit round keys of ``(seed, epoch)``."""
    key = _mix_int(_mix_int(seed + _GAMMA) ^ (epoch * _GAMMA))
    return [_mix_int(key + (r + 1) * _GAMMA) for r in range(SHUFFLE_ROUNDS)]


def _permute(x_N: np.ndarray, bits: int, keys: list[int]) -> np.ndarray:
    """The Feistel bijection of ``[0, 2**bits)`` on uint64 ``x_N``.

    Each round splits ``x`` into its low ``h = bits // 2`` bits and high ``w = bits - h``
    bits and returns ``lo << w | (hi ^ F(lo)) mod 2**w``: invertible, since ``lo``
    is kept and ``hi`` is recovered by xoring ``F(lo)`` again.
    """
    h = bits // 2
    w = bits - h
    lo_mask, hi_mask = np.uint64((1 << h) - 1), np.uint64((1 << w) - 1)
    for key in keys:
        lo = x_N & lo_mask
        hi = x_N >> np.uint64(h)
        x_N = (lo << np.uint64(w)) | ((hi ^ _mix(lo ^ np.uint64(key))) & hi_mask)
    return x_N


def index_shuffle(positions: np.ndarray, num_windows: int, seed: int, epoch: int) -> np.ndarray:
    """The windows at ``positions`` of shuffled epoch ``epoch``: a bijection of ``[0, n)``.

    Position ``p`` of the epoch reads window ``index_shuffle(p, n, seed, epoch)``; over
    all ``p`` in ``[0, n)`` every window appears once. Any position of any epoch is
    computed directly, in memory proportional to ``len(positions)`` only.

    Args:
      positions: integer positions in ``[0, num_windows)``, any shape.
      num_windows: ``n``, the size of the permuted domain.
      seed: the shuffle seed, in ``[0, 2**64)``.
      epoch: the epoch, in ``[0, 2**64)``; every epoch has its own order.

    Returns:
      int64 window indices, the shape of ``positions``.

    >>> index_shuffle(np.arange(10), 10, seed=0, epoch=0)
    array([8, 7, 6, 1, 4, 9, 2, 0, 5, 3])
    """
    n = check_positive_int("num_windows", num_windows, minimum=0, maximum=1 << 63)
    seed = check_positive_int("seed", seed, minimum=0, maximum=_MASK64)
    epoch = check_positive_int("epoch", epoch, minimum=0, maximum=_MASK64)
    positions = np.asarray(positions)
    if positions.size and not np.issubdtype(positions.dtype, np.integer):
        raise TypeError(f"positions must be integers, got dtype {positions.dtype}")
    if positions.size and (positions.min() < 0 or positions.max() >= n):
        raise IndexError(f"positions must be in [0, {n}), got {positions.min()}..{positions.max()}")
    bits = (n - 1).bit_length() if n > 1 else 0
    if bits == 0:
        return positions.astype(np.int64)
    keys = round_keys(seed, epoch)
    x = _permute(positions.astype(np.uint64).ravel(), bits, keys)
    outside = np.flatnonzero(x >= np.uint64(n))
    while outside.size:  # cycle walking: follow the cycle back into [0, n)
        x[outside] = _permute(x[outside], bits, keys)
        outside = outside[x[outside] >= np.uint64(n)]
    return x.astype(np.int64).reshape(positions.shape)


def epoch_permutation(num_windows: int, seed: int, epoch: int) -> np.ndarray:
    """The whole window order of shuffled epoch ``epoch``: ``index_shuffle`` of ``arange(n)``.

    O(n) memory, for tests and inspection; ``Batcher`` computes each batch's windows
    with ``index_shuffle`` instead.
    """
    return index_shuffle(np.arange(num_windows), num_windows, seed, epoch)
