"""What every parity check shares: backends, the real batches, and the comparison."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import jax
import numpy as np

from parity.result import CheckResult

__all__ = [
    "BACKENDS",
    "available_backends",
    "compare",
    "device_kind",
    "on_backend",
    "sample_text",
    "text_batch",
    "torch_device",
    "ulp_distance",
]

BACKENDS = ("cpu", "gpu", "tpu")
"""The JAX backends the report knows, in the order it runs them."""


def available_backends() -> list[str]:
    """The JAX backends present on this machine (cpu always)."""
    present = []
    for backend in BACKENDS:
        try:
            jax.devices(backend)
        except RuntimeError:
            continue
        present.append(backend)
    return present


def device_kind(backend: str) -> str:
    return jax.devices(backend)[0].device_kind


@contextlib.contextmanager
def on_backend(backend: str) -> Iterator[None]:
    """Runs the JAX code inside on the first device of ``backend``."""
    with jax.default_device(jax.devices(backend)[0]):
        yield


def torch_device(backend: str) -> str:
    """The torch device paired with a JAX backend: cuda for gpu when torch has it."""
    import torch

    return "cuda" if backend == "gpu" and torch.cuda.is_available() else "cpu"


@functools.cache
def sample_text() -> tuple[str, str]:
    """``(name, text)``: the text bundled with flax-embed; any clone reproduces the report."""
    from flax_embed.data.samples import sample_text as bundled

    return "sample.txt (bundled)", bundled()


@functools.cache
def _token_ids() -> np.ndarray:
    from flax_embed.tokenizer import encode

    return encode(sample_text()[1])


def text_batch(batch_size: int, max_length: int, index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``index`` of the book's loader (no shuffle) over the sample text.

    The stride is ``max_length`` (the seed's) when the text has enough windows for
    ``index + 1`` batches, else the largest stride that has.

    Returns:
      ``(inputs_BxT, targets_BxT)``, int32 GPT-2 token ids.
    """
    from flax_embed.data import Batcher, SlidingWindowDataset

    tokens_N = _token_ids()
    windows = batch_size * (index + 1)
    stride = min(max_length, (tokens_N.shape[0] - max_length - 1) // max(windows - 1, 1))
    if stride < 1:
        raise ValueError(f"{sample_text()[0]} is too short for {windows} windows of {max_length}")
    dataset = SlidingWindowDataset(tokens_N, max_length=max_length, stride=stride)
    batcher = Batcher(dataset, batch_size, shuffle=False)
    for i, batch in enumerate(batcher.iter_epoch(0)):
        if i == index:
            return batch
    raise AssertionError("unreachable")


def ulp_distance(a: np.ndarray, b: np.ndarray) -> int:
    """The largest distance between ``a`` and ``b`` in units in the last place.

    Counts the representable values of their (common, floating) dtype between each
    pair of entries, via the order-preserving map of IEEE bit patterns to integers.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype:
        raise ValueError(f"dtypes differ: {a.dtype} and {b.dtype}")
    bits = np.dtype(f"i{a.dtype.itemsize}")

    def ordered(x: np.ndarray) -> np.ndarray:
        i = x.view(bits).astype(np.int64)
        return np.where(i < 0, np.iinfo(bits).min - i, i)

    if a.size == 0:
        return 0
    return int(np.abs(ordered(a) - ordered(b)).max())


def compare(
    check: str,
    backend: str,
    flax_value,
    torch_value,
    *,
    tolerance: float = 0.0,
    note: str = "",
) -> CheckResult:
    """One report row: ``flax_value`` against ``torch_value`` (arrays or torch tensors)."""
    a, b = _numpy(flax_value), _numpy(torch_value)
    if a.shape != b.shape:
        raise ValueError(f"{check}: shapes differ: flax {a.shape}, torch {b.shape}")
    if a.dtype != b.dtype:
        raise ValueError(f"{check}: dtypes differ: flax {a.dtype}, torch {b.dtype}")
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    max_abs = float(diff.max()) if diff.size else 0.0
    if np.isnan(a).any() or np.isnan(b).any():
        max_abs = float("nan")
    return CheckResult(
        check=check,
        backend=backend,
        device_kind=device_kind(backend),
        dtype=str(a.dtype),
        shape=tuple(a.shape),
        max_abs_diff=max_abs,
        tolerance=float(tolerance),
        bit_identical=bool(np.array_equal(a, b)),
        note=note,
    )


def _numpy(value) -> np.ndarray:
    from flax_embed.convert import to_numpy

    return to_numpy(value)
