"""flax_embed.positions: each behaviour against the Hugging Face code it reproduces.

The bounded comparisons at long positions are the parity rows'
(tests/parity/test_positions_parity.py); here: shapes, layouts, offsets, partial
rotary, jit against eager, configs, and bad input.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax_embed.positions import (
    DynamicNTKScaling,
    LinearScaling,
    Llama3Scaling,
    ProportionalScaling,
    RoPE,
    YarnScaling,
    alibi_bias,
    alibi_slopes,
    rope_permute,
    sinusoidal_table,
)
from tests.optional import requires

# The references are Hugging Face's code: only the tests that compare with it need torch.
needs_hf = requires("torch", "transformers", extra="parity")
try:
    import torch
except ImportError:
    torch = None

U = 2.0**-24


# --- sinusoidal ------------------------------------------------------------------------------


def _hf_sinusoidal(variant, n, d):
    from parity.positions import _sinusoidal_reference

    return _sinusoidal_reference(variant, n, d)


@pytest.mark.parametrize("variant", ["interleaved", "concat", "tensor2tensor"])
@pytest.mark.parametrize("features", [8, 7, 768])
@needs_hf
def test_sinusoidal_table_matches_the_hf_variant(variant, features):
    ours = np.asarray(sinusoidal_table(64, features, variant=variant))
    ref = _hf_sinusoidal(variant, 64, features)
    # 64 positions: angles < 64, bound 64·5U + 4U (parity.positions.SINUSOIDAL_BOUNDS).
    np.testing.assert_allclose(ours, ref, rtol=0, atol=64 * 5 * U + 4 * U)


@pytest.mark.parametrize("variant", ["interleaved", "concat", "tensor2tensor"])
def test_sinusoidal_table_jit_equals_eager(variant):
    eager = sinusoidal_table(300, 16, variant=variant)
    jitted = jax.jit(sinusoidal_table, static_argnums=(0, 1), static_argnames="variant")(
        300, 16, variant=variant
    )
    np.testing.assert_array_equal(eager, jitted)


def test_sinusoidal_variants_differ_in_layout():
    inter = np.asarray(sinusoidal_table(5, 8, variant="interleaved"))
    concat = np.asarray(sinusoidal_table(5, 8, variant="concat"))
    np.testing.assert_array_equal(inter[:, 0::2], concat[:, :4])
    np.testing.assert_array_equal(inter[:, 1::2], concat[:, 4:])


def test_tensor2tensor_pads_odd_features_with_zeros():
    table = np.asarray(sinusoidal_table(10, 9, variant="tensor2tensor"))
    assert np.all(table[:, -1] == 0)


def test_sinusoidal_table_dtype():
    assert sinusoidal_table(4, 8, dtype=jnp.bfloat16).dtype == jnp.bfloat16


# --- RoPE -------------------------------------------------------------------------------------


def _llama_reference(x_BxTxHxD, positions_BxT, rope_parameters, head_dim, max_pos=4096):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    config = LlamaConfig(
        hidden_size=head_dim * 2,
        num_attention_heads=2,
        head_dim=head_dim,
        max_position_embeddings=max_pos,
        rope_parameters=rope_parameters,
    )
    q = torch.from_numpy(np.asarray(x_BxTxHxD)).transpose(1, 2)
    cos, sin = LlamaRotaryEmbedding(config)(q, torch.from_numpy(np.asarray(positions_BxT)).long())
    return apply_rotary_pos_emb(q, q, cos, sin)[0].transpose(1, 2).numpy(), config


SCALINGS = {
    "default": {"rope_type": "default", "rope_theta": 10000.0},
    "linear": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
    "dynamic": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0},
    "llama3": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
               "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 256},
    "yarn": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
             "original_max_position_embeddings": 256},
}  # fmt: skip


@pytest.mark.parametrize("name", list(SCALINGS))
@pytest.mark.parametrize("jit", [True, False])
@needs_hf
def test_rope_apply_matches_llama_for_each_scaling(name, jit):
    """Short positions (< 600, past 256 and 512 so that dynamic NTK scales): tight bound."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 2, 32), dtype=np.float32)
    pos = np.stack([np.arange(16), np.arange(16) + 583])
    ref, config = _llama_reference(x, pos, SCALINGS[name], 32, max_pos=512)
    rope = RoPE.from_hf_config(config.to_dict())
    apply = jax.jit(rope.apply) if jit else rope.apply
    ours = np.asarray(apply(x, pos))
    # parity.positions' bound at angles <= 600: 2|x|·g·(600·(rho_w + 2U) + 8U), with
    # rho_w <= 76U (llama3 here: 5U·(1 + 8·4/3) + 16U) and g <= 1.14 (YaRN's factor).
    bound = 2 * np.abs(x).max() * 1.14 * (600 * 78 * U + 8 * U)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=bound)


def test_dynamic_ntk_scales_only_past_the_original_length():
    rope = RoPE(32, scaling=DynamicNTKScaling(2.0, 512))
    short, _ = rope.cos_sin(jnp.arange(512))
    plain, _ = RoPE(32).cos_sin(jnp.arange(512))
    np.testing.assert_array_equal(short, plain)
    long_, _ = rope.cos_sin(jnp.arange(1024))
    assert not np.array_equal(long_[:512], plain)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_rope_offsets_equal_slices_of_the_full_sequence(layout):
    """Decoding: position t alone gives row t of the whole sequence, bit for bit."""
    rope = RoPE(16, layout=layout)
    x = np.random.default_rng(1).standard_normal((1, 10, 3, 16), dtype=np.float32)
    full = np.asarray(rope.apply(x, np.arange(10)))
    step = np.asarray(rope.apply(x[:, 7:8], np.array([7])))
    np.testing.assert_array_equal(step, full[:, 7:8])


def test_rope_batched_positions_equal_per_row_positions():
    rope = RoPE(8)
    x = np.random.default_rng(2).standard_normal((2, 5, 1, 8), dtype=np.float32)
    pos = np.array([[0, 1, 2, 3, 4], [9, 10, 11, 0, 1]])  # packed: a second document restarts
    both = np.asarray(rope.apply(x, pos))
    for b in range(2):
        np.testing.assert_array_equal(both[b], np.asarray(rope.apply(x[b], pos[b])))


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_partial_rotary_passes_the_rest_through_unchanged(layout):
    rope = RoPE(16, layout=layout, rotary_dim=4)
    x = np.random.default_rng(3).standard_normal((1, 6, 2, 16), dtype=np.float32)
    out = np.asarray(jax.jit(rope.apply)(x, np.arange(6) + 100))
    np.testing.assert_array_equal(out[..., 4:], x[..., 4:])
    assert not np.array_equal(out[..., :4], x[..., :4])


def test_rope_keeps_dtype_and_shape():
    x = jnp.ones((3, 4, 2, 8), jnp.bfloat16)
    out = RoPE(8).apply(x, jnp.arange(4))
    assert out.shape == x.shape and out.dtype == jnp.bfloat16


def test_rope_scores_depend_only_on_relative_position():
    rope = RoPE(32)
    rng = np.random.default_rng(4)
    q, k = rng.standard_normal((2, 1, 1, 1, 32), dtype=np.float32)

    def score(i, j):
        return float(jnp.sum(rope.apply(q, jnp.array([i])) * rope.apply(k, jnp.array([j]))))

    assert score(10, 3) == pytest.approx(score(107, 100), abs=1e-4)


def test_negative_positions_rotate_backwards():
    rope = RoPE(8)
    x = np.random.default_rng(5).standard_normal((1, 1, 1, 8), dtype=np.float32)
    there = rope.apply(x, jnp.array([5]))
    back = rope.apply(there, jnp.array([-5]))
    np.testing.assert_allclose(back, x, atol=1e-6)


def test_yarn_attention_factor_scales_cos_and_sin():
    rope = RoPE(16, scaling=YarnScaling(4.0, 256))
    cos, sin = rope.cos_sin(jnp.zeros(1, jnp.int32))
    assert float(cos[0, 0]) == pytest.approx(0.1 * np.log(4.0) + 1.0, rel=1e-7)
    assert float(sin[0, 0]) == 0.0


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32,
          "rope_theta": 500000.0, "max_position_embeddings": 131072,
          "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                           "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}},
         RoPE(128, base=500000.0, scaling=Llama3Scaling(8.0, 1.0, 4.0, 8192))),
        ({"model_type": "gpt_neox", "hidden_size": 512, "num_attention_heads": 8,
          "rotary_pct": 0.25, "rotary_emb_base": 10000},
         RoPE(64, rotary_dim=16)),
        ({"model_type": "phi", "hidden_size": 2048, "num_attention_heads": 32,
          "partial_rotary_factor": 0.5, "rope_theta": 10000.0},
         RoPE(64, rotary_dim=32)),
        ({"model_type": "gptj", "n_embd": 4096, "n_head": 16, "rotary_dim": 64},
         RoPE(256, layout="interleaved", rotary_dim=64)),
        ({"model_type": "llama", "head_dim": 128, "hidden_size": 4096, "num_attention_heads": 16,
          "rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}},
         RoPE(128, scaling=LinearScaling(4.0))),
        ({"model_type": "qwen2", "hidden_size": 1024, "num_attention_heads": 16,
          "rope_theta": 1e6, "max_position_embeddings": 32768,
          "rope_scaling": {"type": "yarn", "factor": 4.0,
                           "original_max_position_embeddings": 32768}},
         RoPE(64, base=1e6, scaling=YarnScaling(4.0, 32768))),
    ],
    ids=["llama3", "gpt-neox", "phi", "gpt-j", "rope_parameters-linear", "yarn"],
)  # fmt: skip
def test_from_hf_config(config, expected):
    assert RoPE.from_hf_config(config) == expected


def test_from_hf_config_names_a_missing_scaling_key():
    config = {"hidden_size": 64, "num_attention_heads": 2}
    config["rope_parameters"] = {"rope_type": "llama3", "factor": 8.0, "rope_theta": 5e5}
    with pytest.raises(ValueError, match=r"rope_parameters\['low_freq_factor'\] is required"):
        RoPE.from_hf_config(config)


@pytest.mark.parametrize("key", ["rope_type", "type"])
def test_from_hf_config_names_the_unsupported_scaling_key_and_family(key):
    config = {
        "model_type": "llama",
        "hidden_size": 64,
        "num_attention_heads": 2,
        "rope_scaling": {key: "made_up"},
    }
    match = rf"rope_scaling\['{key}'\] = 'made_up' is not supported \(model_type 'llama'\)"
    with pytest.raises(ValueError, match=match):
        RoPE.from_hf_config(config)


# --- rope_permute -----------------------------------------------------------------------------


@needs_hf
def test_rope_permute_matches_hf_conversion_and_inverts():
    from parity.positions import hf_permute

    w = np.random.default_rng(6).standard_normal((4 * 16, 24), dtype=np.float32)
    half = np.asarray(rope_permute(w, 4, to="half"))
    np.testing.assert_array_equal(half, hf_permute(torch.from_numpy(w), 4).numpy())
    np.testing.assert_array_equal(np.asarray(rope_permute(half, 4, to="interleaved")), w)


def test_rope_permute_turns_interleaved_scores_into_half_scores():
    rng = np.random.default_rng(7)
    H, D, M = 2, 16, 32
    wq, wk = rng.standard_normal((2, H * D, M), dtype=np.float32)
    x = rng.standard_normal((1, 8, M), dtype=np.float32)
    pos = np.arange(8) + 50

    def scores(layout, wq, wk):
        rope = RoPE(D, layout=layout)
        q = rope.apply((x @ wq.T).reshape(1, 8, H, D), pos)
        k = rope.apply((x @ wk.T).reshape(1, 8, H, D), pos)
        return np.einsum("bqhd,bkhd->bhqk", q, k)

    meta = scores("interleaved", wq, wk)
    hf = scores("half", np.asarray(rope_permute(wq, H)), np.asarray(rope_permute(wk, H)))
    np.testing.assert_allclose(hf, meta, rtol=1e-5, atol=1e-4)


def test_rope_permute_bias():
    b = jnp.arange(8.0)
    np.testing.assert_array_equal(rope_permute(b, 1), [0, 2, 4, 6, 1, 3, 5, 7])


# --- ALiBi ------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_heads", [1, 2, 4, 8, 12, 16, 20, 112])
@needs_hf
def test_alibi_slopes_follow_the_paper(num_heads):
    from transformers.models.bloom.modeling_bloom import _get_alibi_slopes

    ref = _get_alibi_slopes(num_heads, "cpu").numpy()
    # (k + 3) ULP (parity.positions.alibi_rows); k <= num_heads.
    np.testing.assert_allclose(np.asarray(alibi_slopes(num_heads)), ref, rtol=(num_heads + 3) * U)


@needs_hf
def test_alibi_bias_is_softmax_equivalent_to_bloom():
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    H, Q, K = 12, 6, 10
    scores = np.random.default_rng(8).standard_normal((H, Q, K))
    ours = np.asarray(alibi_bias(H, Q, K, offset=K - Q), np.float64)
    bloom = build_alibi_tensor(torch.ones(1, K, dtype=torch.long), H, torch.float32).numpy()

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    np.testing.assert_allclose(softmax(scores + ours), softmax(scores + bloom), atol=1e-6)


def test_alibi_bias_is_zero_on_the_diagonal_and_negative_for_past_keys():
    bias = np.asarray(alibi_bias(4, 3, 5, offset=2))
    for q in range(3):
        assert np.all(bias[:, q, q + 2] == 0)
        assert np.all(bias[:, q, : q + 2] < 0)


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: RoPE(7), "head_dim"),
        (lambda: RoPE(8, rotary_dim=3), "rotary_dim"),
        (lambda: RoPE(8, rotary_dim=10), "rotary_dim"),
        (lambda: RoPE(8, base=0.0), "base"),
        (lambda: RoPE(8, base=-1.0), "base"),
        (lambda: RoPE(8, layout="neox"), "layout"),
        (lambda: sinusoidal_table(4, 8, variant="vaswani"), "variant"),
        (lambda: sinusoidal_table(0, 8), "num_positions"),
        (lambda: LinearScaling(0.0), "factor"),
        (lambda: DynamicNTKScaling(-2.0, 10), "factor"),
        (lambda: YarnScaling(0.0, 10), "factor"),
        (lambda: Llama3Scaling(8.0, 4.0, 1.0, 8192), "low_freq_factor"),
        (lambda: Llama3Scaling(8.0, 0.0, 4.0, 8192), "low_freq_factor"),
        (lambda: alibi_slopes(0), "num_heads"),
        (lambda: alibi_bias(0, 2, 2), "num_heads"),
        (lambda: rope_permute(jnp.ones((12, 4)), 0), "num_heads"),
        (lambda: rope_permute(jnp.ones((12, 4)), 5), "first dimension"),
        (lambda: rope_permute(jnp.ones((12, 4)), 2, to="meta"), "to"),
        (lambda: RoPE(8).apply(jnp.ones((1, 4, 2, 6)), jnp.arange(4)), "head_dim=8"),
        (lambda: RoPE(8).apply(jnp.ones((1, 4, 2, 8)), jnp.arange(5)), "positions"),
        (lambda: RoPE(8).apply(jnp.ones((2, 4, 2, 8)), jnp.zeros((3, 4), int)), "positions"),
    ],
)
def test_bad_input_raises_naming_the_argument(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_bad_shapes_raise_under_jit_too():
    with pytest.raises(ValueError, match="head_dim=8"):
        jax.jit(RoPE(8).apply)(jnp.ones((1, 4, 2, 6)), jnp.arange(4))


@pytest.mark.parametrize("layout", ["half", "interleaved"])
@needs_hf
def test_rotate_keeps_signed_zeros_like_hf(layout):
    """Bit patterns, not values: -0.0 and 0.0 inputs come out with HF's signs (no jit)."""
    from transformers.models.gptj.modeling_gptj import apply_rotary_pos_emb as gptj_apply
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as llama_apply

    x = np.array([[[[0.0, -0.0, 1.0, -0.0, -0.0, 0.0, -2.0, 0.0]]]], np.float32)  # (1,1,1,8)
    cos = np.float32([[1.0, 0.5, 0.0, -1.0]])  # (T=1, 4)
    sin = np.float32([[0.0, -0.5, 1.0, -0.0]])
    ours = np.asarray(RoPE(8, layout=layout).rotate(jnp.asarray(x), cos, sin))
    xt = torch.from_numpy(x)
    if layout == "half":
        c = torch.from_numpy(np.concatenate([cos, cos], -1))[None]
        s = torch.from_numpy(np.concatenate([sin, sin], -1))[None]
        ref = llama_apply(xt, xt, c, s, unsqueeze_dim=2)[0].numpy()
    else:
        ref = gptj_apply(xt, torch.from_numpy(sin)[None], torch.from_numpy(cos)[None]).numpy()
    np.testing.assert_array_equal(ours.view(np.uint32), ref.view(np.uint32))


# --- from_hf_config across families (issue 18); the matrix checks each against HF's code ---


def _hf(model_type, **kw):
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type, **kw)


@pytest.mark.parametrize(
    ("model_type", "layout"),
    [("llama", "half"), ("cohere", "interleaved"), ("glm4", "interleaved"),
     ("llama4_text", "interleaved"), ("deepseek_v2", "interleaved"), ("gptj", "interleaved")],
)  # fmt: skip
def test_from_hf_config_layout_follows_the_family(model_type, layout):
    assert RoPE.from_hf_config(_hf(model_type)).layout == layout


def test_from_hf_config_reads_deepseek_rope_interleave_and_qk_rope_head_dim():
    config = _hf("deepseek_v3", rope_interleave=True, qk_rope_head_dim=64)
    rope = RoPE.from_hf_config(config)
    assert (rope.layout, rope.head_dim, rope.dim) == ("interleaved", 64, 64)


def test_deepseek_v4_is_interleaved_on_its_rope_slice_per_rope_label():
    config = _hf("deepseek_v4")
    main = RoPE.from_hf_config(config, layer_type="main")
    compress = RoPE.from_hf_config(config, layer_type="compress")
    assert (main.layout, main.head_dim, main.base) == ("interleaved", 64, 1e4)
    assert (compress.layout, compress.head_dim, compress.base) == ("interleaved", 64, 1.6e5)


def test_from_hf_config_accepts_a_config_object():
    from transformers import LlamaConfig

    config = LlamaConfig(hidden_size=256, num_attention_heads=4)
    assert RoPE.from_hf_config(config) == RoPE.from_hf_config(config.to_dict())


@pytest.mark.parametrize(
    "config",
    [{"model_type": "bloom", "n_head": 8, "hidden_size": 64},
     {"model_type": "falcon", "alibi": True, "hidden_size": 64, "num_attention_heads": 4},
     {"model_type": "mpt", "d_model": 64, "n_heads": 4, "attn_config": {"alibi": True}}],
    ids=["bloom", "falcon-alibi", "mpt"],
)  # fmt: skip
def test_from_hf_config_refuses_alibi_configs(config):
    with pytest.raises(ValueError, match=r"uses ALiBi, not RoPE: use .*alibi_slopes"):
        RoPE.from_hf_config(config)


def test_gemma3_per_layer_types():
    config = _hf("gemma3_text")
    with pytest.raises(ValueError, match=r"per layer type .*sliding_attention, full_attention"):
        RoPE.from_hf_config(config)
    assert RoPE.from_hf_config(config, layer_type="sliding_attention").base == 10000.0
    assert RoPE.from_hf_config(config, layer_type="full_attention").base == 1e6


@pytest.mark.parametrize("model_type", ["cohere2", "flint", "exaone4"])
def test_full_attention_layers_without_rope_are_refused(model_type):
    """Cohere 2 (and others) rotate only in sliding layers: the full ones use NoPE."""
    config = _hf(model_type)
    with pytest.raises(ValueError, match=r"'full_attention' layers use no positional encoding"):
        RoPE.from_hf_config(config, layer_type="full_attention")
    assert RoPE.from_hf_config(config, layer_type="sliding_attention").dim == 128


def test_exaone4_full_layers_rotate_without_sliding_windows():
    config = {**_hf("exaone4").to_dict(), "sliding_window": None}
    assert RoPE.from_hf_config(config, layer_type="full_attention").dim == 128


@pytest.mark.parametrize(
    ("model_type", "message"),
    [("t5gemma", r"'t5gemma': an encoder-decoder config of sub-configs \(encoder, decoder\) "
                 r".*pass the sub-config whose attention uses RoPE, e.g. config\['decoder'\]"),
     ("qwen2_5_omni", r"'qwen2_5_omni': a composite config of sub-configs \(thinker_config, "
                      r".*config\['thinker_config'\]"),
     ("moonshine", r"'moonshine': an encoder-decoder config with per-side attention shapes "
                   r"\(decoder_num_attention_heads, encoder_num_attention_heads\)")],
)  # fmt: skip
def test_a_nested_config_is_refused_naming_what_it_is_and_what_to_pass(model_type, message):
    with pytest.raises(ValueError, match=message):
        RoPE.from_hf_config(_hf(model_type))


def test_a_config_without_an_attention_shape_names_the_missing_keys():
    with pytest.raises(ValueError, match=r"'llama'\); missing: num_attention_heads"):
        RoPE.from_hf_config({"model_type": "llama", "hidden_size": 64})


def test_zamba2_rotates_only_with_use_mem_rope_and_its_attention_head_dim():
    with pytest.raises(ValueError, match=r"'zamba2': use_mem_rope is false, .*no RoPE"):
        RoPE.from_hf_config(_hf("zamba2"))
    assert RoPE.from_hf_config(_hf("zamba2", use_mem_rope=True)).head_dim == 160  # not 80


@pytest.mark.parametrize("model_type", ["jamba", "nemotron_h"])
def test_families_whose_attention_has_no_rope_are_refused(model_type):
    with pytest.raises(ValueError, match=rf"'{model_type}' applies no positional encoding"):
        RoPE.from_hf_config(_hf(model_type))


def test_gemma3_legacy_rope_local_base_freq():
    legacy = {"model_type": "gemma3_text", "head_dim": 256, "hidden_size": 1152,
              "num_attention_heads": 4, "rope_theta": 1e6, "rope_local_base_freq": 1e4,
              "rope_scaling": {"rope_type": "linear", "factor": 8.0}}  # fmt: skip
    sliding = RoPE.from_hf_config(legacy, layer_type="sliding_attention")
    full = RoPE.from_hf_config(legacy, layer_type="full_attention")
    assert sliding == RoPE(256, base=1e4)
    assert full == RoPE(256, base=1e6, scaling=LinearScaling(8.0))


def test_llama3_with_equal_low_and_high_factors_matches_hf():
    params = {"rope_type": "llama3", "rope_theta": 5e5, "factor": 16.0, "low_freq_factor": 1.0,
              "high_freq_factor": 1.0, "original_max_position_embeddings": 8192}  # fmt: skip
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    config = LlamaConfig(hidden_size=256, num_attention_heads=2, rope_parameters=params)
    hf = LlamaRotaryEmbedding(config).inv_freq.numpy()
    ours = RoPE.from_hf_config(config).inv_freq_np()
    np.testing.assert_allclose(ours, hf, rtol=5 * U, atol=0)


def test_longrope_switches_to_long_factors_past_the_original_length():
    from transformers import Phi3Config
    from transformers.models.phi3.modeling_phi3 import Phi3RotaryEmbedding

    half = 16
    params = {"rope_type": "longrope", "rope_theta": 1e4,
              "short_factor": [1.0 + i / 10 for i in range(half)],
              "long_factor": [2.0 + i for i in range(half)]}  # fmt: skip
    config = Phi3Config(hidden_size=64, num_attention_heads=2, max_position_embeddings=1024,
                        original_max_position_embeddings=256, rope_parameters=params)  # fmt: skip
    rope = RoPE.from_hf_config(config)
    for n in (256, 257):
        pos = np.arange(n)
        cos_hf, _ = Phi3RotaryEmbedding(config)(torch.zeros(1), torch.from_numpy(pos)[None])
        cos, _ = rope.cos_sin(pos)
        theta = n * 32.0  # angles < n·max ω; bound as the parity rows' cos bound
        np.testing.assert_allclose(cos, cos_hf[0, :, :half], rtol=0, atol=theta * 12 * U)
    assert rope.attention_factor == pytest.approx(np.sqrt(1 + np.log(4) / np.log(256)))


def test_mrope_positions_pick_their_row_per_section():
    rope = RoPE(16, mrope_section=(2, 3, 3))
    pos = np.stack([np.arange(4), np.arange(4) * 10, np.arange(4) * 100])[:, None]  # (3, 1, 4)
    cos, _ = rope.cos_sin(pos)
    for row, cols in ((0, slice(0, 2)), (1, slice(2, 5)), (2, slice(5, 8))):
        want, _ = RoPE(16).cos_sin(pos[row])
        np.testing.assert_array_equal(cos[..., cols], want[..., cols])


def test_proportional_rope_matches_hf_and_rotates_a_fraction_of_the_whole_head():
    """Gemma 4 / LFM3 ``"proportional"``: frequencies over the whole head's exponent,
    the last ones 0 (pass-through), the pairs ``(i, i + head_dim/2)``, all / factor."""
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    params = {"rope_type": "proportional", "rope_theta": 1e6, "partial_rotary_factor": 0.25,
              "factor": 2.0}  # fmt: skip
    config = LlamaConfig(hidden_size=256, num_attention_heads=2, rope_parameters=params)
    hf, scale = ROPE_INIT_FUNCTIONS["proportional"](config)
    rope = RoPE.from_hf_config(config)
    assert (rope.head_dim, rope.dim, scale) == (128, 128, 1.0)
    np.testing.assert_array_equal(rope.inv_freq_np(), hf.numpy())
    assert not rope.inv_freq_np()[16:].any() and rope.inv_freq_np()[:16].all()
    x = np.random.default_rng(0).standard_normal((1, 4, 2, 128), dtype=np.float32)
    out = np.asarray(rope.apply(x, np.arange(4) + 100))
    still = np.r_[16:64, 80:128]  # the unrotated pairs pass through bit for bit
    np.testing.assert_array_equal(out[..., still], x[..., still])


@pytest.mark.parametrize("model_type", ["gemma4", "lfm3"])
def test_from_hf_config_reads_proportional_full_layers(model_type):
    config = _hf(model_type)
    full = RoPE.from_hf_config(config, layer_type="full_attention")
    text = getattr(config, "text_config", config)
    head_dim = 512 if model_type == "gemma4" else text.head_dim  # Gemma 4: global_head_dim
    fraction = text.rope_parameters["full_attention"]["partial_rotary_factor"]
    assert full.scaling == ProportionalScaling(fraction)
    assert (full.head_dim, full.dim, full.base) == (head_dim, head_dim, 1e6)


def test_gemma4_config_json_global_head_dim_is_the_full_layers_head_dim():
    raw = {"model_type": "gemma4_text", "head_dim": 256, "global_head_dim": 512,
           "hidden_size": 2304, "num_attention_heads": 8,
           "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
                               "full_attention": {"rope_type": "proportional", "rope_theta": 1e6,
                                                  "partial_rotary_factor": 0.25}}}  # fmt: skip
    assert RoPE.from_hf_config(raw, layer_type="full_attention").head_dim == 512
    assert RoPE.from_hf_config(raw, layer_type="sliding_attention").head_dim == 256


def test_per_layer_config_overrides_that_differ_within_a_layer_type_are_refused():
    raw = {"model_type": "gemma4_text", "head_dim": 256, "hidden_size": 2304,
           "num_attention_heads": 8, "layer_types": ["full_attention", "full_attention"],
           "per_layer_config": {"00": {"head_dim": 512}},
           "rope_parameters": {"full_attention": {"rope_theta": 1e6}}}  # fmt: skip
    with pytest.raises(ValueError, match=r"per_layer_config .*'full_attention' layers"):
        RoPE.from_hf_config(raw, layer_type="full_attention")


def test_an_odd_rotary_width_rotates_one_more_feature_like_hf():
    """GLM-4-MoE's default config: int(42 · 0.5) = 21; HF's 11 frequencies have exponents
    over 21 and rotate 22 features, pairs (i, i + 11)."""
    from transformers.models.glm4_moe import modeling_glm4_moe as m

    config = _hf("glm4_moe")
    rope = RoPE.from_hf_config(config)
    hf_rotary = m.Glm4MoeRotaryEmbedding(config)
    assert (rope.head_dim, rope.dim) == (42, 22)
    np.testing.assert_array_equal(rope.inv_freq_np(), hf_rotary.inv_freq.numpy())
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 42), dtype=np.float32)
    pos = torch.arange(8)[None]
    cos, sin = hf_rotary(torch.from_numpy(x), pos)
    ref = m.apply_rotary_pos_emb(torch.from_numpy(x), torch.from_numpy(x), cos, sin)[0]
    ours = rope.apply(x.transpose(0, 2, 1, 3), np.arange(8)).transpose(0, 2, 1, 3)
    # parity.positions' bound (|x| + |r|)·(θ·2U + 6U), |x|, |r| < 4 (float32 normals), θ ≤ 7
    np.testing.assert_allclose(ours, ref.numpy(), rtol=0, atol=8 * (7 * 2 + 6) * U)


def test_an_odd_rotary_width_with_a_length_dependent_scaling_is_refused():
    params = {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4,
              "partial_rotary_factor": 0.5}  # fmt: skip
    config = _hf("glm4_moe", rope_parameters=params)
    with pytest.raises(ValueError, match=r"= 21 is odd, .*'dynamic'.*'glm4_moe'"):
        RoPE.from_hf_config(config)


def test_per_layer_overrides_of_other_keys_do_not_matter():
    raw = {"model_type": "neomme", "head_dim": 64, "hidden_size": 512,
           "num_attention_heads": 8, "layer_types": ["sliding_attention", "sliding_attention"],
           "per_layer_config": {"01": {"sliding_window": 1024}}}  # fmt: skip
    assert RoPE.from_hf_config(raw, layer_type="sliding_attention") == RoPE(64)


@pytest.mark.parametrize(
    ("model_type", "section", "interleaved"),
    [("glm_ocr", (8, 12, 12), False), ("paddleocr_vl", (16, 24, 24), False),
     ("qwen3_5", (11, 11, 10), True), ("qwen4_exp", (11, 11, 10), True)],
)  # fmt: skip
def test_mrope_sections_default_to_the_family_code(model_type, section, interleaved):
    """Configs without mrope_section get the one the family's code assumes (the matrix
    checks each on three distinct position rows)."""
    rope = RoPE.from_hf_config(_hf(model_type))
    assert (rope.mrope_section, rope.mrope_interleaved) == (section, interleaved)


def test_interleaved_mrope_sections_need_not_cover_every_frequency():
    """HF's interleaved M-RoPE assigns h and w by slices; the frequencies past them read t."""
    rope = RoPE(64, mrope_section=(2, 2, 2), mrope_interleaved=True)  # 6 of 32 frequencies
    pos = np.stack([np.arange(4), np.arange(4) * 10, np.arange(4) * 100])[:, None]
    cos, _ = rope.cos_sin(pos)
    want_t, _ = RoPE(64).cos_sin(pos[0])
    np.testing.assert_array_equal(cos[..., 6:], want_t[..., 6:])
    with pytest.raises(ValueError, match=r"must sum to rotary_dim // 2 = 32"):
        RoPE(64, mrope_section=(2, 2, 2))


def test_ernie_vl_mrope_is_refused():
    with pytest.raises(ValueError, match=r"'ernie4_5_vl_moe_text'.*has an M-RoPE of its own"):
        RoPE.from_hf_config(_hf("ernie4_5_vl_moe"))


def test_from_inv_freq_equals_the_computed_rope():
    rope = RoPE(32, base=5e5)
    given = RoPE.from_inv_freq(rope.inv_freq_np())
    x = np.random.default_rng(0).standard_normal((1, 8, 2, 32), dtype=np.float32)
    np.testing.assert_array_equal(given.apply(x, np.arange(8)), rope.apply(x, np.arange(8)))


def test_dynamic_ntk_frequencies_within_half_an_ulp_of_exact():
    rope = RoPE(128, base=1e4, scaling=DynamicNTKScaling(4.0, 2048))
    pos = jnp.arange(100_000)
    ours = np.asarray(jax.jit(rope.inv_freq_at)(pos)).astype(np.float64)
    base = 1e4 * (4.0 * 100_000 / 2048 - 3.0) ** (128 / 126)
    exact = base ** -(np.arange(0, 128, 2) / 128)
    ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(ours - exact) / ulp) <= 0.5


# --- host checks of positions, offsets, sizes and dtypes (issue 17: 16, 17, 19) -------------


def test_rope_apply_refuses_positions_outside_int32():
    x = np.ones((1, 2, 1, 8), np.float32)
    with pytest.raises(ValueError, match=r"positions\[1\] = 4294967299 is outside the int32"):
        RoPE(8).apply(x, np.array([0, 2**32 + 3], np.int64))


def test_rope_apply_refuses_an_integer_x():
    with pytest.raises(TypeError, match="x must be a floating-point array, got dtype int32"):
        RoPE(8).apply(np.ones((1, 2, 1, 8), np.int32), np.arange(2))


@pytest.mark.parametrize("offset", [2**31 - 2, 2**40])
def test_alibi_bias_refuses_offsets_that_overflow_int32(offset):
    with pytest.raises(ValueError, match=r"offset must be at most 2147483645"):
        alibi_bias(2, 3, 4, offset=offset)


def test_alibi_bias_accepts_the_largest_offset():
    bias = np.asarray(alibi_bias(1, 2, 1, offset=2**31 - 2))
    assert np.all(bias <= 0)


def test_sinusoidal_table_refuses_a_table_larger_than_memory():
    with pytest.raises(ValueError, match=r"sinusoidal_table\(1000000000, 4096\) need .* GiB"):
        sinusoidal_table(10**9, 4096)
