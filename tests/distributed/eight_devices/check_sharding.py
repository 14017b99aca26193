"""Mesh, global-array and sharded-embedding checks on 8 CPU devices.

Not collected by a plain ``pytest`` run (the file name is not ``test_*``):
``tests/distributed/test_sharding.py`` runs it in a fresh process with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``, which must be set
before JAX starts. By hand::

  XLA_FLAGS=--xla_force_host_platform_device_count=8 \\
    python -m pytest -o python_files='check_*.py' tests/distributed/eight_devices
"""

import flax.linen as nn
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from flax_embed.data import Batcher, SlidingWindowDataset
from flax_embed.distributed.prefetch import prefetch_to_device
from flax_embed.distributed.sharding import (
    EMBED_PARALLEL_RULES,
    VOCAB_PARALLEL_RULES,
    batch_sharding,
    data_mesh,
    global_batch,
    init_sharded,
    process_shard,
)
from flax_embed.layers.linen import InputEmbedding
from flax_embed.tokenizer import encode

if jax.device_count() != 8:
    pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=8", allow_module_level=True)

PADDED_VOCAB = 50304  # GPT-2's 50257 rounded up to a multiple of 64: splits evenly


@pytest.fixture(scope="module")
def ids_BxT(sample_text):
    tokens = encode(sample_text)
    return np.asarray(tokens[: 16 * 32], np.int32).reshape(16, 32)


@pytest.mark.parametrize(
    ("shape", "names"), [(None, ("data",)), ((4, 2), ("data", "model")), ((2, 4), ("d", "m"))]
)
def test_data_mesh_holds_every_device_in_order(shape, names):
    mesh = data_mesh(shape, names)
    assert mesh.axis_names == names
    assert sorted(d.id for d in mesh.devices.flat) == list(range(8))
    assert [d.id for d in mesh.devices.flat] == sorted(d.id for d in jax.devices())


def test_one_process_is_the_only_shard():
    assert process_shard(data_mesh((4, 2), ("data", "model"))) == (0, 1)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: data_mesh((3, 2), ("data", "model")), r"\(3, 2\) does not hold the 8 devices"),
        (lambda: data_mesh((8,), ("data", "model")), "needs 1 axis names"),
        (lambda: process_shard(data_mesh(), "batch"), "mesh has no axis 'batch'"),
        (lambda: process_shard(data_mesh(), process_index=3), "process 3 has no device"),
    ],
)
def test_bad_mesh_requests_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(("shape", "names"), [(None, ("data",)), ((4, 2), ("data", "model"))])
def test_global_batch_splits_rows_over_the_data_axis(ids_BxT, shape, names):
    mesh = data_mesh(shape, names)
    inputs, targets = global_batch((ids_BxT, ids_BxT + 1), mesh)
    rows_per_device = 16 // mesh.shape["data"]
    assert inputs.shape == (16, 32) and inputs.sharding.spec == PartitionSpec("data")
    np.testing.assert_array_equal(inputs, ids_BxT)
    np.testing.assert_array_equal(targets, ids_BxT + 1)
    for shard in inputs.addressable_shards:
        assert shard.data.shape == (rows_per_device, 32)
        np.testing.assert_array_equal(shard.data, ids_BxT[shard.index])


def test_prefetch_to_a_sharding_yields_global_batches(ids_BxT):
    mesh = data_mesh()
    tokens = ids_BxT.reshape(-1)
    batcher = Batcher(SlidingWindowDataset(tokens, 8, 8), batch_size=16, shard_count=1)
    expected = list(batcher.iter_epoch(0))
    with prefetch_to_device(batcher.iter_epoch(0), sharding=batch_sharding(mesh)) as batches:
        got = list(batches)
    assert len(got) == len(expected) > 0
    for (x, y), (ex, ey) in zip(got, expected, strict=True):
        assert x.sharding.spec == PartitionSpec("data") and len(x.addressable_shards) == 8
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)


@pytest.fixture(
    scope="module",
    params=[
        (VOCAB_PARALLEL_RULES, PartitionSpec("model", None), PartitionSpec(None, None)),
        (EMBED_PARALLEL_RULES, PartitionSpec(None, "model"), PartitionSpec(None, "model")),
    ],
    ids=["vocab-parallel", "embed-parallel"],
)
def sharded(request, ids_BxT):
    """``(rules, expected specs, mesh, model, params)``: tables created on a (4, 2) mesh."""
    rules, tok_spec, pos_spec = request.param
    mesh = data_mesh((4, 2), ("data", "model"))
    model = InputEmbedding(PADDED_VOCAB, context_length=40, features=64, logical_axes=True)
    params = init_sharded(model, mesh, rules, jax.random.key(0), ids_BxT)
    return rules, (tok_spec, pos_spec), mesh, model, params


def test_tables_are_created_in_their_mesh_layout(sharded):
    _, (tok_spec, pos_spec), _, _, params = sharded
    tok = params["params"]["tok_emb"]["embedding"]
    pos = params["params"]["pos_emb"]["embedding"]
    assert tok.names == ("vocab", "embed") and pos.names == ("position", "embed")
    assert tok.value.sharding.spec == tok_spec and pos.value.sharding.spec == pos_spec
    assert tok.value.addressable_shards[0].data.size == PADDED_VOCAB * 64 // 2


@pytest.mark.parametrize(
    ("with_rules_in_context", "offset"), [(False, None), (True, 8)], ids=["plain", "rules+offset"]
)
def test_sharded_outputs_equal_unsharded_bit_for_bit(
    sharded, ids_BxT, with_rules_in_context, offset
):
    rules, _, mesh, model, params = sharded
    pos_T = None if offset is None else np.arange(32, dtype=np.int32) + offset
    ids = global_batch(ids_BxT, mesh)
    apply = jax.jit(model.apply)
    if with_rules_in_context:
        with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
            out_sharded = apply(params, ids, pos_T)
    else:
        out_sharded = apply(params, ids, pos_T)
    assert out_sharded.sharding.spec[0] == "data" and len(out_sharded.devices()) == 8
    plain = jax.tree.map(np.asarray, nn.unbox(params))
    unsharded_model = InputEmbedding(PADDED_VOCAB, context_length=40, features=64)
    out_unsharded = jax.jit(unsharded_model.apply)(plain, ids_BxT, pos_T)
    assert len(out_unsharded.devices()) == 1
    np.testing.assert_array_equal(
        np.asarray(out_sharded).view(np.uint32), np.asarray(out_unsharded).view(np.uint32)
    )
