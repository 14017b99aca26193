"""Linen and NNX rows: both Flax APIs against torch, and the tied output head.

Each forward row computes the same batch three ways: the Linen ``InputEmbedding``
under ``jax.jit``, the NNX one under ``nnx.jit`` with the same tables (moved by
``params_to_nnx`` / ``params_from_nnx``), and the book's torch module with those
tables again (``params_to_torch``). float32 must be bit-identical, Linen ≡ NNX ≡ torch.

``attend`` (logits against the token table) is a matmul, whose summation order
differs between XLA and torch, so it is compared within a tolerance; see
``ATTEND_TOLERANCE_ULPS``.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import torch
from flax import nnx

from flax_embed.convert import params_to_torch
from flax_embed.layers.linen import InputEmbedding
from flax_embed.nnx import InputEmbedding as NNXInputEmbedding
from flax_embed.nnx import params_from_nnx, params_to_nnx
from flax_embed.tokenizer import GPT2_VOCAB_SIZE
from parity.common import compare, on_backend, text_batch, torch_device
from parity.result import CheckResult
from parity.torch_reference import TorchInputEmbedding

__all__ = ["ATTEND_TOLERANCE_ULPS", "linen_nnx_checks"]

ATTEND_TOLERANCE_ULPS = 64
"""``attend`` vs torch ``x @ W.T``: the tolerance, in ulps of the largest |logit|.

Measured on CPU (jax 0.10.2, torch 2.13.0), float32, x = a sum of two N(0, 1)
rows, W ~ N(0, 1), V = 50257: max |JAX - torch| was 3 to 9 ulps for D = 256 (3 in
the report's own row) and 9 to 10 ulps for D = 768 (three seeds each); each side
is within 6 to 11 ulps of a float64 reference. A float32 matmul at TF32 precision
(GPU's default) is about 4,500 ulps off and one at bfloat16 (TPU's default) about
37,000, so 64 ulps accepts any float32 summation order and rejects a reduced-precision matmul.
"""

_D = 256


def _three_way(check: str, backend: str, linen, nnx_out, torch_out, note: str = "") -> CheckResult:
    """One row: Linen vs torch and NNX vs torch, both must be bit-identical."""
    a = compare(check, backend, linen, torch_out, note=note)
    b = compare(check, backend, nnx_out, torch_out, note=note)
    return dataclasses.replace(
        a,
        max_abs_diff=float(np.maximum(a.max_abs_diff, b.max_abs_diff)),  # NaN wins
        bit_identical=a.bit_identical and b.bit_identical,
    )


def _torch_module(params: dict, context_length: int, device: str) -> TorchInputEmbedding:
    module = TorchInputEmbedding(GPT2_VOCAB_SIZE, context_length, _D)
    module.load_state_dict(params_to_torch(params))
    return module.to(device).eval()


def _nnx_with(params: dict, **config) -> NNXInputEmbedding:
    return params_to_nnx(params, NNXInputEmbedding(**config, rngs=nnx.Rngs(0)))


def _embed_nnx(model: NNXInputEmbedding, ids, positions=None) -> jax.Array:
    return nnx.jit(lambda m, i, p: m(i, p))(model, ids, positions)


def linen_nnx_checks(backend: str) -> list[CheckResult]:
    """The rows of this group on ``backend``: three forward rows and two attend rows."""
    device = torch_device(backend)
    ids_BxT, _ = text_batch(8, 4)
    config = dict(vocab_size=GPT2_VOCAB_SIZE, context_length=4, features=_D)
    rows = []
    with on_backend(backend):
        # Linen-initialised tables → NNX → torch.
        linen = InputEmbedding(**config)
        params = linen.init(jax.random.key(0), ids_BxT)
        nnx_model = _nnx_with(params, **config)
        torch_model = _torch_module(params, 4, device)
        x_linen = jax.jit(linen.apply)(params, ids_BxT)
        x_nnx = _embed_nnx(nnx_model, ids_BxT)
        x_torch = torch_model.run(ids_BxT)
        rows.append(
            _three_way(
                "linen≡nnx≡torch forward seed 8x4x256 (linen init)",
                backend,
                x_linen,
                x_nnx,
                x_torch,
            )
        )

        # Dropout configured but off: still the same numbers.
        drop_config = dict(config, dropout_rate=0.1, deterministic=True)
        drop_linen = InputEmbedding(**drop_config)
        drop_nnx = _nnx_with(params, **drop_config)
        rows.append(
            _three_way(
                "linen≡nnx≡torch forward, dropout 0.1 deterministic",
                backend,
                jax.jit(drop_linen.apply)(params, ids_BxT),
                _embed_nnx(drop_nnx, ids_BxT),
                x_torch,
                note="torch: the same tables in eval mode (dropout is the identity)",
            )
        )

        # NNX-initialised tables → Linen → torch, positions with per-row offsets.
        off_config = dict(config, context_length=16)
        own_nnx = NNXInputEmbedding(**off_config, rngs=nnx.Rngs(1))
        own_params = params_from_nnx(own_nnx)
        off_linen = InputEmbedding(**off_config)
        positions_BxT = np.arange(4, dtype=np.int32) + np.array([[0], [3], [7], [12]], np.int32)
        off_ids = ids_BxT[:4]
        rows.append(
            _three_way(
                "linen≡nnx≡torch forward positions+offset 4x4x256 (nnx init)",
                backend,
                jax.jit(off_linen.apply)(own_params, off_ids, positions_BxT),
                _embed_nnx(own_nnx, off_ids, positions_BxT),
                _torch_module(own_params, 16, device).run(off_ids, positions_BxT),
            )
        )

        # Tied output head: logits of the seed batch against the token table.
        logits_linen = jax.jit(lambda p, x: linen.apply(p, x, method=linen.attend))(params, x_linen)
        logits_nnx = nnx.jit(lambda m, x: m.attend(x))(nnx_model, x_nnx)
        with torch.no_grad():
            logits_torch = x_torch @ torch_model.tok_emb.weight.T
    logits_torch_np = logits_torch.cpu().numpy()
    ulp = float(np.spacing(np.abs(logits_torch_np).max()))
    rows.append(
        compare(
            "linen≡nnx attend 8x4x256 → 50257 logits",
            backend,
            logits_linen,
            logits_nnx,
        )
    )
    attend = compare(
        "attend vs torch x @ W.T, precision HIGHEST",
        backend,
        logits_linen,
        logits_torch_np,
        tolerance=ATTEND_TOLERANCE_ULPS * ulp,
        note=(
            f"tolerance {ATTEND_TOLERANCE_ULPS} ulps of max|logit| (ulp {ulp:.3g}); "
            f"{{ulps}} ulps measured; TF32 would be ~4500, bfloat16 ~37000 "
            "(parity.linen_nnx.ATTEND_TOLERANCE_ULPS); on CPU the default precision "
            "gives the same bits, so this row guards HIGHEST only on GPU/TPU"
        ),
    )
    measured = attend.max_abs_diff / ulp
    rows.append(dataclasses.replace(attend, note=attend.note.replace("{ulps}", f"{measured:.1f}")))
    return rows
