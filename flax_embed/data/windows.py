"""What a window source gives and ``Batcher`` reads: ``Batch`` and ``WindowSource``.

A leaf module: the sources over one token array or file (``sources.py``) and over
shards (``shards.ShardedTokenDataset``) both import it, and ``sources`` imports
``shards`` (``SlidingWindowDataset.from_files``), so the imports go one way.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = ["Batch", "WindowSource"]

Batch = tuple[np.ndarray, np.ndarray]
"""``(inputs_BxT, targets_BxT)``, two int32 arrays; targets are inputs shifted by one."""


class WindowSource(Protocol):
    """What ``Batcher`` reads: a random-access source of ``(inputs, targets)`` pairs."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Batch: ...
