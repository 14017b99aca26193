"""Device meshes, global batch arrays and sharded ``InputEmbedding`` params.

Every process (host) holds its shard of each global batch (``Batcher`` with
``shard_index`` / ``shard_count``); ``global_batch`` joins the shards into global
``jax.Array``s split along the mesh's data axis, and ``init_sharded`` creates the
embedding tables already laid out on the mesh by their logical axis names
(``InputEmbedding(logical_axes=True)``).

Example (any number of processes, after ``jax.distributed.initialize()``)::

  >>> import numpy as np
  >>> from flax_embed.data import Batcher, SlidingWindowDataset
  >>> ds = SlidingWindowDataset(np.arange(10_000), max_length=32, stride=32)
  >>> mesh = data_mesh()                                 # 1-D ("data",) over all devices
  >>> shard_index, shard_count = process_shard(mesh)     # this process's rows
  >>> batcher = Batcher(ds, batch_size=64, shard_index=shard_index, shard_count=shard_count)
  >>> inputs_BxT, targets_BxT = global_batch(next(iter(batcher)), mesh)
  >>> inputs_BxT.shape                                   # global, on every process
  (64, 32)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec, Sharding

__all__ = [
    "EMBED_PARALLEL_RULES",
    "VOCAB_PARALLEL_RULES",
    "batch_sharding",
    "data_mesh",
    "global_batch",
    "init_sharded",
    "process_shard",
]

VOCAB_PARALLEL_RULES: tuple[tuple[str, str | None], ...] = (
    ("vocab", "model"),
    ("embed", None),
    ("position", None),
)
"""Logical axis rules that split ``tok_emb`` by rows (token ids) over the mesh's ``model`` axis."""

EMBED_PARALLEL_RULES: tuple[tuple[str, str | None], ...] = (
    ("vocab", None),
    ("embed", "model"),
    ("position", None),
)
"""Logical axis rules that split both tables by columns (features) over the ``model`` axis."""


def data_mesh(
    shape: Sequence[int] | None = None,
    axis_names: Sequence[str] = ("data",),
    devices: Sequence[Any] | None = None,
) -> Mesh:
    """A mesh over all devices of all processes, ordered by process.

    The devices are sorted by ``(process_index, id)`` before being laid out row
    major, so along the first axis process 0 holds the first block of rows,
    process 1 the next, and so on: the order ``Batcher`` shards a global batch in.

    Args:
      shape: the mesh shape; default ``(len(devices),)``. E.g. ``(4, 2)`` with
        ``axis_names=("data", "model")``.
      axis_names: one name per mesh axis; the first is the data axis.
      devices: default ``jax.devices()`` (every process's devices).
    """
    devices = sorted(
        jax.devices() if devices is None else devices, key=lambda d: (d.process_index, d.id)
    )
    shape = (len(devices),) if shape is None else tuple(shape)
    if len(shape) != len(axis_names):
        raise ValueError(f"mesh shape {shape} needs {len(shape)} axis names, got {axis_names}")
    if math.prod(shape) != len(devices):
        raise ValueError(f"mesh shape {shape} does not hold the {len(devices)} devices")
    return Mesh(np.array(devices, dtype=object).reshape(shape), tuple(axis_names))


def process_shard(
    mesh: Mesh, data_axis: str = "data", process_index: int | None = None
) -> tuple[int, int]:
    """``(shard_index, shard_count)`` of a process along ``mesh``'s data axis.

    Pass them to ``Batcher`` so that the rows each process reads are the rows its
    devices hold in ``global_batch``. Processes that share rows (a ``model`` axis
    across hosts) get the same shard.

    Raises:
      ValueError: the mesh has no ``data_axis``, the process has no device on it,
        or its devices are not one aligned contiguous block of the data axis.
    """
    if data_axis not in mesh.axis_names:
        raise ValueError(f"mesh has no axis {data_axis!r}; its axes are {mesh.axis_names}")
    me = jax.process_index() if process_index is None else process_index
    axis = mesh.axis_names.index(data_axis)
    rows = np.moveaxis(mesh.devices, axis, 0).reshape(mesh.devices.shape[axis], -1)
    mine = [r for r, row in enumerate(rows) if any(d.process_index == me for d in row)]
    if not mine:
        raise ValueError(f"process {me} has no device on the mesh")
    block = len(mine)
    if mine != list(range(mine[0], mine[0] + block)) or mine[0] % block or len(rows) % block:
        raise ValueError(
            f"process {me} holds rows {mine} of the {len(rows)} along {data_axis!r}: not one "
            "aligned contiguous block; build the mesh with data_mesh()"
        )
    return mine[0] // block, len(rows) // block


def batch_sharding(mesh: Mesh, data_axis: str = "data") -> NamedSharding:
    """Splits axis 0 (the batch) over ``data_axis``, replicates over the other mesh axes."""
    if data_axis not in mesh.axis_names:
        raise ValueError(f"mesh has no axis {data_axis!r}; its axes are {mesh.axis_names}")
    return NamedSharding(mesh, PartitionSpec(data_axis))


def global_batch(local_batch: Any, mesh: Mesh | Sharding, data_axis: str = "data") -> Any:
    """Joins every process's local batch into global ``jax.Array``s.

    ``jax.make_array_from_process_local_data``: process ``i``'s ``(b, T)`` arrays
    become rows ``[i*b, (i+1)*b)`` of ``(P*b, T)`` global arrays split along
    ``data_axis`` (for a mesh from ``data_mesh`` and shards from ``process_shard``).
    Each process passes only its own rows; nothing is copied between hosts.

    Args:
      local_batch: a pytree of NumPy arrays, e.g. ``(inputs_bxT, targets_bxT)``.
      mesh: the device mesh, or directly the ``Sharding`` of the global arrays.
      data_axis: the mesh axis the batch is split over.

    Returns:
      The same pytree of global ``jax.Array``s.
    """
    sharding = mesh if isinstance(mesh, Sharding) else batch_sharding(mesh, data_axis)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
    )


def init_sharded(
    model: Any, mesh: Mesh, rules: Sequence[tuple[str, str | None]], *init_args: Any
) -> Any:
    """``model.init(*init_args)`` with each param created directly in its mesh layout.

    The layout comes from the logical axis names the module gives its params
    (``InputEmbedding(logical_axes=True)``) mapped onto mesh axes by ``rules``
    (e.g. ``VOCAB_PARALLEL_RULES``). The result keeps Flax's
    ``nn.LogicallyPartitioned`` boxes: ``model.apply`` takes it as it is,
    ``flax.linen.unbox`` strips the boxes.
    """
    import flax.linen as nn
    from flax.linen.spmd import logical_to_mesh_sharding

    abstract = jax.eval_shape(model.init, *init_args)
    shardings = logical_to_mesh_sharding(nn.get_partition_spec(abstract), mesh, rules)
    return jax.jit(model.init, out_shardings=shardings)(*init_args)
