"""Beyond one device: a data mesh, global batches from per-process shards, prefetching to devices.

Multi-host runs use ``jax.distributed``; nothing here starts processes of its own.
"""

from flax_embed.distributed.prefetch import DevicePrefetcher, prefetch_to_device
from flax_embed.distributed.sharding import (
    batch_sharding,
    data_mesh,
    global_batch,
    init_sharded,
    process_shard,
)

__all__ = [
    "DevicePrefetcher",
    "batch_sharding",
    "data_mesh",
    "global_batch",
    "init_sharded",
    "prefetch_to_device",
    "process_shard",
]
