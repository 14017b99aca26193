"""Gradient rows: ``jax.grad`` against torch autograd, for both tables.

The loss is ``sum(embeddings_BxTxD * weights_BxTxD)`` with fixed random weights, so
the gradient reaching the lookup is the same float32 array on both sides and the
only difference left is the order in which each table row's scatter-add sums the
contributions of its duplicate ids (``gradient_bound``).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import torch

from flax_embed.convert import params_from_torch
from flax_embed.layers.linen import InputEmbedding
from parity.common import compare, on_backend, text_batch, torch_device
from parity.result import CheckResult
from parity.torch_reference import TorchInputEmbedding

__all__ = ["GRADIENT_CASES", "GradientCase", "gradient_bound", "gradient_checks", "gradient_rows"]

_U = 2.0**-24  # float32 unit roundoff


@dataclasses.dataclass(frozen=True)
class GradientCase:
    """A batch of real ids; ``repeat_first`` replaces every id by the batch's first.

    The real batch has the text's natural duplicates (``the``, ``,``, ...); the
    repeated one sends all ``B*T`` contributions to a single row, where summation
    order matters most.
    """

    name: str
    batch_size: int
    seq_len: int
    features: int = 64
    repeat_first: bool = False

    def ids(self) -> np.ndarray:
        ids_BxT, _ = text_batch(self.batch_size, self.seq_len)
        return np.full_like(ids_BxT, ids_BxT[0, 0]) if self.repeat_first else ids_BxT


GRADIENT_CASES = (
    GradientCase("real ids", batch_size=8, seq_len=256),
    GradientCase("one id repeated", batch_size=8, seq_len=256, repeat_first=True),
)


def gradient_bound(ids: np.ndarray, weights_NxD: np.ndarray, num_rows: int) -> np.ndarray:
    """The largest possible |Δ| of each gradient entry between two summation orders.

    Row ``v``'s gradient sums the ``k_v`` weight rows whose id is ``v``. Any order of
    recursive float32 summation is within ``(k_v - 1) u sum|w|`` of the exact sum
    (Higham, Accuracy and Stability, eq. 4.4), so two orders are within twice that.

    Args:
      ids: ``(N,)`` row ids.
      weights_NxD: the summed contributions.
      num_rows: rows of the table.

    Returns:
      ``(num_rows, D)`` float64 bounds.
    """
    count = np.bincount(ids, minlength=num_rows).astype(np.float64)
    abs_sum = np.zeros((num_rows, weights_NxD.shape[1]))
    np.add.at(abs_sum, ids, np.abs(weights_NxD.astype(np.float64)))
    return 2 * np.maximum(count - 1, 0)[:, None] * _U * abs_sum


def gradient_rows(case: GradientCase, backend: str, *, seed: int = 0) -> list[CheckResult]:
    """Two rows (token table, position table) of one case."""
    ids_BxT = case.ids()
    b, t = ids_BxT.shape
    torch.manual_seed(seed)
    module = TorchInputEmbedding(context_length=t, emb_dim=case.features)
    weights_BxTxD = np.random.default_rng(seed).standard_normal((b, t, case.features), np.float32)
    model = InputEmbedding(context_length=t, features=case.features)

    def loss(params):
        return (model.apply(params, ids_BxT) * weights_BxTxD).sum()

    with on_backend(backend):
        params = params_from_torch(module.state_dict(), model=model)
        grads = jax.jit(jax.grad(loss))(params)["params"]
    device = torch_device(backend)
    module = module.to(device)
    out = module(torch.from_numpy(ids_BxT).long().to(device))
    (out * torch.from_numpy(weights_BxTxD).to(device)).sum().backward()

    weights_NxD = weights_BxTxD.reshape(-1, case.features)
    positions = np.tile(np.arange(t), b)
    rows = []
    for name, table_ids, n in (("tok_emb", ids_BxT.ravel(), 50257), ("pos_emb", positions, t)):
        bound = gradient_bound(table_ids, weights_NxD, n)
        torch_grad = getattr(module, name).weight.grad.cpu()
        flax_grad = np.asarray(grads[name]["embedding"])
        within = bool(np.all(np.abs(flax_grad.astype(np.float64) - torch_grad.numpy()) <= bound))
        most = int(np.bincount(table_ids).max())
        note = (
            f"up to {most} duplicates per row; tolerance 2(k-1)u·Σ|w| (summation order), "
            f"per-entry bound {'holds' if within else 'VIOLATED'}"
        )
        rows.append(
            compare(
                f"gradient {name} {case.name} {b}x{t}x{case.features}",
                backend,
                flax_grad,
                torch_grad,
                tolerance=float(bound.max()) if within else 0.0,  # violated: fail the row
                note=note,
            )
        )
    return rows


def gradient_checks(backend: str) -> list[CheckResult]:
    """Both cases, both tables."""
    return [row for case in GRADIENT_CASES for row in gradient_rows(case, backend)]
