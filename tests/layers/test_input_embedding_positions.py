"""InputEmbedding(position="learned" | "sinusoidal" | "none"), Linen and NNX.

"learned" is today's module, bit for bit; "sinusoidal" adds the fixed table with
the same lookup and checks; "none" is the token lookup alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.experimental import checkify

from flax_embed.layers import common
from flax_embed.layers.common import lookup
from flax_embed.layers.linen import InputEmbedding
from flax_embed.nnx import InputEmbedding as NNXInputEmbedding
from flax_embed.nnx import params_from_nnx
from flax_embed.positions import sinusoidal_table

V, C, D = 100, 16, 8
IDS = np.random.default_rng(0).integers(0, V, size=(3, C), dtype=np.int32)


def _linen(position, **kw):
    model = InputEmbedding(vocab_size=V, context_length=C, features=D, position=position, **kw)
    params = model.init(jax.random.key(0), IDS)
    return model, params


def test_learned_is_the_default_bit_for_bit():
    default = InputEmbedding(vocab_size=V, context_length=C, features=D)
    params = default.init(jax.random.key(0), IDS)
    model, learned = _linen("learned")
    assert jax.tree.map(np.shape, learned) == jax.tree.map(np.shape, params)
    assert set(learned["params"]) == {"tok_emb", "pos_emb"}
    jax.tree.map(np.testing.assert_array_equal, learned, params)
    np.testing.assert_array_equal(model.apply(learned, IDS), default.apply(params, IDS))


@pytest.mark.parametrize("position", ["sinusoidal", "none"])
def test_fixed_modes_have_no_position_parameter(position):
    _, params = _linen(position)
    assert set(params["params"]) == {"tok_emb"}


@pytest.mark.parametrize("variant", ["interleaved", "concat", "tensor2tensor"])
@pytest.mark.parametrize("jit", [True, False])
def test_sinusoidal_equals_torch_embedding_plus_the_table(variant, jit):
    torch = pytest.importorskip("torch")
    model, params = _linen("sinusoidal", sinusoidal_variant=variant)
    apply = jax.jit(model.apply) if jit else model.apply
    pos = np.array([[0, 1, 2, 3] * 4, [15 - i for i in range(16)], [5] * 16], np.int32)
    ours = np.asarray(apply(params, IDS, pos))
    tok = torch.nn.Embedding(V, D)
    with torch.no_grad():
        tok.weight.copy_(torch.from_numpy(np.array(params["params"]["tok_emb"]["embedding"])))
        table = torch.from_numpy(np.array(sinusoidal_table(C, D, variant=variant)))
        ref = (tok(torch.from_numpy(IDS).long()) + table[torch.from_numpy(pos).long()]).numpy()
    np.testing.assert_array_equal(ours, ref)


def test_none_is_the_token_lookup_and_has_no_length_limit():
    model, params = _linen("none")
    ids = np.tile(IDS, (1, 3))  # T = 3·context_length
    out = np.asarray(model.apply(params, ids))
    np.testing.assert_array_equal(out, lookup(params["params"]["tok_emb"]["embedding"], ids))


def test_none_rejects_positions():
    model, params = _linen("none")
    with pytest.raises(ValueError, match="positions must be None when position='none'"):
        model.apply(params, IDS, np.arange(C))


@pytest.mark.parametrize("position", ["learned", "sinusoidal"])
def test_out_of_range_position_raises_on_host(position):
    model, params = _linen(position)
    with pytest.raises(ValueError, match=rf"positions\[7\] = {C} is outside \[0, {C}\)"):
        model.apply(params, IDS[0, :8], np.arange(C - 7, C + 1))


@pytest.mark.parametrize("position", ["learned", "sinusoidal"])
def test_out_of_range_position_under_jit_is_a_nan_row(position):
    model, params = _linen(position)
    pos = jnp.arange(C).at[3].set(C + 2)
    out = np.asarray(jax.jit(model.apply)(params, IDS, pos))
    assert np.isnan(out[:, 3]).all()
    assert np.isfinite(np.delete(out, 3, axis=1)).all()


def test_checkify_reports_an_out_of_range_sinusoidal_position():
    model, params = _linen("sinusoidal")
    checked = jax.jit(checkify.checkify(model.apply, errors=checkify.index_checks))
    err, _ = checked(params, IDS, jnp.arange(C))
    err.throw()
    err, _ = checked(params, IDS, jnp.arange(C).at[2].set(C + 1))
    with pytest.raises(checkify.JaxRuntimeError, match=f"index {C + 1} is out of bounds"):
        err.throw()


@pytest.mark.parametrize(
    ("kw", "name"),
    [({"position": "rope"}, "position"), ({"sinusoidal_variant": "x"}, "sinusoidal_variant")],
)
def test_unknown_mode_raises_naming_the_argument(kw, name):
    with pytest.raises(ValueError, match=name):
        InputEmbedding(vocab_size=V, context_length=C, features=D, **kw).init(
            jax.random.key(0), IDS
        )
    with pytest.raises(ValueError, match=name):
        NNXInputEmbedding(V, C, D, rngs=nnx.Rngs(0), **kw)


@pytest.mark.parametrize("position", ["learned", "sinusoidal", "none"])
def test_nnx_equals_linen_bit_for_bit(position):
    model = NNXInputEmbedding(V, C, D, position=position, rngs=nnx.Rngs(0))
    params = params_from_nnx(model)
    linen = InputEmbedding(vocab_size=V, context_length=C, features=D, position=position)
    assert set(params["params"]) == (
        {"tok_emb", "pos_emb"} if position == "learned" else {"tok_emb"}
    )
    np.testing.assert_array_equal(model(IDS), linen.apply(params, IDS))
    graphdef, state = nnx.split(model)
    jitted = jax.jit(lambda state, ids: nnx.merge(graphdef, state)(ids))(state, IDS)
    np.testing.assert_array_equal(jitted, linen.apply(params, IDS))


def test_sinusoidal_table_is_built_once_not_on_every_eager_call(monkeypatch):
    """Issue 17: an eager call rebuilt the (C, D) table each time (seconds at C=131072)."""
    built = []

    def counting_table(*args, **kwargs):
        built.append(args)
        return sinusoidal_table(*args, **kwargs)

    monkeypatch.setattr(common, "sinusoidal_table", counting_table)
    common.fixed_sinusoidal_table.cache_clear()
    nnx_model = NNXInputEmbedding(V, C, D, position="sinusoidal", rngs=nnx.Rngs(0))
    params = params_from_nnx(nnx_model)
    linen = InputEmbedding(vocab_size=V, context_length=C, features=D, position="sinusoidal")
    outs = [np.asarray(linen.apply(params, IDS)) for _ in range(3)]
    outs += [np.asarray(nnx_model(IDS)) for _ in range(3)]
    assert len(built) == 1, f"the table was built {len(built)} times for 6 eager calls"
    tok = np.asarray(params["params"]["tok_emb"]["embedding"])
    expected = tok[IDS] + np.asarray(sinusoidal_table(C, D))  # the same float32 adds
    outs.append(np.asarray(jax.jit(linen.apply)(params, IDS)))
    for out in outs:
        np.testing.assert_array_equal(out, expected, strict=True)
