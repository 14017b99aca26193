"""``params_to_nnx`` / ``params_from_nnx``: the tables between Linen params and NNX state.

The module's behaviour is tested for both APIs at once in ``test_linen_apis.py``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flax_embed.layers.linen import InputEmbedding as LinenInputEmbedding
from flax_embed.nnx import InputEmbedding, params_from_nnx, params_to_nnx

V, C, D = 500, 8, 16


def nnx_model(**config) -> InputEmbedding:
    return InputEmbedding(
        **{"vocab_size": V, "context_length": C, "features": D, **config}, rngs=nnx.Rngs(0)
    )


@pytest.fixture(scope="module")
def linen_params() -> dict:
    model = LinenInputEmbedding(V, C, D)
    return model.init(jax.random.key(1), jnp.zeros((1, 1), jnp.int32))


def test_nnx_flax_module_is_not_shadowed():
    import flax_embed.nnx

    assert flax_embed.nnx.nnx is nnx
    assert isinstance(flax_embed.nnx.InputEmbedding(2, 2, 2, rngs=nnx.Rngs(0)), nnx.Module)


def test_state_has_the_books_names():
    state = nnx.to_pure_dict(nnx.state(nnx_model(), nnx.Param))
    assert jax.tree.map(jnp.shape, state) == {
        "tok_emb": {"embedding": (V, D)},
        "pos_emb": {"embedding": (C, D)},
    }


def test_linen_to_nnx_and_back_is_bit_exact(linen_params):
    model = params_to_nnx(linen_params, nnx_model())
    back = params_from_nnx(model)
    assert jax.tree.structure(back) == jax.tree.structure(linen_params)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(linen_params), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_nnx_to_linen_gives_the_same_outputs():
    model = nnx_model()
    ids = jnp.asarray(np.random.default_rng(0).integers(0, V, (3, C)), jnp.int32)
    out = LinenInputEmbedding(V, C, D).apply(params_from_nnx(model), ids)
    np.testing.assert_array_equal(out, model(ids))


@pytest.mark.parametrize("form", ["variables", "inner", "numpy", "boxed"])
def test_accepted_forms_of_params(linen_params, form):
    tables = linen_params["params"]
    params = {
        "variables": linen_params,
        "inner": tables,
        "numpy": jax.tree.map(np.asarray, linen_params),
        "boxed": {
            "params": {
                name: {"embedding": nn.LogicallyPartitioned(t["embedding"], ("rows", "embed"))}
                for name, t in tables.items()
            }
        },
    }[form]
    model = params_to_nnx(params, nnx_model())
    np.testing.assert_array_equal(model.tok_emb.embedding[...], tables["tok_emb"]["embedding"])
    np.testing.assert_array_equal(model.pos_emb.embedding[...], tables["pos_emb"]["embedding"])


def test_loading_keeps_the_dropout_stream(linen_params):
    model = params_to_nnx(linen_params, nnx_model(dropout_rate=0.5))
    out = np.asarray(model(jnp.zeros((2, C), jnp.int32)))
    assert (out == 0).any() and (out != 0).any()


def _without(params: dict, name: str) -> dict:
    return {"params": {k: v for k, v in params["params"].items() if k != name}}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: _without(p, "pos_emb"), r"missing \['pos_emb/embedding'\], unexpected \[\]"),
        (
            lambda p: {"params": {**p["params"], "wte": {"embedding": np.zeros((V, D))}}},
            r"missing \[\], unexpected \['wte/embedding'\]",
        ),
        (
            lambda p: {"params": {**p["params"], "tok_emb": {"embedding": np.zeros((V + 1, D))}}},
            rf"params\['tok_emb/embedding'\] has shape \({V + 1}, {D}\), "
            rf"the module's is \({V}, {D}\)",
        ),
        (
            lambda p: {
                "params": {**p["params"], "pos_emb": {"embedding": np.zeros((C, D), np.float16)}}
            },
            r"params\['pos_emb/embedding'\] has dtype float16, the module's is float32",
        ),
    ],
    ids=["missing", "unexpected", "shape", "dtype"],
)
def test_mismatched_params_raise_naming_the_table(linen_params, edit, message):
    model = nnx_model()
    before = np.asarray(model.tok_emb.embedding[...]).copy()
    with pytest.raises(ValueError, match=message):
        params_to_nnx(edit(linen_params), model)
    np.testing.assert_array_equal(model.tok_emb.embedding[...], before)  # left as it was
