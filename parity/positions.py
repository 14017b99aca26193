"""Positional-encoding rows: ``flax_embed.positions`` against the Hugging Face originals.

References (``transformers``, installed from the package index): DistilBERT
``_create_sinusoidal_embeddings``, ``MarianSinusoidalPositionalEmbedding``, M2M100
``get_embedding`` (the three sinusoidal variants); ``LlamaRotaryEmbedding`` (every
scaling type through ``ROPE_INIT_FUNCTIONS``) with Llama's ``apply_rotary_pos_emb``;
GPT-J's table and ``apply_rotary_pos_emb`` (interleaved); GPT-NeoX's (partial
rotary); BLOOM's ``build_alibi_tensor``.

Two kinds of rows:

* same arithmetic, bit-identical (tolerance 0): the rotation given the reference's
  own cos/sin without ``jit`` (Llama, GPT-J, GPT-NeoX), ``rope_permute`` against
  Hugging Face's conversion ``permute`` and permuting twice, ALiBi slopes for
  head counts up to 8 (exact powers of two);
* different libm code (``pow``/``exp``/``sin``/``cos``), checked *entry by entry*
  against a bound derived from the operations (``U = 2^-24``, float32's unit
  roundoff; the derivations are in the docstrings below and in docs/positions.md).
  The row's tolerance is the largest entry's bound when every entry is within its
  own, else 0 (the row fails); the note gives the largest ``|Δ| / bound``.
  Positions go up to 131,071.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import torch

from flax_embed import positions as P
from parity.common import compare, on_backend, ulp_distance
from parity.result import CheckResult

__all__ = [
    "MAX_POSITION",
    "ROPE_CASES",
    "RopeCase",
    "alibi_rows",
    "bf16_rotate_rows",
    "bounded",
    "hf_permute",
    "neox_rows",
    "positions_checks",
    "rope_apply_rows",
    "rope_permute_rows",
    "rope_rows",
    "sinusoidal_rows",
]

U = 2.0**-24
"""float32 unit roundoff: a correctly rounded result is within ``U·|x|``; 1 ULP ≤ ``2U·|x|``."""
MAX_POSITION = 131_071
"""The largest position compared (131,072 positions)."""


def sincos_slack(backend: str) -> float:
    """Extra absolute error allowed for JAX's float32 ``sin``/``cos`` beyond 1 ULP (``2U``).

    The bounds below take every float32 ``sin``/``cos`` within 1 ULP (``2U`` absolute,
    values in [-1, 1]): measured for XLA:CPU's and torch's against float64. CUDA
    documents 2 ULP for ``sinf``/``cosf`` (CUDA C++ Programming Guide, mathematical
    functions), so on GPU (and TPU, unmeasured) JAX's side gets one more ULP: ``2U``.
    """
    return 0.0 if backend == "cpu" else 2 * U


def bounded(check: str, backend: str, ours, ref, bound, *, what: str = "") -> CheckResult:
    """A row whose every entry must satisfy ``|ours - ref| <= bound`` (broadcast).

    Tolerance: ``max(bound)`` when all entries pass, else 0.0 (fails unless the two
    are bit-identical). The note gives the worst ``|Δ|/bound`` and the ULP distance.
    """
    a, b = np.asarray(ours), np.asarray(ref)
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    bound = np.broadcast_to(np.asarray(bound, np.float64), diff.shape)
    ok = bool(np.all(diff <= bound))
    ratio = float(np.max(diff / np.maximum(bound, np.finfo(np.float64).tiny))) if diff.size else 0
    ulp = ulp_distance(a, b)
    # Across a sign change (an angle near a multiple of π) ULP counts explode: shown when small.
    ulps = f", max {ulp} ULP" if ulp <= 1000 else ""
    note = f"{what}; worst |Δ|/bound = {ratio:.3g}{ulps}".lstrip("; ")
    return compare(check, backend, a, b, tolerance=float(bound.max()) if ok else 0.0, note=note)


# --- sinusoidal tables -----------------------------------------------------------------------

SINUSOIDAL_BOUNDS = {
    # variant: (rho, ε): |Δ| <= θ·rho + ε at angle θ. Ours: ω rounded once (U), θ = fl(p·ω)
    # (U), sin/cos within 1 ULP (2U). DistilBERT/Marian: float64 then rounded (U).
    "interleaved": (2 * U, 3 * U),
    "concat": (2 * U, 3 * U),
    # M2M100: both sides take ω = exp(fl32(j·fl32(-c))) of the *same* float32 argument;
    # ours rounds exp once (U), torch's float32 exp is within 1 ULP (2U); each side
    # rounds θ (2U); both sin/cos within 1 ULP (4U).
    "tensor2tensor": (5 * U, 4 * U),
}


def _sinusoidal_reference(variant: str, n: int, d: int) -> np.ndarray:
    if variant == "interleaved":
        from transformers.models.distilbert.modeling_distilbert import (
            _create_sinusoidal_embeddings,
        )

        return _create_sinusoidal_embeddings(n, d, torch.empty(n, d)).numpy()
    if variant == "concat":
        from transformers.models.marian.modeling_marian import MarianSinusoidalPositionalEmbedding

        return MarianSinusoidalPositionalEmbedding(n, d).create_weight().numpy()
    from transformers.models.m2m_100.modeling_m2m_100 import M2M100SinusoidalPositionalEmbedding

    return M2M100SinusoidalPositionalEmbedding.get_embedding(n, d).numpy()


def _sinusoidal_angles(variant: str, n: int, d: int) -> np.ndarray:
    """``|θ|`` of each table entry (float64), for the bound."""
    inv = P.sinusoidal_inv_freq(d, variant).astype(np.float64)
    pos = np.arange(n, dtype=np.float64)[:, None]
    if variant == "interleaved":
        return pos * np.repeat(inv, 2)[:d]
    if variant == "concat":
        return pos * np.concatenate([inv, inv[: d // 2]])
    theta = pos * np.concatenate([inv, inv])
    return theta if d % 2 == 0 else np.concatenate([theta, np.zeros((n, 1))], axis=1)


SINUSOIDAL_SIZES = ((MAX_POSITION + 1, 16), (512, 768), (64, 7))
"""``(num_positions, features)``: long (every position to 131,071), DistilBERT's, odd."""


def sinusoidal_rows(backend: str, sizes=SINUSOIDAL_SIZES) -> list[CheckResult]:
    rows = []
    refs = {"interleaved": "DistilBERT", "concat": "Marian", "tensor2tensor": "M2M100"}
    for variant, ref_name in refs.items():
        rho, eps = SINUSOIDAL_BOUNDS[variant]
        eps += sincos_slack(backend)
        for n, d in sizes:
            with on_backend(backend):
                ours = np.asarray(
                    jax.jit(P.sinusoidal_table, static_argnums=(0, 1), static_argnames="variant")(
                        n, d, variant=variant
                    )
                )
            ref = _sinusoidal_reference(variant, n, d)
            bound = _sinusoidal_angles(variant, n, d) * rho + eps
            rows.append(
                bounded(
                    f"sinusoidal {variant} {n}x{d} vs {ref_name}",
                    backend,
                    ours,
                    ref,
                    bound,
                    what=f"|Δ| <= θ·{rho / U:g}U + {eps / U:g}U",
                )
            )
    return rows


# --- RoPE: frequencies, cos/sin, apply ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RopeCase:
    """A Llama-family configuration: ``rope_parameters`` of ``transformers.LlamaConfig``."""

    name: str
    head_dim: int
    rope_parameters: dict
    max_position_embeddings: int = 4096

    def hf_config(self):
        from transformers import LlamaConfig

        return LlamaConfig(
            hidden_size=self.head_dim * 2,
            num_attention_heads=2,
            head_dim=self.head_dim,
            max_position_embeddings=self.max_position_embeddings,
            rope_parameters=dict(self.rope_parameters),
        )

    def rope(self) -> P.RoPE:
        return P.RoPE.from_hf_config(self.hf_config().to_dict())


ROPE_CASES = (
    RopeCase("default θ=1e4", 64, {"rope_type": "default", "rope_theta": 10000.0}),
    RopeCase("default θ=5e5 d=128", 128, {"rope_type": "default", "rope_theta": 500000.0}),
    RopeCase("linear x4", 64, {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}),
    RopeCase("dynamic x2", 64, {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}),
    RopeCase(
        "llama3",
        128,
        {
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        max_position_embeddings=131072,
    ),
    RopeCase(
        "yarn x4",
        64,
        {
            "rope_type": "yarn",
            "rope_theta": 10000.0,
            "factor": 4.0,
            "original_max_position_embeddings": 4096,
        },
        max_position_embeddings=16384,
    ),
)


def inv_freq_bound(rope: P.RoPE, positions: np.ndarray) -> float:
    """Relative bound ``rho_w`` on ``|ω_ours - ω_HF| / ω``.

    Both follow the same float32 operations; they differ in ``pow``: ours is rounded
    once from float64 (``U``), torch's float32 ``pow`` is within 1 ULP (``2U``): 3U.
    Every later float32 operation may round the two differently (``2U`` each):
    ``1/x`` (default: 5U), ``/factor`` (linear: 7U), YaRN's ``1/(f·p)``, two
    products and a sum (13U). Llama 3's smooth blend ``(1-s)·ω/f + s·ω`` with
    ``s = (L·ω/2π - l)/(h - l)`` amplifies an error of ω by at most
    ``1 + f·h/(h - l)``; plus 8 operations (16U). Dynamic NTK (in-graph, XLA's float32
    ``log``/``exp`` against torch's two ``pow``): ``exp(-e·ln θ')`` has abs. error
    ``≤ 4U·ln θ'`` in its argument, plus 12U for the remaining roundings.
    """
    s = rope.scaling
    if s is None:
        return 5 * U
    if isinstance(s, P.LinearScaling):
        return 7 * U
    if isinstance(s, P.YarnScaling):
        return 13 * U
    if isinstance(s, P.Llama3Scaling):
        if s.high_freq_factor == s.low_freq_factor:  # no blended band (Llama 4)
            return 5 * U + 16 * U
        amp = 1 + s.factor * s.high_freq_factor / (s.high_freq_factor - s.low_freq_factor)
        return 5 * U * amp + 16 * U
    seq_len = float(np.max(positions)) + 1
    ratio = max(s.factor * seq_len / s.original_max_position_embeddings - (s.factor - 1), 1.0)
    d = rope.dim
    log_base = math.log(rope.base) + d / (d - 2) * math.log(ratio)
    return (4 * log_base + 12) * U


def _hf_rotary(case: RopeCase, positions_BxT: np.ndarray):
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    module = LlamaRotaryEmbedding(case.hf_config())
    x = torch.zeros(1, dtype=torch.float32)
    cos, sin = module(x, torch.from_numpy(positions_BxT).long())
    return module, cos, sin


def _positions() -> np.ndarray:
    """4,096 positions spread over ``[0, 131,071]``, both ends included."""
    return np.concatenate([np.arange(2048), np.linspace(2048, MAX_POSITION, 2048)]).astype(np.int32)


def rope_rows(case: RopeCase, backend: str) -> list[CheckResult]:
    """``inv_freq``, then cos/sin at positions to 131,071, then ``apply``, vs Llama's."""
    rope = case.rope()
    pos_T = _positions()
    module, cos_hf, sin_hf = _hf_rotary(case, pos_T[None])
    half = rope.dim // 2
    rho = inv_freq_bound(rope, pos_T)
    rows = []
    with on_backend(backend):
        if isinstance(rope.scaling, P.DynamicNTKScaling):
            inv = np.asarray(jax.jit(rope._dynamic_inv_freq)(jnp.asarray(pos_T)))
        else:
            inv = np.asarray(rope.inv_freq)
        cos, sin = (np.asarray(a) for a in jax.jit(rope.cos_sin)(pos_T))
    hf_inv = module.inv_freq.numpy()
    rows.append(
        bounded(
            f"RoPE {case.name} inv_freq vs HF",
            backend,
            inv,
            hf_inv,
            rho * np.abs(hf_inv),
            what=f"|Δω| <= {rho / U:.1f}U·ω",
        )
    )
    g = rope.attention_factor
    theta = pos_T.astype(np.float64)[:, None] * hf_inv.astype(np.float64)
    # θ = fl(p·ω) on each side (2U); sin/cos within 1 ULP each side (4U); xg rounded (2U·g).
    cs_bound = g * (theta * (rho + 2 * U) + 4 * U + sincos_slack(backend)) + 2 * U * g
    for name, ours, ref in (("cos", cos, cos_hf[0, :, :half]), ("sin", sin, sin_hf[0, :, :half])):
        rows.append(
            bounded(
                f"RoPE {case.name} {name} p≤{MAX_POSITION} vs HF",
                backend,
                ours,
                ref.numpy(),
                cs_bound,
                what=f"|Δ| <= g·(θ·(rho_w+2U) + 4U) + 2U·g, g={g:.4g}",
            )
        )
    rows += rope_apply_rows(case, rope, pos_T, backend, cs_bound)
    return rows


def rope_apply_rows(case: RopeCase, rope: P.RoPE, pos_T, backend, cs_bound) -> list[CheckResult]:
    """``apply`` (jit) against HF's full path (rotary embedding + ``apply_rotary_pos_emb``).

    ``o = x·c + r·s`` over a pair ``(x, r)``: ``|Δo| <= (|x| + |r|)·(Δcs + 4U·g)``, with
    ``Δcs`` the cos/sin bound and 4U·g for the (up to) 3 roundings on each side.
    """
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    rng = np.random.default_rng(0)
    H, D = 2, rope.head_dim
    x_BxTxHxD = rng.standard_normal((1, pos_T.shape[0], H, D), dtype=np.float32)
    _, cos_hf, sin_hf = _hf_rotary(case, pos_T[None])
    q = torch.from_numpy(x_BxTxHxD).transpose(1, 2)  # (B, H, T, D)
    ref, _ = apply_rotary_pos_emb(q, q, cos_hf, sin_hf)
    ref = ref.transpose(1, 2).numpy()
    with on_backend(backend):
        ours = np.asarray(jax.jit(rope.apply)(x_BxTxHxD, pos_T[None]))
    half = D // 2
    pair = np.abs(x_BxTxHxD) + np.abs(
        np.concatenate([x_BxTxHxD[..., half:], x_BxTxHxD[..., :half]], -1)
    )
    g = rope.attention_factor
    cs = np.concatenate([cs_bound, cs_bound], -1)[None, :, None, :]
    return [
        bounded(
            f"RoPE {case.name} apply (jit) 1x{pos_T.shape[0]}x{H}x{D} vs HF",
            backend,
            ours,
            ref,
            pair * (cs + 4 * U * g),
            what="|Δo| <= (|x|+|r|)·(Δcs + 4U·g)",
        )
    ]


# --- the rotation given the same cos/sin: bit for bit --------------------------------------


def fma_bound(x_rot: np.ndarray, rotated: np.ndarray, cos: np.ndarray, sin: np.ndarray):
    """Under ``jit`` XLA contracts ``x·c + r·s`` into ``fma(x, c, fl(r·s))`` or
    ``fma(r, s, fl(x·c))`` (one rounding fewer than torch's ``fl(fl(x·c) + fl(r·s))``):
    with ``a = |x·c|``, ``b = |r·s|`` and the fused product ``a``,
    ``|Δ| <= U·a + 2U·(a + b)`` (one skipped rounding, two final ones) to first
    order; ``U·max(3a + 2b, 2a + 3b)·(1 + U)`` covers either choice."""
    a = np.abs(x_rot.astype(np.float64) * cos)
    b = np.abs(rotated.astype(np.float64) * sin)
    return U * np.maximum(3 * a + 2 * b, 2 * a + 3 * b) * (1 + U)


def same_cos_sin_rows(backend: str) -> list[CheckResult]:
    """``RoPE.rotate`` given each reference's own cos/sin: bit-identical without jit."""
    from transformers.models.gpt_neox.modeling_gpt_neox import (
        apply_rotary_pos_emb as neox_apply,
    )
    from transformers.models.gptj.modeling_gptj import (
        apply_rotary_pos_emb as gptj_apply,
    )
    from transformers.models.gptj.modeling_gptj import create_sinusoidal_positions
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as llama_apply

    rng = np.random.default_rng(1)
    B, T, H, D = 2, 128, 4, 64
    x = rng.standard_normal((B, T, H, D), dtype=np.float32)
    pos = (np.arange(T)[None] + np.array([[0], [MAX_POSITION - T + 1]])).astype(np.int64)
    rows = []
    for ref_name, layout, rotary_dim in (
        ("Llama", "half", None),
        ("GPT-NeoX", "half", 16),
        ("GPT-J", "interleaved", None),
        ("GPT-J", "interleaved", 16),
    ):
        rope = P.RoPE(D, layout=layout, rotary_dim=rotary_dim)
        d = rope.dim
        if layout == "interleaved":
            table = create_sinusoidal_positions(MAX_POSITION + 1, d)
            sincos = table[torch.from_numpy(pos)]
            sin_t, cos_t = torch.split(sincos, d // 2, dim=-1)
            xt = torch.from_numpy(x)
            ref = torch.cat([gptj_apply(xt[..., :d], sin_t, cos_t), xt[..., d:]], -1).numpy()
            cos_h, sin_h = cos_t.numpy(), sin_t.numpy()
        else:
            inv = rope.inv_freq_np()
            freqs = torch.from_numpy(pos).float()[..., None] * torch.from_numpy(inv)
            emb = torch.cat([freqs, freqs], -1)
            cos_t, sin_t = emb.cos(), emb.sin()
            q = torch.from_numpy(x).transpose(1, 2)
            apply = llama_apply if rotary_dim is None else neox_apply
            ref = apply(q, q, cos_t, sin_t)[0].transpose(1, 2).numpy()
            cos_h, sin_h = cos_t[..., : d // 2].numpy(), sin_t[..., : d // 2].numpy()
        what = f"{ref_name} {layout}{'' if rotary_dim is None else f' rotary_dim={rotary_dim}'}"
        with on_backend(backend):
            eager = np.asarray(rope.rotate(jnp.asarray(x), jnp.asarray(cos_h), jnp.asarray(sin_h)))
            jitted = np.asarray(jax.jit(rope.rotate)(x, cos_h, sin_h))
        rows.append(
            compare(
                f"RoPE rotate, same cos/sin, no jit: {what}",
                backend,
                eager,
                ref,
                note="same float32 operations: bit-identical",
            )
        )
        # The bound for the jitted one: per entry, with the pair partner as r.
        partner = _pair_partner(x[..., :d], layout)
        c = _per_feature(cos_h, layout)[..., None, :]
        s = _per_feature(sin_h, layout)[..., None, :]
        bound = np.concatenate(
            [fma_bound(x[..., :d], partner, c, s), np.zeros(x[..., d:].shape)], -1
        )
        rows.append(
            bounded(
                f"RoPE rotate, same cos/sin, jit: {what}",
                backend,
                jitted,
                ref,
                bound,
                what="XLA fma contraction: |Δ| <= U·max(3a + 2b, 2a + 3b)",
            )
        )
    return rows


def bf16_rotate_rows(backend: str) -> list[CheckResult]:
    """bfloat16 q, the reference's own cos/sin cast to bfloat16 (as Hugging Face casts them).

    torch rounds each of the four operations to bfloat16; so does JAX without ``jit``:
    bit-identical. Under ``jit`` XLA may keep intermediates in float32 (measured on CPU:
    it does not, the rows are bit-identical there); skipping both product roundings
    and rounding once changes an entry by at most ``3·U_b·(a + b)·(1 + U_b)`` with
    ``U_b = 2^-8``, ``a = |x·c|``, ``b = |r·s|``.
    """
    import ml_dtypes
    from transformers.models.gptj.modeling_gptj import apply_rotary_pos_emb as gptj_apply
    from transformers.models.gptj.modeling_gptj import create_sinusoidal_positions
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as llama_apply

    bf16 = ml_dtypes.bfloat16
    u_b = 2.0**-8
    rng = np.random.default_rng(4)
    B, T, H, D = 2, 128, 4, 64
    x_t = torch.from_numpy(rng.standard_normal((B, T, H, D), dtype=np.float32)).bfloat16()
    x = x_t.float().numpy().astype(bf16)
    pos = torch.arange(T)[None] + 1000
    rows = []
    for ref_name, layout in (("Llama", "half"), ("GPT-J", "interleaved")):
        rope = P.RoPE(D, layout=layout)
        if layout == "half":
            freqs = pos.float()[..., None] * torch.from_numpy(rope.inv_freq_np())
            emb = torch.cat([freqs, freqs], -1)
            cos_t, sin_t = emb.cos(), emb.sin()
            ref = llama_apply(x_t, x_t, cos_t.bfloat16(), sin_t.bfloat16(), unsqueeze_dim=2)[0]
            cos_h, sin_h = cos_t[0, :, : D // 2].numpy(), sin_t[0, :, : D // 2].numpy()
        else:
            sin_t, cos_t = torch.split(create_sinusoidal_positions(2048, D)[pos], D // 2, -1)
            ref = gptj_apply(x_t, sin_t.bfloat16(), cos_t.bfloat16())
            cos_h, sin_h = cos_t[0].numpy(), sin_t[0].numpy()
        ref = ref.float().numpy().astype(bf16)
        with on_backend(backend):
            eager = np.asarray(rope.rotate(jnp.asarray(x), jnp.asarray(cos_h), jnp.asarray(sin_h)))
            jitted = np.asarray(jax.jit(rope.rotate)(x, cos_h, sin_h))
        rows.append(
            compare(
                f"RoPE rotate bfloat16, same cos/sin, no jit: {ref_name} {layout}",
                backend,
                eager,
                ref,
                note="same bfloat16 operations: bit-identical",
            )
        )
        xf = x.astype(np.float64)
        partner = _pair_partner(xf, layout)
        c = _per_feature(cos_h, layout)[:, None, :]
        s_ = _per_feature(sin_h, layout)[:, None, :]
        c = c.astype(bf16).astype(np.float64)
        s_ = s_.astype(bf16).astype(np.float64)
        bound = 3 * u_b * (np.abs(xf * c) + np.abs(partner * s_)) * (1 + u_b)
        rows.append(
            bounded(
                f"RoPE rotate bfloat16, same cos/sin, jit: {ref_name} {layout}",
                backend,
                jitted,
                ref,
                bound,
                what="|Δ| <= 3·U_b·(a + b), U_b = 2^-8",
            )
        )
    return rows


# --- rope_permute ---------------------------------------------------------------------------


def hf_permute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``permute`` of Hugging Face's ``convert_llama_weights_to_hf.py`` (Meta → HF), verbatim
    (the conversion script is not shipped in the wheel)."""
    dim1, dim2 = w.shape
    return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def rope_permute_rows(backend: str) -> list[CheckResult]:
    """The permutation against HF's, its inverse, and equal attention scores.

    Scores: a Meta-style checkpoint (interleaved pairs, GPT-J's rotation) and its
    ``rope_permute``-d twin (half layout, Llama's rotation), both in torch with the
    same angles. The rotations pair the same values with the same cos/sin, so the
    rotated q and k are permutations of each other up to the projection's own
    rounding; when they are exactly that (checked bit for bit; the case on CPU), the
    scores differ by summation order alone, ``|Δscore| <= 2gamma_D·Σ|q||k|``; otherwise
    ``|Δscore| <= Σ(|Δq||k| + |q||Δk|) + 2gamma_D·Σ|q||k|`` with
    ``|Δq_i| <= 2gamma_m·Σ_j|x_j||W_ij|`` (``gamma_n = n·U/(1 - n·U)``, ``m = d_model``).
    """
    from transformers.models.gptj.modeling_gptj import apply_rotary_pos_emb as gptj_apply
    from transformers.models.gptj.modeling_gptj import create_sinusoidal_positions
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as llama_apply

    rng = np.random.default_rng(2)
    H, D, M, T = 4, 64, 256, 64
    w_q = rng.standard_normal((H * D, M), dtype=np.float32) / 16
    w_k = rng.standard_normal((H * D, M), dtype=np.float32) / 16
    x = rng.standard_normal((1, T, M), dtype=np.float32)
    rows = []
    with on_backend(backend):
        half_q = np.array(P.rope_permute(w_q, H, to="half"))
        back = np.array(P.rope_permute(half_q, H, to="interleaved"))
        half_k = np.array(P.rope_permute(w_k, H, to="half"))
    rows.append(
        compare(
            f"rope_permute to='half' {H * D}x{M} vs HF convert permute",
            backend,
            half_q,
            hf_permute(torch.from_numpy(w_q), H).numpy(),
            note="a permutation: bit-identical",
        )
    )
    rows.append(
        compare(
            "rope_permute twice is the identity",
            backend,
            back,
            w_q,
            note="half then interleaved: bit-identical",
        )
    )

    pos = torch.arange(T)[None] + 1000
    table = create_sinusoidal_positions(2048, D)
    sin, cos = torch.split(table[pos], D // 2, dim=-1)  # (1, T, D/2)
    xt = torch.from_numpy(x)

    def project(w):
        return (xt @ torch.from_numpy(w).T).view(1, T, H, D)

    q_meta = gptj_apply(project(w_q), sin, cos)
    k_meta = gptj_apply(project(w_k), sin, cos)
    cos_h, sin_h = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
    q_hf, k_hf = llama_apply(
        project(half_q).transpose(1, 2), project(half_k).transpose(1, 2), cos_h, sin_h
    )
    scores_meta = torch.einsum("bqhd,bkhd->bhqk", q_meta, k_meta).numpy()
    scores_hf = torch.einsum("bhqd,bhkd->bhqk", q_hf, k_hf).numpy()

    def gamma(n):
        return n * U / (1 - n * U)

    def to_meta(r_half):
        """A half-layout (B, T, H, D) array back in interleaved order."""
        return r_half.reshape(*r_half.shape[:-1], 2, D // 2).swapaxes(-1, -2).reshape(r_half.shape)

    aq, ak = np.abs(q_meta.numpy()).astype(np.float64), np.abs(k_meta.numpy()).astype(np.float64)
    order_only = 2 * gamma(D) * np.einsum("bqhd,bkhd->bhqk", aq, ak)
    xw_q = (np.abs(x) @ np.abs(w_q).T).reshape(1, T, H, D)
    xw_k = (np.abs(x) @ np.abs(w_k).T).reshape(1, T, H, D)
    dq, dk = 2 * gamma(M) * xw_q * 2, 2 * gamma(M) * xw_k * 2  # rotation mixes 2 entries
    loose = np.einsum("bqhd,bkhd->bhqk", dq, ak) + np.einsum("bqhd,bkhd->bhqk", aq, dk) + order_only

    def score_row(check, ours, ref, q_a, q_b, k_a, k_b, who):
        # When the rotated q and k of the two layouts are the same numbers (checked bit for
        # bit), the scores differ by summation order alone: 2·gamma_D·Σ|q||k|.
        same = np.array_equal(to_meta(q_b), q_a) and np.array_equal(to_meta(k_b), k_a)
        bound = order_only if same else loose
        why = (
            "rotated q, k equal up to the permutation, bit for bit: summation order only"
            if same
            else "rotated q, k differ: projection rounding + summation order"
        )
        return bounded(check, backend, ours, ref, bound, what=f"{who}; {why}")

    rows.append(
        score_row(
            "rope_permute: Meta interleaved vs permuted HF half, q·kᵀ",
            scores_hf,
            scores_meta,
            q_meta.numpy(),
            q_hf.transpose(1, 2).numpy(),
            k_meta.numpy(),
            k_hf.transpose(1, 2).numpy(),
            "torch GPT-J vs Llama rotation",
        )
    )
    # The same with flax-embed's own RoPE in both layouts.
    with on_backend(backend):
        rope_i, rope_h = P.RoPE(D, layout="interleaved"), P.RoPE(D, layout="half")
        p = np.arange(T) + 1000

        def rotated(rope, wq, wk):
            q = rope.apply((x @ wq.T).reshape(1, T, H, D), p)
            k = rope.apply((x @ wk.T).reshape(1, T, H, D), p)
            s = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=jax.lax.Precision.HIGHEST)
            return np.asarray(q), np.asarray(k), np.asarray(s)

        qi, ki, ours_meta = rotated(rope_i, w_q, w_k)
        qh, kh, ours_hf = rotated(rope_h, half_q, half_k)
    rows.append(
        score_row(
            "rope_permute: RoPE interleaved vs permuted RoPE half, q·kᵀ",
            ours_hf,
            ours_meta,
            qi,
            qh,
            ki,
            kh,
            "flax-embed both sides",
        )
    )
    return rows


# --- ALiBi ----------------------------------------------------------------------------------

ALIBI_HEADS = (8, 12, 16, 112)
"""BLOOM's head counts include 16 (560m, 1b1), 32 (7b1), 112 (176B); 12 is not a power of 2."""


def alibi_rows(backend: str) -> list[CheckResult]:
    """Slopes and biases against BLOOM's ``build_alibi_tensor``.

    Slopes: ours are the exact powers of two ``2^(-8k/n)`` rounded once (``U``);
    BLOOM's are ``pow(fl32(b), k)`` in float32: ``b``'s rounding grows to ``k·U`` and
    ``pow`` adds 1 ULP, so ``|Δ| <= (k + 3)·U·|slope|``. Up to 8 heads ``b`` is a power
    of two and both are exact: bit-identical. Biases: BLOOM's ``slope·k`` (query-
    independent), ours ``slope·(k - q)``; softmax-equivalent, so the rows compare
    ``ours[h, q, k] + slope·q`` (float64) with BLOOM's, entry by entry, within
    ``K·|Δslope| + U·|slope|·(|k - q| + k)`` (one rounding on each side).
    """
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    rows = []
    Q = K = 64
    for H in ALIBI_HEADS:
        alibi = build_alibi_tensor(torch.ones(1, K, dtype=torch.long), H, torch.float32)
        bloom_slopes = alibi[:, 0, 1].numpy()  # slope·1
        with on_backend(backend):
            slopes = np.asarray(P.alibi_slopes(H))
            bias = np.asarray(jax.jit(P.alibi_bias, static_argnums=(0, 1, 2))(H, Q, K))
        closest = 2 ** math.floor(math.log2(H))
        k = np.concatenate([np.arange(1, closest + 1), np.arange(1, 2 * (H - closest), 2)])
        slope_bound = (k + 3) * U * np.abs(bloom_slopes) if H > 8 else 0.0
        if H <= 8:
            rows.append(
                compare(
                    f"alibi_slopes({H}) vs BLOOM",
                    backend,
                    slopes,
                    bloom_slopes,
                    note="powers of two: bit-identical",
                )
            )
        else:
            rows.append(
                bounded(
                    f"alibi_slopes({H}) vs BLOOM",
                    backend,
                    slopes,
                    bloom_slopes,
                    slope_bound,
                    what="|Δ| <= (k+3)·U·slope",
                )
            )
        shifted = (
            bias.astype(np.float64)
            + slopes.astype(np.float64)[:, None, None] * np.arange(Q)[None, :, None]
        )
        ref = np.broadcast_to(alibi.numpy().astype(np.float64), (H, Q, K))
        distance = np.abs(np.arange(K)[None, :] - np.arange(Q)[:, None])[None]
        bound = K * np.abs(slopes - bloom_slopes)[:, None, None] + U * np.abs(
            slopes.astype(np.float64)
        )[:, None, None] * (distance + np.arange(K)[None, None, :])
        rows.append(
            bounded(
                f"alibi_bias({H}, {Q}, {K}) + slope·q vs BLOOM build_alibi_tensor",
                backend,
                shifted,
                ref,
                bound,
                what="softmax-equivalent: differ by slope·q per query row",
            )
        )
    return rows


def positions_checks(backend: str) -> list[CheckResult]:
    """Every positional scheme against its Hugging Face original, on ``backend``."""
    rows = sinusoidal_rows(backend)
    rows += same_cos_sin_rows(backend)
    rows += bf16_rotate_rows(backend)
    for case in ROPE_CASES:
        rows += rope_rows(case, backend)
    rows += gptj_rows(backend)
    rows += neox_rows(backend)
    rows += rope_permute_rows(backend)
    rows += alibi_rows(backend)
    return rows


def _pair_partner(x_d: np.ndarray, layout: str) -> np.ndarray:
    """The feature each rotated feature is mixed with: the other half, or its pair."""
    if layout == "half":
        h = x_d.shape[-1] // 2
        return np.concatenate([x_d[..., h:], x_d[..., :h]], -1)
    return x_d.reshape(*x_d.shape[:-1], -1, 2)[..., ::-1].reshape(x_d.shape)


def _per_feature(v_half: np.ndarray, layout: str) -> np.ndarray:
    """Per-frequency values ``(..., d/2)`` spread over the ``d`` rotated features."""
    return np.concatenate([v_half, v_half], -1) if layout == "half" else np.repeat(v_half, 2, -1)


def _partial_apply_bound(x: np.ndarray, d: int, cs: np.ndarray, layout: str) -> np.ndarray:
    """|Δ| bound of a jitted partial-rotary ``apply`` of ``x`` ``(1, T, H, D)``.

    ``cs`` ``(T, d/2)`` bounds the error of each cos/sin; the rotation adds 4U; the
    ``D - d`` pass-through features are exact.
    """
    rotated = (np.abs(x[..., :d]) + np.abs(_pair_partner(x[..., :d], layout))) * (
        _per_feature(cs, layout)[None, :, None, :] + 4 * U
    )
    return np.concatenate([rotated, np.zeros(x[..., d:].shape)], -1)


def gptj_rows(backend: str) -> list[CheckResult]:
    """Interleaved end to end: GPT-J's table + ``apply_rotary_pos_emb`` (partial, 32 of 64).

    GPT-J's ``inv_freq`` is the default one (5U), its table ``[sin | cos]`` of
    ``fl(p·ω)``; bounds as for Llama's default.
    """
    from transformers.models.gptj.modeling_gptj import apply_rotary_pos_emb as gptj_apply
    from transformers.models.gptj.modeling_gptj import create_sinusoidal_positions

    rope = P.RoPE.from_hf_config(
        {"model_type": "gptj", "n_embd": 128, "n_head": 2, "rotary_dim": 32}
    )
    d, D, H = rope.dim, rope.head_dim, 2
    pos_T = _positions()
    table = create_sinusoidal_positions(MAX_POSITION + 1, d)
    sin_t, cos_t = torch.split(table[torch.from_numpy(pos_T).long()[None]], d // 2, dim=-1)
    x = np.random.default_rng(3).standard_normal((1, pos_T.shape[0], H, D), dtype=np.float32)
    xt = torch.from_numpy(x)
    ref = torch.cat([gptj_apply(xt[..., :d], sin_t, cos_t), xt[..., d:]], -1).numpy()
    with on_backend(backend):
        ours = np.asarray(jax.jit(rope.apply)(x, pos_T))
    inv = rope.inv_freq_np().astype(np.float64)
    theta = pos_T.astype(np.float64)[:, None] * inv
    cs = theta * (5 * U + 2 * U) + 4 * U + sincos_slack(backend)
    bound = _partial_apply_bound(x, d, cs, "interleaved")
    return [
        bounded(
            f"RoPE GPT-J interleaved rotary_dim={d}/{D} apply (jit) vs HF",
            backend,
            ours,
            ref,
            bound,
            what="default ω (5U); pass-through features exact",
        )
    ]


def neox_rows(backend: str) -> list[CheckResult]:
    """Partial rotary end to end: ``GPTNeoXRotaryEmbedding`` + GPT-NeoX's
    ``apply_rotary_pos_emb`` (``rotary_pct=0.25``: 16 of 64 features), against
    ``RoPE.from_hf_config`` of the same config. Bounds as for Llama's default (5U)."""
    from transformers import GPTNeoXConfig
    from transformers.models.gpt_neox.modeling_gpt_neox import (
        GPTNeoXRotaryEmbedding,
        apply_rotary_pos_emb,
    )

    config = GPTNeoXConfig(hidden_size=128, num_attention_heads=2, rotary_pct=0.25)
    rope = P.RoPE.from_hf_config(config.to_dict())
    d, D, H = rope.dim, rope.head_dim, 2
    pos_T = _positions()
    x = np.random.default_rng(5).standard_normal((1, pos_T.shape[0], H, D), dtype=np.float32)
    q = torch.from_numpy(x).transpose(1, 2)
    cos_t, sin_t = GPTNeoXRotaryEmbedding(config)(q, torch.from_numpy(pos_T).long()[None])
    ref = apply_rotary_pos_emb(q, q, cos_t, sin_t)[0].transpose(1, 2).numpy()
    with on_backend(backend):
        ours = np.asarray(jax.jit(rope.apply)(x, pos_T))
    theta = pos_T.astype(np.float64)[:, None] * rope.inv_freq_np().astype(np.float64)
    cs = theta * (5 * U + 2 * U) + 4 * U + sincos_slack(backend)
    bound = _partial_apply_bound(x, d, cs, "half")
    return [
        bounded(
            f"RoPE GPT-NeoX rotary_pct=0.25 ({d}/{D}) apply (jit) vs HF",
            backend,
            ours,
            ref,
            bound,
            what="default ω (5U); pass-through features exact",
        )
    ]
