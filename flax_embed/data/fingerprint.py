"""Content fingerprints of window sources, to tie an iterator state to its dataset.

A saved iterator state (``BatchIterator.get_state``) carries the fingerprint of
the dataset it was saved from; restoring it on another dataset raises instead of
silently producing other batches.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

__all__ = ["FULL_HASH_MAX_TOKENS", "dataset_fingerprint", "token_digest"]

FULL_HASH_MAX_TOKENS = 1 << 24
"""Token arrays up to this many tokens (16 Mi, 64 MB as int32) are hashed in full."""

_SAMPLE_BLOCKS = 64
_SAMPLE_BLOCK_TOKENS = 4096


def token_digest(tokens_N: np.ndarray) -> str:
    """Hashes the token values (as little-endian int64, so the file dtype does not matter).

    Up to ``FULL_HASH_MAX_TOKENS`` tokens every token is hashed. Longer arrays,
    typically memory-mapped token files, are hashed through ``_SAMPLE_BLOCKS``
    contiguous blocks of ``_SAMPLE_BLOCK_TOKENS`` tokens spread evenly over the
    file, first and last block included: a few MB are read, whatever the corpus size.
    """
    n = tokens_N.shape[0]
    h = hashlib.blake2b(digest_size=16)
    h.update(f"tokens:{n}".encode())
    if n <= FULL_HASH_MAX_TOKENS:
        blocks = [(0, n)]
    else:
        starts = np.linspace(0, n - _SAMPLE_BLOCK_TOKENS, _SAMPLE_BLOCKS).astype(np.int64)
        blocks = [(int(s), int(s) + _SAMPLE_BLOCK_TOKENS) for s in starts]
    chunk = 1 << 20
    for start, stop in blocks:
        for lo in range(start, stop, chunk):
            part = np.asarray(tokens_N[lo : min(lo + chunk, stop)], dtype="<i8")
            h.update(part.tobytes())
    return h.hexdigest()


def dataset_fingerprint(dataset: Any) -> str:
    """A short hex string that changes when the windows of ``dataset`` change.

    * A source with a ``fingerprint()`` method is identified by what it returns.
    * A ``SlidingWindowDataset`` (anything with ``token_ids``, ``max_length`` and
      ``stride``) by its window options and a hash of its token values (all of
      them up to ``FULL_HASH_MAX_TOKENS`` tokens; beyond that the length plus 64
      evenly spread blocks of 4,096 tokens, so that a multi-GB memory-mapped file
      is not read in full; a source with ``release_pages()``, a memory-mapped token
      file, hands the pages it read back afterwards).
    * Any other source only by its type name and length.
    """
    own = getattr(dataset, "fingerprint", None)
    if callable(own):
        return str(own())
    h = hashlib.blake2b(digest_size=8)
    if all(hasattr(dataset, a) for a in ("token_ids", "max_length", "stride")):
        h.update(f"windows:{len(dataset)}:{dataset.max_length}:{dataset.stride}:".encode())
        h.update(token_digest(dataset.token_ids).encode())
        release = getattr(dataset, "release_pages", None)
        if callable(release):  # a memory-mapped token file: hand the pages read back
            release()
    else:
        h.update(f"{type(dataset).__qualname__}:{len(dataset)}".encode())
    return h.hexdigest()
