"""Pipeline: a text file to batches on the device, with and without prefetching.

The text file ("The Verdict" repeated, 2 MB; ``--quick``: 100 KB) is read and
tokenized (``encode_parallel``, timed once), cut into windows of 256 tokens
(stride 256) and batched by 8 (``Batcher``, shuffled); each batch goes to the
device (``jax.device_put``) and through the jitted ``InputEmbedding`` (D = 768), a
stand-in for a training step. Batches per second of one epoch, without prefetch
and with ``prefetch.prefetch_to_device(iterator, size=2)``, interleaved.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from common import Row, corpus_text, emit, fmt_time, interleaved, section_main

SECTION = "pipeline"


def pipeline_row(
    size: int, features: int, rounds: int, *, batch: int = 8, max_length: int = 256
) -> Row:
    """Batches/s of one epoch over ``size`` characters of text, with and without prefetch.

    JAX runs on its default device (``jax.default_device`` chooses another).
    """
    import jax
    import jax.numpy as jnp

    from flax_embed.cli import read_text
    from flax_embed.data import Batcher, SlidingWindowDataset
    from flax_embed.data.parallel_tokenize import encode_parallel
    from flax_embed.layers.linen import InputEmbedding

    try:
        from flax_embed.distributed.prefetch import prefetch_to_device
    except ImportError:
        prefetch_to_device = None

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.txt"
        path.write_text(corpus_text(size), encoding="utf-8")
        start = time.perf_counter()
        ids = encode_parallel(read_text(path))
        tokenize_seconds = time.perf_counter() - start

    dataset = SlidingWindowDataset(ids, max_length=max_length, stride=max_length)
    batcher = Batcher(dataset, batch, shuffle=True, seed=0, shard_index=0, shard_count=1)
    model = InputEmbedding(context_length=max_length, features=features)
    params = model.init(jax.random.key(0), jnp.zeros((batch, max_length), jnp.int32))
    step = jax.jit(model.apply)

    def epoch(batches) -> None:
        out = None
        for inputs_BxT, _ in batches:
            out = step(params, jax.device_put(inputs_BxT))
        out.block_until_ready()

    def epoch_prefetched() -> None:
        with prefetch_to_device(iter(batcher), size=2) as batches:
            out = None
            for inputs_BxT, _ in batches:
                out = step(params, inputs_BxT)
            out.block_until_ready()

    variants = {"plain": lambda: epoch(iter(batcher))}
    if prefetch_to_device is not None:
        variants["prefetch"] = epoch_prefetched
    t = interleaved(variants, rounds=rounds)
    n = len(batcher)
    note = (f"{n} batches of ({batch}, {max_length}) per epoch, D={features}; reading + "
            f"tokenizing the {size / 1e6:g} MB file: {fmt_time(tokenize_seconds)}")  # fmt: skip
    if "prefetch" not in t:
        return Row(SECTION, "with prefetch", "not available", f"{n / t['plain']:,.0f} batches/s "
                   "without", None, note="prefetch is not in this checkout")  # fmt: skip
    return Row(
        SECTION,
        "text file → batches → device → jit embed, with prefetch (size 2)",
        f"{n / t['prefetch']:,.0f} batches/s",
        f"{n / t['plain']:,.0f} batches/s without",
        t["plain"] / t["prefetch"],
        note=note,
    )


def bench(quick: bool) -> None:
    size, features = (100_000, 64) if quick else (2_000_000, 768)
    emit(pipeline_row(size, features, rounds=3 if quick else 5))


if __name__ == "__main__":
    sys.exit(section_main(bench, __doc__, "100 KB of text: checks the harness"))
