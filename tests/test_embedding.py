import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

from flax_embed import InputEmbedding, create_dataloader

V, C, D = 50257, 16, 32


@pytest.fixture(scope="module")
def model():
    return InputEmbedding(vocab_size=V, context_length=C, features=D)


@pytest.fixture(scope="module")
def params(model):
    return model.init(jax.random.key(0), jnp.zeros((2, C), jnp.int32))


@pytest.fixture(scope="module")
def ids_BxT():
    return np.random.default_rng(0).integers(0, V, size=(4, 8), dtype=np.int32)


def test_params_tree_has_the_books_names_and_shapes(params):
    shapes = jax.tree.map(jnp.shape, params)
    assert shapes == {
        "params": {"tok_emb": {"embedding": (V, D)}, "pos_emb": {"embedding": (C, D)}}
    }


def test_init_is_standard_normal_like_torch(params):
    table = np.asarray(params["params"]["tok_emb"]["embedding"])
    assert table.dtype == np.float32
    # 1.6M draws: the sample mean and std are within a few 1e-3 of N(0, 1).
    assert abs(table.mean()) < 5e-3
    assert abs(table.std() - 1.0) < 5e-3


def test_output_is_token_plus_position_rows(model, params, ids_BxT):
    out = np.asarray(model.apply(params, ids_BxT))
    tok = np.asarray(params["params"]["tok_emb"]["embedding"])
    pos = np.asarray(params["params"]["pos_emb"]["embedding"])
    assert out.shape == (4, 8, D) and out.dtype == np.float32
    np.testing.assert_array_equal(out, tok[ids_BxT] + pos[np.arange(8)])


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize(
    "positions",
    [None, np.arange(3, 11), np.tile(np.arange(5, 13), (4, 1))],
    ids=["default", "offset-T", "offset-BxT"],
)
def test_explicit_positions_pick_position_rows(model, params, ids_BxT, jit, positions):
    apply = jax.jit(model.apply) if jit else model.apply
    out = np.asarray(apply(params, ids_BxT, positions))
    tok = np.asarray(params["params"]["tok_emb"]["embedding"])
    pos = np.asarray(params["params"]["pos_emb"]["embedding"])
    expected_positions = np.arange(8) if positions is None else positions
    np.testing.assert_array_equal(out, tok[ids_BxT] + pos[expected_positions])


def test_jit_and_eager_agree_bit_for_bit(model, params, ids_BxT):
    np.testing.assert_array_equal(
        np.asarray(jax.jit(model.apply)(params, ids_BxT)), np.asarray(model.apply(params, ids_BxT))
    )


def test_unbatched_sequence(model, params, ids_BxT):
    out = model.apply(params, ids_BxT[0])
    assert out.shape == (8, D)
    np.testing.assert_array_equal(out, model.apply(params, ids_BxT)[0])


@pytest.mark.parametrize("ids_dtype", [np.uint16, np.int64, np.uint32])
def test_other_integer_dtypes_are_accepted(model, params, ids_BxT, ids_dtype):
    np.testing.assert_array_equal(
        model.apply(params, ids_BxT.astype(ids_dtype)), model.apply(params, ids_BxT)
    )


def test_bfloat16_params_and_compute():
    model = InputEmbedding(V, C, D, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    ids = jnp.zeros((2, 4), jnp.int32)
    params = model.init(jax.random.key(0), ids)
    assert params["params"]["tok_emb"]["embedding"].dtype == jnp.bfloat16
    assert jax.jit(model.apply)(params, ids).dtype == jnp.bfloat16


def test_seed_batch_from_the_real_loader(sample_text):
    inputs_BxT, _ = next(iter(create_dataloader(sample_text, 8, 4, 4, shuffle=False)))
    model = InputEmbedding(context_length=4, features=256)
    params = model.init(jax.random.key(0), inputs_BxT)
    assert jax.jit(model.apply)(params, inputs_BxT).shape == (8, 4, 256)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_sequence_longer_than_context_raises(model, params, jit):
    apply = jax.jit(model.apply) if jit else model.apply
    with pytest.raises(ValueError, match=f"sequence length {C + 1} is longer than the context"):
        apply(params, jnp.zeros((1, C + 1), jnp.int32))


@pytest.mark.parametrize("bad", [V, V + 1000, -1])
def test_out_of_range_id_raises_naming_it(model, params, ids_BxT, bad):
    ids = ids_BxT.copy()
    ids[2, 5] = bad
    with pytest.raises(ValueError, match=rf"token_ids\[2, 5\] = {bad} is outside \[0, {V}\)"):
        model.apply(params, ids)


def test_out_of_range_position_raises(model, params, ids_BxT):
    with pytest.raises(ValueError, match=rf"positions\[7\] = {C} is outside"):
        model.apply(params, ids_BxT, np.arange(C - 7, C + 1))


def test_float_ids_raise_type_error(model, params):
    with pytest.raises(TypeError, match="integer"):
        model.apply(params, jnp.zeros((2, 4), jnp.float32))


def test_checkify_reports_out_of_range_ids_under_jit(model, params, ids_BxT):
    checked = jax.jit(checkify.checkify(model.apply, errors=checkify.index_checks))
    err, _ = checked(params, jnp.asarray(ids_BxT))
    err.throw()  # in range: no error
    bad = jnp.asarray(ids_BxT).at[1, 1].set(V + 5)
    err, _ = checked(params, bad)
    with pytest.raises(checkify.JaxRuntimeError, match=f"index {V + 5} is out of bounds"):
        err.throw()


def test_unchecked_jit_never_clamps(model, params, ids_BxT):
    # Without checkify, an out-of-range id under jit yields a NaN row: visible, never a
    # silently clamped or wrapped row of another token.
    bad = jnp.asarray(ids_BxT).at[0, 0].set(V + 5)
    out = np.asarray(jax.jit(model.apply)(params, bad))
    assert np.isnan(out[0, 0]).all()
    assert np.isfinite(out[0, 1:]).all() and np.isfinite(out[1:]).all()


def test_attend_is_tied_to_the_token_table(model, params):
    x = jax.random.normal(jax.random.key(1), (2, 3, D))
    logits = model.apply(params, x, method=model.attend)
    table = params["params"]["tok_emb"]["embedding"]
    assert logits.shape == (2, 3, V)
    np.testing.assert_allclose(logits, x @ table.T, rtol=1e-5, atol=1e-4)
