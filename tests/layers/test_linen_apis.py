"""One suite for both Flax APIs: the Linen and the NNX ``InputEmbedding``.

Every behaviour test runs through ``Embedder``, a small adapter, in each way of
running the module: Linen eager and under ``jax.jit``; NNX eager, under
``nnx.jit``, and under plain ``jax.jit`` via ``nnx.split`` / ``nnx.merge``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.experimental import checkify
from jax.sharding import PartitionSpec

from flax_embed.layers.linen import InputEmbedding as LinenInputEmbedding
from flax_embed.nnx import InputEmbedding as NNXInputEmbedding
from flax_embed.nnx import params_from_nnx, params_to_nnx

V, C, D = 1000, 16, 32
"""A small configuration: every mode compiles in well under a second."""


class Embedder:
    """One API in one mode: ``__call__``, ``attend`` and the tables as Linen params.

    ``dropout_key=None`` runs with dropout off (``deterministic=True``); a key runs
    it on (``deterministic=False``) with that key.
    """

    params: dict

    def __call__(self, token_ids, positions=None, *, dropout_key=None) -> jax.Array:
        raise NotImplementedError

    def attend(self, x) -> jax.Array:
        raise NotImplementedError

    def pure(self) -> tuple[Callable, object]:
        """``(fn, state)`` with ``fn(state, token_ids)`` a pure function, for checkify."""
        raise NotImplementedError

    def axis_names(self) -> dict:
        """``{'tok_emb': PartitionSpec, 'pos_emb': ...}``: the tables' logical axes."""
        raise NotImplementedError


class LinenEmbedder(Embedder):
    def __init__(self, mode: str, params: dict | None, seed: int, **config):
        self.model = LinenInputEmbedding(**config)
        ids = jnp.zeros((1, 1), jnp.int32)
        # variables: as init returns them (boxed with logical_axes); params: plain arrays.
        self.variables = params or self.model.init(jax.random.key(seed), ids, deterministic=True)
        self.params = nn.unbox(self.variables)
        apply = self.model.apply
        self._apply = (
            jax.jit(apply, static_argnames=("deterministic", "method")) if mode == "jit" else apply
        )

    def __call__(self, token_ids, positions=None, *, dropout_key=None):
        if dropout_key is None:
            return self._apply(self.params, token_ids, positions, deterministic=True)
        return self._apply(
            self.params, token_ids, positions, deterministic=False, rngs={"dropout": dropout_key}
        )

    def attend(self, x):
        return self._apply(self.params, x, method="attend")

    def pure(self):
        return self.model.apply, self.params

    def axis_names(self):
        specs = nn.get_partition_spec(self.variables)["params"]
        return {name: spec["embedding"] for name, spec in specs.items()}


class NNXEmbedder(Embedder):
    def __init__(self, mode: str, params: dict | None, seed: int, **config):
        self.model = NNXInputEmbedding(**config, rngs=nnx.Rngs(seed))
        if params is not None:
            params_to_nnx(params, self.model)
        self.params = params_from_nnx(self.model)

        def call(model, token_ids, positions, deterministic, key):
            return model(token_ids, positions, deterministic=deterministic, rngs=key)

        def attend(model, x):
            return model.attend(x)

        self._call, self._attend = call, attend
        if mode == "nnx.jit":
            self._call, self._attend = nnx.jit(call, static_argnums=3), nnx.jit(attend)
        elif mode == "jax.jit":  # plain jax.jit over the split state
            graphdef, state = nnx.split(self.model)
            call_state = jax.jit(
                lambda state, *args: call(nnx.merge(graphdef, state), *args), static_argnums=3
            )
            attend_state = jax.jit(lambda state, x: attend(nnx.merge(graphdef, state), x))
            self._call = lambda model, *args: call_state(state, *args)
            self._attend = lambda model, x: attend_state(state, x)

    def __call__(self, token_ids, positions=None, *, dropout_key=None):
        return self._call(self.model, token_ids, positions, dropout_key is None, dropout_key)

    def attend(self, x):
        return self._attend(self.model, x)

    def pure(self):
        graphdef, state = nnx.split(self.model)
        return (lambda state, token_ids: nnx.merge(graphdef, state)(token_ids)), state

    def axis_names(self):
        specs = nnx.to_pure_dict(nnx.get_partition_spec(nnx.state(self.model, nnx.Param)))
        return {name: spec["embedding"] for name, spec in specs.items()}


MODES = {
    "linen-eager": (LinenEmbedder, "eager"),
    "linen-jit": (LinenEmbedder, "jit"),
    "nnx-eager": (NNXEmbedder, "eager"),
    "nnx-nnx.jit": (NNXEmbedder, "nnx.jit"),
    "nnx-jax.jit": (NNXEmbedder, "jax.jit"),
}
EAGER = ["linen-eager", "nnx-eager"]
JITTED = ["linen-jit", "nnx-nnx.jit", "nnx-jax.jit"]


def build(mode: str, params: dict | None = None, seed: int = 0, **config) -> Embedder:
    """The module in ``mode``, with ``params`` (Linen layout) or its own init."""
    cls, how = MODES[mode]
    return cls(how, params, seed, **{"vocab_size": V, "context_length": C, "features": D, **config})


@pytest.fixture(scope="module", params=list(MODES))
def embedder(request) -> Embedder:
    return build(request.param)


@pytest.fixture(scope="module", params=EAGER)
def eager(request) -> Embedder:
    return build(request.param)


@pytest.fixture(scope="module", params=JITTED)
def jitted(request) -> Embedder:
    return build(request.param)


@pytest.fixture(scope="module")
def ids_BxT() -> np.ndarray:
    return np.random.default_rng(0).integers(0, V, size=(4, 8), dtype=np.int32)


def tables(e: Embedder) -> tuple[np.ndarray, np.ndarray]:
    p = e.params["params"]
    return np.asarray(p["tok_emb"]["embedding"]), np.asarray(p["pos_emb"]["embedding"])


# Shapes, values, dtypes.


def test_params_have_the_books_names_and_shapes(embedder):
    assert jax.tree.map(jnp.shape, embedder.params) == {
        "params": {"tok_emb": {"embedding": (V, D)}, "pos_emb": {"embedding": (C, D)}}
    }


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_init_is_standard_normal_like_torch(api):
    tok, _ = tables(build(f"{api}-eager", vocab_size=50257))
    # 1.6M draws of N(0, 1): mean and std have standard errors of 8e-4 and 6e-4.
    assert tok.dtype == np.float32
    assert abs(tok.mean()) < 5e-3 and abs(tok.std() - 1.0) < 5e-3


@pytest.mark.parametrize(
    "positions",
    [None, np.arange(3, 11), np.tile(np.arange(5, 13), (4, 1)) + np.arange(4)[:, None]],
    ids=["default", "offset-T", "offset-BxT"],
)
def test_output_is_token_plus_position_rows(embedder, ids_BxT, positions):
    out = np.asarray(embedder(ids_BxT, positions))
    tok, pos = tables(embedder)
    assert out.shape == (4, 8, D) and out.dtype == np.float32
    expected_positions = np.arange(8) if positions is None else positions
    np.testing.assert_array_equal(out, tok[ids_BxT] + pos[expected_positions])


def test_unbatched_sequence(embedder, ids_BxT):
    out = embedder(ids_BxT[0])
    assert out.shape == (8, D)
    np.testing.assert_array_equal(out, embedder(ids_BxT)[0])


@pytest.mark.parametrize("ids_dtype", [np.uint16, np.int64, np.uint32])
def test_other_integer_dtypes_are_accepted(embedder, ids_BxT, ids_dtype):
    np.testing.assert_array_equal(embedder(ids_BxT.astype(ids_dtype)), embedder(ids_BxT))


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize(
    "dtypes",
    [(jnp.bfloat16, jnp.bfloat16), (jnp.float32, jnp.bfloat16)],
    ids=["bf16-params", "f32-params-bf16-compute"],
)
def test_dtype_and_param_dtype(mode, ids_BxT, dtypes):
    param_dtype, dtype = dtypes
    e = build(mode, dtype=dtype, param_dtype=param_dtype)
    tok, pos = tables(e)
    assert tok.dtype == param_dtype
    out = e(ids_BxT)
    assert out.dtype == dtype
    expected = tok[ids_BxT].astype(dtype) + pos[np.arange(8)].astype(dtype)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
    assert e.attend(out).dtype == dtype


def test_every_api_and_mode_computes_the_same_bits(ids_BxT):
    """The same Linen params in every mode (through ``params_to_nnx`` for NNX).

    ``attend`` is a matmul: XLA may sum it in another order once compiled (fusing
    the transpose), so its bits are compared between APIs within eager and within
    compiled modes; across them it is within a few ulps.
    """
    params = build("linen-eager", seed=3).params
    positions = np.arange(2, 10)
    embedders = {m: build(m, params) for m in MODES}
    outs = {m: np.asarray(e(ids_BxT, positions)) for m, e in embedders.items()}
    for m in MODES:
        np.testing.assert_array_equal(outs[m], outs["linen-eager"], err_msg=m)
    logits = {m: np.asarray(e.attend(outs[m])) for m, e in embedders.items()}
    for group in (EAGER, JITTED):
        for m in group:
            np.testing.assert_array_equal(logits[m], logits[group[0]], err_msg=m)
    ulp = np.spacing(np.abs(logits["linen-eager"]).max())
    assert np.abs(logits["linen-jit"] - logits["linen-eager"]).max() <= 8 * ulp


@pytest.mark.parametrize("mode", list(MODES))
def test_logical_axes_annotate_the_tables_and_change_no_output(mode, ids_BxT):
    annotated = build(mode, seed=4, logical_axes=True)
    assert annotated.axis_names() == {
        "tok_emb": PartitionSpec("vocab", "embed"),
        "pos_emb": PartitionSpec("position", "embed"),
    }
    plain = build(mode, annotated.params)
    np.testing.assert_array_equal(annotated(ids_BxT), plain(ids_BxT))


# Bad input: the same errors from both APIs.


def test_sequence_longer_than_context_raises(embedder):
    with pytest.raises(ValueError, match=f"sequence length {C + 1} is longer than the context"):
        embedder(jnp.zeros((1, C + 1), jnp.int32))


def test_float_ids_raise_type_error(embedder):
    with pytest.raises(TypeError, match="token_ids must be an integer array"):
        embedder(jnp.zeros((2, 4), jnp.float32))


def test_a_list_of_ids_is_not_an_array(eager):
    with pytest.raises(TypeError, match=r"token_ids must be an integer array .*got list"):
        eager([[1, 2, 3]])


@pytest.mark.parametrize("shape", [(2, 3, 4), ()])
def test_ids_of_wrong_rank_raise(embedder, shape):
    with pytest.raises(ValueError, match=r"token_ids must have shape \(B, T\) or \(T,\)"):
        embedder(jnp.zeros(shape, jnp.int32))


def test_positions_of_wrong_shape_raise(embedder, ids_BxT):
    with pytest.raises(ValueError, match=r"positions must have shape \(8,\) or \(4, 8\)"):
        embedder(ids_BxT, np.arange(7))


@pytest.mark.parametrize("bad", [V, V + 1000, -1])
def test_out_of_range_id_raises_naming_it(eager, ids_BxT, bad):
    ids = ids_BxT.copy()
    ids[2, 5] = bad
    with pytest.raises(ValueError, match=rf"token_ids\[2, 5\] = {bad} is outside \[0, {V}\)"):
        eager(ids)


def test_out_of_range_position_raises(eager, ids_BxT):
    with pytest.raises(ValueError, match=rf"positions\[7\] = {C} is outside \[0, {C}\)"):
        eager(ids_BxT, np.arange(C - 7, C + 1))


@pytest.mark.parametrize("bad", [V + 5, -1, -V])
def test_out_of_range_id_under_jit_is_a_nan_row_never_clamped_or_wrapped(jitted, ids_BxT, bad):
    out = np.asarray(jitted(jnp.asarray(ids_BxT).at[0, 0].set(bad)))
    assert np.isnan(out[0, 0]).all()
    assert np.isfinite(out[0, 1:]).all() and np.isfinite(out[1:]).all()


@pytest.mark.parametrize(("bad", "reported"), [(V + 5, V + 5), (-1, V)])
def test_checkify_reports_out_of_range_ids_under_jit(eager, ids_BxT, bad, reported):
    fn, state = eager.pure()
    checked = jax.jit(checkify.checkify(fn, errors=checkify.index_checks))
    err, _ = checked(state, jnp.asarray(ids_BxT))
    err.throw()  # in range: no error
    err, _ = checked(state, jnp.asarray(ids_BxT).at[1, 1].set(bad))
    with pytest.raises(checkify.JaxRuntimeError, match=f"index {reported} is out of bounds"):
        err.throw()


# Dropout.

RATE = 0.3
DROP_IDS = np.random.default_rng(1).integers(0, V, size=(64, C), dtype=np.int32)
"""64 x 16 x 32 = 32,768 embedding entries for the dropout statistics."""


@pytest.mark.parametrize("mode", list(MODES))
def test_dropout_off_leaves_outputs_unchanged_bit_for_bit(mode, ids_BxT):
    reference = build(mode, seed=5)
    expected = np.asarray(reference(ids_BxT))
    key = jax.random.key(7)
    # dropout_rate 0.0 (the default) even in training mode, and dropout_rate > 0
    # with deterministic=True: both leave every bit of the sum as it was.
    np.testing.assert_array_equal(build(mode, reference.params)(ids_BxT, dropout_key=key), expected)
    dropping = build(mode, reference.params, dropout_rate=RATE)
    np.testing.assert_array_equal(dropping(ids_BxT), expected)


@pytest.mark.parametrize("mode", list(MODES))
def test_dropout_keeps_1_minus_p_and_scales_by_1_over_1_minus_p(mode):
    e = build(mode, dropout_rate=RATE)
    x = np.asarray(e(DROP_IDS))
    y = np.asarray(e(DROP_IDS, dropout_key=jax.random.key(11)))
    n = x.size
    kept = y != 0  # x is never exactly 0 (continuous N(0, 2) entries)
    assert np.all(x != 0)
    # Kept entries are x / (1 - p) within two float32 roundings: XLA computes
    # x * float32(1 / (1 - p)), which can differ from the division by 1 ulp.
    np.testing.assert_allclose(y[kept], x[kept].astype(np.float64) / (1 - RATE), rtol=2**-22)
    # Kept fraction ~ Binomial(n, 1 - p) / n. Bound: 6 standard deviations, which
    # a correct mask exceeds with probability < 2e-9 (normal approximation).
    sigma = math.sqrt(RATE * (1 - RATE) / n)
    assert abs(kept.mean() - (1 - RATE)) < 6 * sigma, (kept.mean(), sigma)
    # Mean preserved: S = sum |y| has E[S] = sum |x| and Var[S] = sum x^2 p/(1-p).
    # Without the 1/(1-p) scaling S would be ~0.7 sum|x|, about 100 sigma away.
    s_sigma = math.sqrt(float(np.sum(x.astype(np.float64) ** 2)) * RATE / (1 - RATE))
    s_mean = float(np.abs(x).astype(np.float64).sum())
    assert abs(float(np.abs(y).astype(np.float64).sum()) - s_mean) < 6 * s_sigma


@pytest.mark.parametrize("mode", list(MODES))
def test_dropout_mask_is_a_function_of_the_key(mode, ids_BxT):
    e = build(mode, dropout_rate=0.5)
    a = np.asarray(e(ids_BxT, dropout_key=jax.random.key(1)))
    np.testing.assert_array_equal(e(ids_BxT, dropout_key=jax.random.key(1)), a)
    b = np.asarray(e(ids_BxT, dropout_key=jax.random.key(2)))
    assert not np.array_equal(a == 0, b == 0)


@pytest.mark.parametrize("api", [LinenEmbedder, NNXEmbedder], ids=["linen", "nnx"])
@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_bad_dropout_rate_raises(api, rate):
    with pytest.raises(ValueError, match="dropout_rate must be in"):
        api("eager", None, 0, vocab_size=V, context_length=C, features=D, dropout_rate=rate)


@pytest.mark.parametrize("api", [LinenEmbedder, NNXEmbedder], ids=["linen", "nnx"])
@pytest.mark.parametrize("size", ["vocab_size", "context_length", "features"])
@pytest.mark.parametrize("value", [0, -1])
def test_sizes_below_one_raise(api, size, value):
    config = {"vocab_size": V, "context_length": C, "features": D, size: value}
    with pytest.raises(ValueError, match=f"{size} must be at least 1, got {value}"):
        api("eager", None, 0, **config)


# Where the APIs differ by design: how dropout is switched on and off.


def test_linen_dropout_needs_deterministic_as_for_nn_dropout(ids_BxT):
    model = LinenInputEmbedding(V, C, D, dropout_rate=RATE)
    params = model.init(jax.random.key(0), ids_BxT, deterministic=True)
    with pytest.raises(ValueError, match="deterministic"):
        model.apply(params, ids_BxT)
    off = LinenInputEmbedding(V, C, D, dropout_rate=RATE, deterministic=True)
    np.testing.assert_array_equal(
        off.apply(params, ids_BxT), model.apply(params, ids_BxT, deterministic=True)
    )


def test_nnx_dropout_is_on_until_eval_and_draws_from_its_rngs(ids_BxT):
    model = NNXInputEmbedding(V, C, D, dropout_rate=RATE, rngs=nnx.Rngs(0))
    first, second = np.asarray(model(ids_BxT)), np.asarray(model(ids_BxT))
    assert (first == 0).any() and not np.array_equal(first == 0, second == 0)
    model.eval()
    off = np.asarray(model(ids_BxT))
    assert not (off == 0).any()
    model.train()
    assert (np.asarray(nnx.jit(lambda m, ids: m(ids))(model, ids_BxT)) == 0).any()


# The tied output head.


def test_attend_is_x_times_the_token_table_transposed(embedder):
    x = np.asarray(jax.random.normal(jax.random.key(1), (2, 3, D)))
    logits = np.asarray(embedder.attend(x))
    tok, _ = tables(embedder)
    assert logits.shape == (2, 3, V) and logits.dtype == np.float32
    exact = x.astype(np.float64) @ tok.astype(np.float64).T
    # float32 dot products of length D: within a few ulps of the largest logit.
    ulp = np.spacing(np.float32(np.abs(exact).max()))
    assert np.abs(logits - exact).max() <= 8 * ulp


def test_attend_asks_for_highest_precision(eager):
    x = jnp.ones((2, D))
    jaxpr = str(jax.make_jaxpr(eager.attend)(x))
    assert "Precision.HIGHEST" in jaxpr, jaxpr


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_attend_precision_is_configurable(api):
    e = build(f"{api}-eager", precision="default")
    assert "Precision.HIGHEST" not in str(jax.make_jaxpr(e.attend)(jnp.ones((2, D))))


def test_attend_matches_torch_within_the_parity_tolerance(embedder):
    torch = pytest.importorskip("torch")
    from parity.linen_nnx import ATTEND_TOLERANCE_ULPS

    tok, _ = tables(embedder)
    ids = np.random.default_rng(2).integers(0, V, size=(8, C), dtype=np.int32)
    x = np.asarray(embedder(ids))
    logits = np.asarray(embedder.attend(x))
    expected = (torch.tensor(x) @ torch.tensor(tok).T).numpy()
    ulp = np.spacing(np.abs(expected).max())
    assert np.abs(logits - expected).max() <= ATTEND_TOLERANCE_ULPS * ulp
