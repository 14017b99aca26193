"""One process of the two-process ``jax.distributed`` test (``test_multiprocess.py``).

Usage: ``python worker.py PORT PROCESS_ID TOKENS.npy OUT.json``

Each process has 2 CPU devices (4 in all), initialises ``jax.distributed`` with
gloo collectives, reads only its shard of each global batch (it records every
window it reads), assembles global arrays on a ``("data",)`` mesh through
``prefetch_to_device``, embeds them under ``jit`` and all-gathers the global
inputs, targets and embeddings so the test can compare them with one process.
"""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import json

import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")

STEPS = 5
BATCH_SIZE = 8  # global
MAX_LENGTH = 16
STRIDE = 16
SEED = 3
FEATURES = 8


def main(port: str, process_id: str, tokens_path: str, out_path: str) -> None:
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=2,
        process_id=int(process_id),
        initialization_timeout=60,
    )
    import jax.numpy as jnp
    import numpy as np
    from jax.experimental import multihost_utils
    from jax.sharding import NamedSharding, PartitionSpec

    from flax_embed.data import Batcher, SlidingWindowDataset
    from flax_embed.distributed.prefetch import prefetch_to_device
    from flax_embed.distributed.sharding import batch_sharding, data_mesh, process_shard
    from flax_embed.layers.linen import InputEmbedding

    class RecordingDataset(SlidingWindowDataset):
        """Records the windows each gather reads: the proof of reading only the shard."""

        reads: list

        def gather(self, indices_B):
            self.reads.append(np.asarray(indices_B).tolist())
            return super().gather(indices_B)

    dataset = RecordingDataset(np.load(tokens_path, mmap_mode="r"), MAX_LENGTH, STRIDE)
    dataset.reads = []
    mesh = data_mesh()
    shard_index, shard_count = process_shard(mesh)
    batcher = Batcher(dataset, BATCH_SIZE, seed=SEED)  # shards default to the jax process
    assert (batcher.shard_index, batcher.shard_count) == (shard_index, shard_count)

    model = InputEmbedding(vocab_size=50257, context_length=MAX_LENGTH, features=FEATURES)
    dummy = jnp.zeros((BATCH_SIZE, MAX_LENGTH), jnp.int32)
    replicated = NamedSharding(mesh, PartitionSpec())
    params = jax.jit(model.init, out_shardings=replicated)(jax.random.key(0), dummy)
    embed = jax.jit(model.apply)
    total = jax.jit(jnp.sum)  # a cross-process reduction through gloo

    inputs, targets, embeddings, sums, local_rows = [], [], [], [], []
    with prefetch_to_device(batcher.iterate(), size=2, sharding=batch_sharding(mesh)) as batches:
        for _ in range(STEPS):
            x_BxT, y_BxT = next(batches)
            local_rows.append([s.data.shape[0] for s in x_BxT.addressable_shards])
            emb_BxTxD = embed(params, x_BxT)
            sums.append(int(total(x_BxT)))
            inputs.append(multihost_utils.process_allgather(x_BxT, tiled=True).tolist())
            targets.append(multihost_utils.process_allgather(y_BxT, tiled=True).tolist())
            gathered = multihost_utils.process_allgather(emb_BxTxD, tiled=True)
            embeddings.append(np.asarray(gathered).view(np.uint32).tolist())
        state = batches.get_state()

    result = {
        "config": {
            "steps": STEPS,
            "batch_size": BATCH_SIZE,
            "max_length": MAX_LENGTH,
            "stride": STRIDE,
            "seed": SEED,
            "features": FEATURES,
        },
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "local_devices": jax.local_device_count(),
        "global_devices": jax.device_count(),
        "shard": [shard_index, shard_count],
        "reads": dataset.reads,
        "local_rows": local_rows,
        "inputs": inputs,
        "targets": targets,
        "embeddings": embeddings,
        "sums": sums,
        "state": state,
    }
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, out_path)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
