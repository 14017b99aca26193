"""Forward: jit-compiled ``InputEmbedding`` against torch eager and a plain memory copy.

For each shape ``(B, T, D)`` (``V = 50257``, ``context_length = T``) both sides get
the same weights and the same ids, and the outputs must agree bit for bit. Timed
side by side, interleaved:

* ``jax``: the jitted ``model.apply`` (``--tuned``: ``performance.jit_into``, the
  result written into a donated buffer; and ``performance.use_inline_cpu_dispatch``);
* ``torch``: the book's two ``nn.Embedding`` layers, eager, under ``no_grad``;
* ``memcpy``: ``np.copyto`` of a same-size float32 array into a preallocated one,
  the memory-bandwidth limit of writing the output (reads ``B*T*D*4`` bytes and
  writes as many; the lookup reads as many rows of the table);
* ``fresh``: a jitted elementwise pass ``-x`` over an output-sized array, which
  allocates its result as ``jax.jit`` does: the cost of fresh output memory.

The first call (trace + compile) is timed separately. ``run.py`` runs this
twice, with JAX's defaults and ``--tuned`` (plus ``GLIBC_TUNABLES=glibc.malloc.
hugetlb=1``, which lets glibc back large allocations with transparent huge pages,
for torch as much as for JAX), both with ``OMP_WAIT_POLICY=passive`` so that
torch's idle OpenMP threads do not spin on the cores the next variant needs.
"""

from __future__ import annotations

import argparse
import sys
import time

SECTION = "forward"
SEED, GPT2, GPT2_BIG = (8, 4, 256), (8, 1024, 768), (32, 1024, 768)
QUICK_SHAPES = (SEED, (2, 64, 128), (4, 64, 128))
VOCAB = 50257


def _rounds(shape: tuple[int, int, int]) -> tuple[int, int]:
    """(rounds, calls per round) for about the same time per shape."""
    size = shape[0] * shape[1] * shape[2]
    if size <= 1 << 16:
        return 21, 200
    if size <= 1 << 23:
        return 25, 4
    return 15, 2


def bench(quick: bool, tuned: bool) -> None:
    if tuned:
        from flax_embed.performance import use_inline_cpu_dispatch

        use_inline_cpu_dispatch()
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    from common import Row, emit, fmt_time, interleaved

    from flax_embed.layers.linen import InputEmbedding
    from flax_embed.performance import jit_into
    from parity.torch_reference import TorchInputEmbedding

    config = "tuned" if tuned else "JAX defaults"
    shapes = QUICK_SHAPES if quick else (SEED, GPT2, GPT2_BIG)
    rng = np.random.default_rng(0)
    compile_times = []
    for B, T, D in shapes:
        tok_VxD = rng.standard_normal((VOCAB, D), dtype=np.float32)
        pos_TxD = rng.standard_normal((T, D), dtype=np.float32)
        ids_BxT = rng.integers(0, VOCAB, (B, T), dtype=np.int32)

        model = InputEmbedding(vocab_size=VOCAB, context_length=T, features=D)
        params = {"params": {"tok_emb": {"embedding": jnp.asarray(tok_VxD)},
                             "pos_emb": {"embedding": jnp.asarray(pos_TxD)}}}  # fmt: skip
        ids = jax.device_put(ids_BxT)
        first_out = jnp.zeros((B, T, D), jnp.float32).block_until_ready()
        start = time.perf_counter()
        if tuned:
            apply = jit_into(model.apply)
            state = {"out": apply(first_out, params, ids)}
            state["out"].block_until_ready()
        else:
            apply = jax.jit(model.apply)
            apply(params, ids).block_until_ready()
        compile_times.append(((B, T, D), time.perf_counter() - start))

        if tuned:

            def run_jax(apply=apply, state=state, params=params, ids=ids):
                state["out"] = apply(state["out"], params, ids)
                state["out"].block_until_ready()

            ours = np.asarray(state["out"])
        else:

            def run_jax(apply=apply, params=params, ids=ids):
                apply(params, ids).block_until_ready()

            ours = np.asarray(apply(params, ids))

        torch_model = TorchInputEmbedding(VOCAB, T, D)
        with torch.no_grad():
            torch_model.tok_emb.weight.copy_(torch.from_numpy(tok_VxD))
            torch_model.pos_emb.weight.copy_(torch.from_numpy(pos_TxD))
        ids_torch = torch.from_numpy(ids_BxT.astype(np.int64))

        def run_torch(torch_model=torch_model, ids_torch=ids_torch):
            with torch.no_grad():
                return torch_model(ids_torch)

        max_diff = float(np.max(np.abs(run_torch().numpy() - ours)))
        src, dst = ours.copy(), np.empty_like(ours)
        negate = jax.jit(jnp.negative)
        x = jnp.asarray(src)
        variants = {
            "jax": run_jax,
            "torch": run_torch,
            "memcpy": lambda src=src, dst=dst: np.copyto(dst, src),
            "fresh": lambda negate=negate, x=x: negate(x).block_until_ready(),
        }
        if (B, T, D) == SEED:
            gather = jax.jit(lambda table, ids: table.at[ids].get(mode="promise_in_bounds"))
            table = params["params"]["tok_emb"]["embedding"]
            variants["gather"] = lambda gather=gather, table=table, ids=ids: gather(
                table, ids
            ).block_until_ready()
        rounds, number = _rounds((B, T, D))
        t = interleaved(variants, rounds=rounds, number=number)
        speedup = t["torch"] / t["jax"]
        is_seed = (B, T, D) == SEED
        target = "≥ 1.0x (no slower)" if is_seed else "≥ 2x"
        enough = 1.0 if is_seed else 2.0
        note = f"max|Δ| vs torch = {max_diff:g}; fresh-output jit pass (-x) {fmt_time(t['fresh'])}"
        if "gather" in t:
            note += f"; bare jitted gather {fmt_time(t['gather'])}"
        emit(
            Row(
                SECTION,
                f"({B}, {T}, {D}) jit vs torch eager [{config}]",
                fmt_time(t["jax"]),
                f"{fmt_time(t['torch'])} torch",
                speedup,
                target=target,
                met=None if quick else (speedup >= enough and max_diff == 0.0),
                note=note,
            )
        )
        if not is_seed:
            ratio = t["jax"] / t["memcpy"]
            emit(
                Row(
                    SECTION,
                    f"({B}, {T}, {D}) jit vs memcpy of the output [{config}]",
                    fmt_time(t["jax"]),
                    f"{fmt_time(t['memcpy'])} memcpy",
                    ratio,
                    ratio_label="x memcpy",
                    target="≤ 1.3x",
                    met=None if quick else ratio <= 1.3,
                    note=f"{B * T * D * 4 / 1e6:.0f} MB output; np.copyto into a preallocated one",
                )
            )
    # XLA:CPU runs a computation on the caller's thread only when its estimated cost is
    # under 1,000 flops; from 1,000 on it hands it to a worker thread (JAX's default).
    double = jax.jit(lambda v: v * 2)
    small, large = jnp.ones(999), jnp.ones(1000)
    t = interleaved(
        {
            "999": lambda: double(small).block_until_ready(),
            "1000": lambda: double(large).block_until_ready(),
        },
        rounds=15,
        number=200,
    )
    emit(
        Row(
            SECTION,
            f"jitted v * 2 on 1,000 vs 999 floats: the dispatch threshold [{config}]",
            fmt_time(t["1000"]),
            f"{fmt_time(t['999'])} on 999",
            t["1000"] / t["999"],
            ratio_label="x slower",
            note="999 and 1,000 floats cost the same to compute; the step is the hand-off "
            "of computations of ≥ 1,000 flops to a worker thread",
        )
    )
    (shape0, first), *rest = compile_times
    emit(
        Row(
            SECTION,
            f"first call (trace + compile) [{config}]",
            fmt_time(first),
            "",
            None,
            ratio_label="",
            note=f"{shape0}; " + "; ".join(f"{s}: {fmt_time(c)}" for s, c in rest),
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes: checks the harness")
    parser.add_argument(
        "--tuned", action="store_true", help="inline CPU dispatch and a donated output buffer"
    )
    args = parser.parse_args(argv)
    bench(args.quick, args.tuned)
    return 0


if __name__ == "__main__":
    sys.exit(main())
