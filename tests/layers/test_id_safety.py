"""Ids that would be read as other ids (issue 12, cases 1, 2 and 9): 64-bit ids and jit, vmap
outside jit, integer table dtypes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flax_embed import as_token_ids, create_dataloader, encode
from flax_embed.data import SlidingWindowDataset, TokenFileDataset, write_token_file
from flax_embed.layers.linen import InputEmbedding
from flax_embed.nnx import InputEmbedding as NNXInputEmbedding

WRAPS = np.array([[1, 2**32 + 5, 3, 4]], np.int64)  # 2**32 + 5 is 5 in int32


@pytest.fixture(scope="module")
def linen():
    model = InputEmbedding(context_length=4, features=8)
    return model, model.init(jax.random.key(0), np.zeros((1, 4), np.int32))


def test_as_token_ids_refuses_ids_that_jit_would_wrap():
    with pytest.raises(ValueError, match=r"token_ids\[0, 1\] = 4294967301 is outside"):
        as_token_ids(WRAPS, vocab_size=50257)
    ok = as_token_ids(np.array([[1, 2]], np.int64), vocab_size=50257)
    assert ok.dtype == np.int32 and ok.tolist() == [[1, 2]]
    with pytest.raises(TypeError, match="integer"):
        as_token_ids(np.array([1.0]), vocab_size=50257)


def test_the_documented_limit_jit_narrows_int64_before_the_module(linen):
    """What the docstring states: outside jit the module sees and refuses the id; under
    jit (x64 off) JAX hands it id 5, which no check inside the module can tell apart."""
    model, params = linen
    assert not jax.config.jax_enable_x64
    with pytest.raises(ValueError, match="4294967301"):
        model.apply(params, WRAPS)
    wrapped = jax.jit(model.apply)(params, WRAPS)
    np.testing.assert_array_equal(
        wrapped[0, 1], model.apply(params, np.array([[1, 5, 3, 4]]))[0, 1]
    )
    assert "narrows an int64 argument to int32" in InputEmbedding.__doc__


@pytest.mark.tokenizer
def test_encode_and_the_loaders_only_give_int32(tmp_path, sample_text):
    assert encode(sample_text).dtype == np.int32
    inputs, targets = next(iter(create_dataloader(sample_text, batch_size=2, max_length=4)))
    assert inputs.dtype == targets.dtype == np.int32
    assert SlidingWindowDataset(np.arange(10, dtype=np.int64), 4, 2)[0][0].dtype == np.int32
    with pytest.raises(ValueError, match="outside"):
        SlidingWindowDataset(np.array([0, 1, 2**32 + 5, 3, 4, 5], np.int64), 4, 1)
    write_token_file(tmp_path / "t.bin", np.arange(100), vocab_size=2**20)  # uint32 on disk
    assert TokenFileDataset(tmp_path / "t.bin", 4, 4)[0][0].dtype == np.int32


@pytest.mark.parametrize("bad", [50257, -1])
def test_vmap_outside_jit_checks_ids(linen, bad):
    model, params = linen
    ids = np.array([[1, 2, 3, 4], [5, 6, 7, bad]], np.int32)
    with pytest.raises(ValueError, match=rf"token_ids \(all of vmap's batch\)\[1, 3\] = {bad}"):
        jax.vmap(lambda x: model.apply(params, x))(ids)
    good = jax.vmap(lambda x: model.apply(params, x))(ids % 50257)
    assert not np.isnan(good).any()


@pytest.mark.parametrize("bad", [50257, -1])
def test_vmap_outside_jit_checks_ids_nnx(bad):
    model = NNXInputEmbedding(context_length=4, features=8, rngs=nnx.Rngs(0))
    ids = np.array([[1, 2, 3, 4], [5, 6, 7, bad]], np.int32)
    with pytest.raises(ValueError, match="vmap"):
        jax.vmap(model)(ids)


@pytest.mark.parametrize("field", ["dtype", "param_dtype"])
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.uint8, jnp.bool_, "int16"])
def test_integer_dtypes_are_refused(field, dtype):
    with pytest.raises(TypeError, match=f"{field} must be a floating-point dtype"):
        InputEmbedding(features=8, **{field: dtype}).init(jax.random.key(0), np.zeros(4, np.int32))
    with pytest.raises(TypeError, match=f"{field} must be a floating-point dtype"):
        NNXInputEmbedding(features=8, rngs=nnx.Rngs(0), **{field: dtype})


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (jnp.float32, "float32"),
        (jnp.bfloat16, "bfloat16"),
        (jnp.float16, "float16"),
        (None, "float32"),
    ],
)
def test_float_dtypes_are_accepted_and_give_outputs_of_that_dtype(dtype, expected):
    # None: the computation follows the float32 tables.
    ids = np.zeros((1, 4), np.int32)
    linen = InputEmbedding(context_length=4, features=8, dtype=dtype)
    out = linen.apply(linen.init(jax.random.key(0), ids), ids)
    assert out.dtype == expected and out.shape == (1, 4, 8)
    nnx_out = NNXInputEmbedding(context_length=4, features=8, dtype=dtype, rngs=nnx.Rngs(0))(ids)
    assert nnx_out.dtype == expected
