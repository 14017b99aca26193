"""Prefetch: a training-like loop with and without ``prefetch_to_device``, side by side.

Each step takes the next batch of a ``Batcher`` (real ``SlidingWindowDataset``
gathers over random GPT-2 ids) and runs a jitted step on it (``InputEmbedding``
plus a small matmul, waited for with ``block_until_ready`` as a loop that logs its
loss would). The host side optionally sleeps ``--host-ms`` per batch to stand for
slow storage. Without prefetching a step costs host + compute; with
``prefetch_to_device(size=2)`` the host work runs in a background thread during
the compute, so a step should cost about max(host, compute). Variants are timed
in interleaved rounds (``common.interleaved``), in the steady state: the
iterators are made (and the prefetch thread started) before timing. The
prefetcher refills its queue (``size`` + 1 batches) while the other variants
run, which flatters it by at most 3 host latencies per round of 60 steps.
With no host latency the thread only adds overhead (GIL hand-offs, queue):
prefetching pays when host work per batch is real (storage, host-to-device copies).

``python benchmarks/prefetch_overlap.py [--quick]`` prints its rows; ``run.py`` collects them.
"""

from __future__ import annotations

import sys
import time

from common import Row, emit, fmt_time, interleaved, section_main

SECTION = "prefetch"


def bench(quick: bool) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from flax_embed.data import Batcher, SlidingWindowDataset
    from flax_embed.distributed.prefetch import prefetch_to_device
    from flax_embed.layers.linen import InputEmbedding

    batch, max_length, features = (8, 64, 64) if quick else (32, 256, 256)
    steps = 5 if quick else 60
    tokens = np.random.default_rng(0).integers(0, 50257, 2_000_000).astype(np.uint16)
    model = InputEmbedding(context_length=max_length, features=features)
    params = model.init(jax.random.key(0), jnp.zeros((batch, max_length), jnp.int32))

    @jax.jit
    def step(params, inputs_BxT):
        x_BxTxD = model.apply(params, inputs_BxT)
        return jnp.mean(jnp.tanh(x_BxTxD @ x_BxTxD[0, :64].T))

    for host_ms in (0.0, 10.0):

        class Storage(SlidingWindowDataset):
            def gather(self, indices_B, _delay=host_ms / 1e3):
                if _delay:
                    time.sleep(_delay)
                return super().gather(indices_B)

        dataset = Storage(tokens, max_length, max_length)
        batcher = Batcher(dataset, batch, shard_count=1)
        plain = batcher.iterate()  # endless; both loops run in the steady state
        prefetched = prefetch_to_device(batcher.iterate(), size=2)
        x_BxT = jnp.asarray(dataset.gather(np.arange(batch))[0])

        def loop(batches, steps=steps):
            for _ in range(steps):
                step(params, next(batches)[0]).block_until_ready()

        def compute_only(steps=steps, x_BxT=x_BxT):
            for _ in range(steps):
                step(params, x_BxT).block_until_ready()

        times = interleaved(
            {
                "compute": compute_only,
                "plain": lambda plain=plain: loop(plain),
                "prefetch": lambda prefetched=prefetched: loop(prefetched),
            },
            rounds=2 if quick else 5,
        )
        prefetched.close()
        per_step = {k: v / steps for k, v in times.items()}
        emit(
            Row(
                SECTION,
                f"step with {host_ms:.0f} ms host latency per batch, B={batch} T={max_length}",
                f"{fmt_time(per_step['prefetch'])} prefetch",
                f"{fmt_time(per_step['plain'])} no prefetch",
                per_step["plain"] / per_step["prefetch"],
                target="≈ max(host, compute)",
                note=f"compute alone {fmt_time(per_step['compute'])}",
            )
        )


if __name__ == "__main__":
    sys.exit(section_main(bench, __doc__))
