"""Logical axis names on ``InputEmbedding``, and the 8-device mesh checks in a fresh process."""

import os
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from flax_embed.distributed.sharding import data_mesh, global_batch, process_shard
from flax_embed.layers.linen import POSITION_AXES, TOKEN_AXES, InputEmbedding

REPO = Path(__file__).resolve().parents[2]
IDS = jnp.asarray([[464, 406, 32303, 26335], [11, 50256, 0, 7]], jnp.int32)


def init(logical_axes):
    model = InputEmbedding(
        vocab_size=50257, context_length=4, features=8, logical_axes=logical_axes
    )
    return model, model.init(jax.random.key(0), IDS)


def test_tables_are_plain_arrays_by_default():
    _, params = init(logical_axes=False)
    for table in jax.tree.leaves(params):
        assert isinstance(table, jax.Array)


def test_logical_axes_box_the_tables_with_their_names():
    _, params = init(logical_axes=True)
    tok = params["params"]["tok_emb"]["embedding"]
    pos = params["params"]["pos_emb"]["embedding"]
    assert isinstance(tok, nn.LogicallyPartitioned) and isinstance(pos, nn.LogicallyPartitioned)
    assert (tok.names, pos.names) == (TOKEN_AXES, POSITION_AXES)
    assert (TOKEN_AXES, POSITION_AXES) == (("vocab", "embed"), ("position", "embed"))
    specs = nn.get_partition_spec(params)["params"]
    assert specs["tok_emb"]["embedding"] == PartitionSpec("vocab", "embed")


def test_unboxed_tables_equal_the_plain_ones():
    _, plain = init(logical_axes=False)
    _, boxed = init(logical_axes=True)
    unboxed = nn.unbox(boxed)
    assert jax.tree.structure(unboxed) == jax.tree.structure(plain)
    for a, b in zip(jax.tree.leaves(unboxed), jax.tree.leaves(plain), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_apply_takes_boxed_or_unboxed_params_alike(jit):
    model, boxed = init(logical_axes=True)
    apply = jax.jit(model.apply) if jit else model.apply
    np.testing.assert_array_equal(apply(boxed, IDS), apply(nn.unbox(boxed), IDS))


def test_one_device_is_one_shard():
    mesh = data_mesh()
    assert process_shard(mesh) == (0, 1)
    x = np.arange(8, dtype=np.int32).reshape(2, 4)
    np.testing.assert_array_equal(global_batch(x, mesh), x)


@pytest.mark.tokenizer
def test_on_eight_cpu_devices():
    """Runs tests/distributed/eight_devices/ in a fresh pytest process with 8 forced CPU devices."""
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
    }
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
        "-o", "python_files=check_*.py", str(REPO / "tests" / "distributed" / "eight_devices"),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"8-device tests timed out after {e.timeout}s:\n{e.stdout}\n{e.stderr}")
    assert done.returncode == 0, f"8-device tests failed:\n{done.stdout[-6000:]}\n{done.stderr}"
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout
