"""Positions: ``RoPE.apply`` under jit against Hugging Face eager, tables and ALiBi builds.

Timed side by side, interleaved (``common.interleaved``), medians:

* RoPE on q and k of ``(8, 1024, 12, 64)`` (``--quick``: ``(2, 64, 4, 64)``):
  - ``jax``: the documented calling pattern, one jitted function applying
    ``RoPE.apply`` to q and k (angles computed inside, from the positions);
  - ``jax into``: the same through ``performance.jit_into``, each result written
    into the memory of the previous call's (donated) result: no fresh allocation;
  - ``hf``: Hugging Face Llama's eager ``apply_rotary_pos_emb(q, k, cos, sin,
    unsqueeze_dim=2)`` given cos/sin already computed (its cost per layer; the
    rotary embedding itself runs once per forward and is not timed);
  - ``memcpy``: ``np.copyto`` of q and of k into preallocated arrays: one read and
    one write of each, the memory-bandwidth floor of any rotation.
* ``sinusoidal_table(131072, 4096)`` (2 GB; ``--quick``: ``(4096, 256)``) jitted,
  against the float32 torch builds of the same kind of table: M2M100's
  ``get_embedding`` (same variant, tensor2tensor) and GPT-J's
  ``create_sinusoidal_positions``.
* ``alibi_bias(16, 2048, 2048)`` (the full ``(H, Q, K)`` bias) jitted, against
  BLOOM's ``build_alibi_tensor`` (its ``(H, 1, K)`` query-independent form) and the
  full bias in torch (``slopes[:, None, None] * (k - q)``).

Outputs are checked against each other before timing (max |Δ| in the notes).
"""

from __future__ import annotations

import sys

SECTION = "positions"
FULL = {"rope": (8, 1024, 12, 64), "table": (131072, 4096), "alibi": (16, 2048, 2048)}
QUICK = {"rope": (2, 64, 4, 64), "table": (4096, 256), "alibi": (4, 128, 128)}


def bench(quick: bool) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from common import Row, emit, fmt_time, interleaved
    from transformers import LlamaConfig
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor
    from transformers.models.gptj.modeling_gptj import create_sinusoidal_positions
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb
    from transformers.models.m2m_100.modeling_m2m_100 import M2M100SinusoidalPositionalEmbedding

    from flax_embed.performance import jit_into
    from flax_embed.positions import RoPE, alibi_bias, sinusoidal_table

    sizes = QUICK if quick else FULL
    rounds = 7 if quick else 15

    # --- RoPE -----------------------------------------------------------------------------
    B, T, H, D = sizes["rope"]
    rng = np.random.default_rng(0)
    q_np = rng.standard_normal((B, T, H, D), dtype=np.float32)
    k_np = rng.standard_normal((B, T, H, D), dtype=np.float32)
    pos_np = np.arange(T, dtype=np.int32)
    rope = RoPE(D)

    def rotate_qk(q, k, pos):
        return rope.apply(q, pos), rope.apply(k, pos)

    apply = jax.jit(rotate_qk)
    apply_into = jit_into(rotate_qk)
    q, k, pos = jnp.asarray(q_np), jnp.asarray(k_np), jnp.asarray(pos_np)
    ours_q, _ = apply(q, k, pos)
    state = {"qk": apply_into((jnp.zeros_like(q), jnp.zeros_like(k)), q, k, pos)}
    jax.block_until_ready(state["qk"])

    config = LlamaConfig(hidden_size=H * D, num_attention_heads=H, head_dim=D)
    q_t, k_t = torch.from_numpy(q_np), torch.from_numpy(k_np)
    cos, sin = LlamaRotaryEmbedding(config)(q_t, torch.from_numpy(pos_np).long()[None])
    hf_q, _ = apply_rotary_pos_emb(q_t, k_t, cos, sin, unsqueeze_dim=2)
    max_diff = float(np.max(np.abs(hf_q.numpy() - np.asarray(ours_q))))
    q_dst, k_dst = np.empty_like(q_np), np.empty_like(k_np)

    def run_into():
        state["qk"] = apply_into(state["qk"], q, k, pos)
        jax.block_until_ready(state["qk"])

    def run_hf():
        with torch.no_grad():
            return apply_rotary_pos_emb(q_t, k_t, cos, sin, unsqueeze_dim=2)

    def run_memcpy():
        np.copyto(q_dst, q_np)
        np.copyto(k_dst, k_np)

    t = interleaved(
        {
            "jax": lambda: jax.block_until_ready(apply(q, k, pos)),
            "into": run_into,
            "hf": run_hf,
            "memcpy": run_memcpy,
        },
        rounds=rounds,
        number=3 if not quick else 20,
    )
    mb = 2 * q_np.nbytes / 1e6
    shape = f"({B}, {T}, {H}, {D})"
    best = min(t["jax"], t["into"])
    emit(
        Row(
            SECTION,
            f"RoPE.apply jit on q and k {shape} vs HF eager apply_rotary_pos_emb",
            fmt_time(best),
            f"{fmt_time(t['hf'])} HF eager",
            t["hf"] / best,
            target="≥ 2x",
            met=None if quick else t["hf"] / best >= 2.0,
            note=f"max|Δ| vs HF = {max_diff:g} (XLA fma contraction, see parity rows); HF given "
            f"its cos/sin, ours computes them; the better of plain jit ({fmt_time(t['jax'])}) "
            f"and jit_into ({fmt_time(t['into'])}), the documented CPU pattern",
        )
    )
    emit(
        Row(
            SECTION,
            f"RoPE.apply jit on q and k {shape} vs memcpy of q and k",
            fmt_time(best),
            f"{fmt_time(t['memcpy'])} memcpy",
            best / t["memcpy"],
            ratio_label="x memcpy",
            target="≤ 1.3x",
            met=None if quick else best / t["memcpy"] <= 1.3,
            note=f"{mb:.0f} MB in, as much out; the better of plain jit "
            f"({fmt_time(t['jax'])}) and jit_into ({fmt_time(t['into'])})",
        )
    )

    # --- sinusoidal table -----------------------------------------------------------------
    n, d = sizes["table"]
    table = jax.jit(sinusoidal_table, static_argnums=(0, 1), static_argnames="variant")
    ours = table(n, d, variant="tensor2tensor").block_until_ready()
    ref = M2M100SinusoidalPositionalEmbedding.get_embedding(n, d)
    table_diff = float(np.max(np.abs(np.asarray(ours) - ref.numpy())))
    del ours, ref
    t = interleaved(
        {
            "jax": lambda: table(n, d, variant="tensor2tensor").block_until_ready(),
            "m2m100": lambda: M2M100SinusoidalPositionalEmbedding.get_embedding(n, d),
            "gptj": lambda: create_sinusoidal_positions(n, d),
        },
        rounds=3 if not quick else 5,
        warmup=1,
    )
    emit(
        Row(
            SECTION,
            f"sinusoidal_table({n}, {d}) jit vs M2M100 get_embedding",
            fmt_time(t["jax"]),
            f"{fmt_time(t['m2m100'])} torch",
            t["m2m100"] / t["jax"],
            note=f"{n * d * 4 / 1e9:.2f} GB float32; max|Δ| = {table_diff:g} (angles to "
            f"{n - 1}: within the parity bound θ·5U + 4U); GPT-J create_sinusoidal_positions "
            f"{fmt_time(t['gptj'])}",
        )
    )

    # --- ALiBi ----------------------------------------------------------------------------
    h, ql, kl = sizes["alibi"]
    bias = jax.jit(alibi_bias, static_argnums=(0, 1, 2))
    bias(h, ql, kl).block_until_ready()
    mask = torch.ones(1, kl, dtype=torch.long)
    slopes = build_alibi_tensor(mask, h, torch.float32)[:, 0, 1]
    distance = (torch.arange(kl)[None, :] - torch.arange(ql)[:, None]).float()

    def torch_full():
        return slopes[:, None, None] * distance

    alibi_diff = float(np.max(np.abs(np.asarray(bias(h, ql, kl)) - torch_full().numpy())))
    t = interleaved(
        {
            "jax": lambda: bias(h, ql, kl).block_until_ready(),
            "bloom": lambda: build_alibi_tensor(mask, h, torch.float32),
            "full": torch_full,
        },
        rounds=rounds,
        number=3,
    )
    emit(
        Row(
            SECTION,
            f"alibi_bias({h}, {ql}, {kl}) jit vs torch slopes·(k - q)",
            fmt_time(t["jax"]),
            f"{fmt_time(t['full'])} torch",
            t["full"] / t["jax"],
            note=f"max|Δ| = {alibi_diff:g} (BLOOM's slopes, float32 pow); BLOOM "
            f"build_alibi_tensor (its (H, 1, K) form) {fmt_time(t['bloom'])}",
        )
    )


def main() -> int:
    from common import section_main

    return section_main(bench, __doc__)


if __name__ == "__main__":
    sys.exit(main())
