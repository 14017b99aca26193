"""One row of the parity report."""

from __future__ import annotations

import dataclasses
import math

__all__ = ["CheckResult"]


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """The outcome of one comparison between flax-embed and the PyTorch reference.

    Attributes:
      check: what was compared, e.g. ``"forward seed 8x4x256 (torch→flax)"``.
      backend: the JAX backend, ``"cpu"``, ``"gpu"`` or ``"tpu"``.
      device_kind: ``jax.Device.device_kind`` of the device it ran on.
      dtype: the dtype of params and compute, e.g. ``"float32"``.
      shape: the compared array's shape.
      max_abs_diff: max |flax - torch| over the compared arrays.
      tolerance: the largest max |Δ| that passes; 0.0 means bit-identical is required.
      bit_identical: whether the arrays are equal bit for bit (``array_equal``).
      note: how the tolerance was justified, or other detail (ULP distance, ...).
      pinned: for a pinned behaviour difference (no arrays compared): whether every
        framework behaved as pinned; when set, it alone decides ``passed``.
    """

    check: str
    backend: str
    device_kind: str
    dtype: str
    shape: tuple[int, ...]
    max_abs_diff: float
    tolerance: float
    bit_identical: bool
    note: str = ""
    pinned: bool | None = None

    @property
    def passed(self) -> bool:
        if self.pinned is not None:
            return self.pinned
        if math.isnan(self.max_abs_diff):
            return False
        return self.bit_identical if self.tolerance == 0.0 else self.max_abs_diff <= self.tolerance

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "shape": list(self.shape), "passed": self.passed}
