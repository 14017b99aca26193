"""flax_embed.convert: layouts, whole-model state dicts, safetensors files, errors."""

from __future__ import annotations

import logging
import os

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from flax_embed.convert import (
    LAYOUTS,
    detect_layout,
    load_params,
    params_from_torch,
    params_to_numpy,
    params_to_torch,
    save_params,
    to_numpy,
)
from flax_embed.layers.linen import InputEmbedding
from tests.optional import requires

# Most tests compare with torch; the safetensors files and the errors need no torch.
needs_torch = requires("torch", "safetensors.torch", extra="parity")
try:
    import safetensors.torch as safetensors_torch
    import torch

    from parity import model_state_dicts
    from parity.conversion_checks import MODELS, OUT_TABLES, torch_model_embedding
    from parity.torch_reference import TorchInputEmbedding

    CONFIG = model_state_dicts.GPTConfig()
    V, C, D = CONFIG.vocab_size, CONFIG.context_length, CONFIG.emb_dim
except ImportError:
    torch = safetensors_torch = model_state_dicts = torch_model_embedding = None
    TorchInputEmbedding = CONFIG = None
    MODELS, OUT_TABLES = {}, {}
    V, C, D = 50257, 64, 32  # parity.model_state_dicts.GPTConfig's


def small_model(**kw) -> InputEmbedding:
    return InputEmbedding(**{"vocab_size": V, "context_length": C, "features": D, **kw})


def real_ids(batch_size=4, seq_len=16) -> np.ndarray:
    from flax_embed.cli import read_text
    from flax_embed.tokenizer import encode

    ids = encode(read_text(None))[: batch_size * seq_len]
    return ids.reshape(batch_size, seq_len)


def random_bits_table(shape, dtype=np.float32, seed=0) -> np.ndarray:
    """Every bit pattern is fair game (denormals, -0.0, inf, NaN payloads): bit-exactness."""
    itemsize = np.dtype(dtype).itemsize
    bits = np.random.default_rng(seed).integers(0, 2**31, size=shape, dtype=np.int64)
    return bits.astype(f"u{itemsize}").view(dtype)


def book_arrays() -> dict:
    """The book's two tables as NumPy arrays: a state dict that needs no torch."""
    return {
        "tok_emb.weight": np.ones((V, D), np.float32),
        "pos_emb.weight": np.ones((C, D), np.float32),
    }


def book_state(dtype=None) -> dict:
    module = TorchInputEmbedding(vocab_size=V, context_length=C, emb_dim=D)
    return {k: v.to(dtype or torch.float32) for k, v in module.state_dict().items()}


# --- whole-model state dicts: every layout, in and out ---------------------------------


@pytest.mark.tokenizer
@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("as_numpy", [False, True], ids=["torch", "numpy"])
def test_whole_model_state_dict_gives_the_models_own_embeddings(name, as_numpy):
    build, _, tables = MODELS[name]
    state = build(CONFIG, seed=3)
    ids = real_ids()
    expected = torch_model_embedding(state, tables, ids).numpy()
    source = {k: v.numpy() for k, v in state.items()} if as_numpy else state
    model = small_model()
    params = params_from_torch(source, model=model)
    for apply in (model.apply, jax.jit(model.apply)):
        np.testing.assert_array_equal(np.asarray(apply(params, ids)), expected, strict=True)


@pytest.mark.parametrize("name", list(MODELS))
def test_whole_model_tables_convert_back(name):
    build, layout, tables = MODELS[name]
    state = build(CONFIG, seed=4)
    back = params_to_torch(params_from_torch(state), layout)
    assert list(back) == list(OUT_TABLES[layout])
    for original, returned in zip(tables, OUT_TABLES[layout], strict=True):
        assert torch.equal(back[returned], state[original])
    # ... and load into the model's own two embedding modules by name.
    tok = torch.nn.Embedding(V, D)
    tok.load_state_dict({"weight": back[OUT_TABLES[layout][0]]}, strict=True)
    assert torch.equal(tok.weight, state[tables[0]])


@pytest.mark.parametrize("name", list(MODELS))
def test_detect_layout(name):
    build, layout, tables = MODELS[name]
    keys = detect_layout(build(CONFIG))
    assert (keys.layout, keys.tok_emb, keys.pos_emb) == (layout, *tables)


def test_prefixed_tables_alone_read_as_nanogpt_or_hf_alike():
    state = {"transformer.wte.weight": np.ones((V, D), np.float32)}
    state["transformer.wpe.weight"] = np.zeros((C, D), np.float32)
    assert detect_layout(state).layout == "nanogpt"
    assert detect_layout(state, "hf").names == detect_layout(state, "nanogpt").names


@needs_torch
def test_params_from_torch_logs_the_keys_it_used(caplog):
    state = model_state_dicts.hf_gpt2model(CONFIG)
    with caplog.at_level(logging.INFO, logger="flax_embed.convert"):
        params_from_torch(state)
    (message,) = caplog.messages
    assert "'wte.weight'" in message and "'wpe.weight'" in message
    assert f"ignored {len(state) - 2} other keys" in message


@needs_torch
def test_params_from_torch_copies():
    state = book_state()
    params = params_from_torch(state)
    state["tok_emb.weight"].data.fill_(0.0)
    assert np.abs(params["params"]["tok_emb"]["embedding"]).max() > 0


@needs_torch
def test_backwards_compatible_book_calls():
    """``params_to_torch(params)`` and ``params_from_torch(state_dict)``, the one-argument
    calls of the book's workflow (parity/forward.py makes them)."""
    model = InputEmbedding(context_length=4, features=8)
    params = model.init(jax.random.key(0), jnp.zeros((2, 4), jnp.int32))
    module = TorchInputEmbedding(context_length=4, emb_dim=8)
    module.load_state_dict(params_to_torch(params), strict=True)
    again = params_from_torch(module.state_dict())
    jax.tree.map(np.testing.assert_array_equal, again, jax.device_get(params))


@pytest.mark.tokenizer
def test_boxed_params_convert():
    model = small_model()
    params = model.init(jax.random.key(0), real_ids())
    boxed = jax.tree.map(lambda x: __import__("flax").linen.Partitioned(x, ("a", "b")), params)
    for a, b in zip(params_to_numpy(boxed).values(), params_to_numpy(params).values(), strict=True):
        np.testing.assert_array_equal(a, b)


# --- dtypes: bit-exact, never down-cast ----------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
@needs_torch
def test_round_trip_through_torch_is_bit_exact(dtype):
    table = random_bits_table((V, D), dtype)
    params = {"params": {"tok_emb": {"embedding": table}, "pos_emb": {"embedding": table[:C]}}}
    state = params_to_torch(params)
    assert str(state["tok_emb.weight"].dtype) == f"torch.{np.dtype(dtype).name}"
    back = params_from_torch(state)["params"]["tok_emb"]["embedding"]
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.view(np.uint8), table.view(np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
def test_round_trip_through_safetensors_is_bit_exact(tmp_path, dtype):
    table = random_bits_table((V, D), dtype, seed=1)
    params = {"params": {"tok_emb": {"embedding": table}, "pos_emb": {"embedding": table[:C]}}}
    save_params(tmp_path / "p.safetensors", params)
    back = load_params(tmp_path / "p.safetensors")["params"]["tok_emb"]["embedding"]
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.view(np.uint8), table.view(np.uint8))


@needs_torch
def test_float64_is_kept_in_torch_and_refused_by_jax_without_x64():
    table = np.random.default_rng(0).standard_normal((C, D))
    params = {"tok_emb": {"embedding": table}, "pos_emb": {"embedding": table}}
    assert params_to_torch(params)["tok_emb.weight"].dtype == torch.float64
    with pytest.raises(ValueError, match=r"'tok_emb.weight' is float64.*round it to float32"):
        params_from_torch(params_to_torch(params))


@needs_torch
def test_bfloat16_torch_tensor_to_numpy_keeps_bits():
    t = torch.randn(5, 3).to(torch.bfloat16)
    a = to_numpy(t)
    assert a.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(a.astype(np.float32), t.float().numpy())


# --- safetensors interop with torch --------------------------------------------------------


@pytest.mark.tokenizer
@needs_torch
def test_saved_file_loads_into_torch_module_strictly(tmp_path):
    model = InputEmbedding(context_length=4, features=16)
    ids = real_ids(2, 4)
    params = model.init(jax.random.key(1), ids)
    save_params(tmp_path / "e.safetensors", params)
    module = TorchInputEmbedding(context_length=4, emb_dim=16)
    module.load_state_dict(safetensors_torch.load_file(tmp_path / "e.safetensors"), strict=True)
    with torch.no_grad():
        expected = module(torch.from_numpy(ids).long()).numpy()
    np.testing.assert_array_equal(np.asarray(jax.jit(model.apply)(params, ids)), expected)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@needs_torch
def test_saved_file_has_the_layouts_keys(tmp_path, layout):
    params = params_from_torch(book_state())
    save_params(tmp_path / "e.safetensors", params, layout=layout)
    loaded = safetensors_torch.load_file(tmp_path / "e.safetensors")
    assert sorted(loaded) == sorted(LAYOUTS[layout].names)
    back = load_params(tmp_path / "e.safetensors", layout=layout, model=small_model())
    jax.tree.map(np.testing.assert_array_equal, back, params)


@pytest.mark.tokenizer
@needs_torch
def test_torch_saved_whole_model_loads(tmp_path):
    state = model_state_dicts.nanogpt(CONFIG, seed=5)
    state["lm_head.weight"] = state["lm_head.weight"].clone()  # save_file refuses shared memory
    safetensors_torch.save_file(state, tmp_path / "model.safetensors")
    params = load_params(tmp_path / "model.safetensors", model=small_model())
    ids = real_ids()
    np.testing.assert_array_equal(
        np.asarray(small_model().apply(params, ids)),
        torch_model_embedding(state, MODELS["nanoGPT GPT"].tables, ids).numpy(),
    )


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "layout", "match"),
    [
        ({"tok_emb.weight": np.ones((V, D), np.float32)}, None, r"no 'pos_emb.weight'"),
        ({"tok_emb.weight": np.ones((V, D), np.float32)}, "book", r"no 'pos_emb.weight'"),
        ({"foo.weight": np.ones((3, 2), np.float32)}, None, r"cannot detect.*'foo.weight'"),
        ({}, None, r"cannot detect.*it is empty"),
        ({"wte.weight": np.ones((3, 2)), "tok_emb.weight": np.ones((3, 2))}, None, "ambiguous"),
        (book_arrays(), "hf", r"no 'wte.weight'.*'tok_emb.weight'"),
        (book_arrays(), "gpt2", r"unknown layout 'gpt2'"),
    ],
    ids=["missing-detected", "missing-given", "none", "empty", "ambiguous", "wrong", "unknown"],
)
def test_bad_state_dicts(state, layout, match):
    with pytest.raises(ValueError, match=match):
        params_from_torch(state, layout)


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (small_model(features=48), rf"'tok_emb.weight' has shape \({V}, {D}\), .* \({V}, 48\)"),
        (small_model(context_length=8), rf"'pos_emb.weight' has shape \({C}, {D}\), .* \(8, {D}\)"),
        (small_model(vocab_size=100), rf"'tok_emb.weight' has shape \({V}, {D}\), .* \(100, {D}\)"),
    ],
    ids=["features", "context", "vocab"],
)
@needs_torch
def test_shape_mismatch_names_key_and_both_shapes(model, match):
    with pytest.raises(ValueError, match=match):
        params_from_torch(book_state(), model=model)


@pytest.mark.parametrize("dtype", ["int64", "int32", "bool", "uint8"])
@needs_torch
def test_non_float_table_is_refused(dtype):
    state = book_state()
    state["pos_emb.weight"] = state["pos_emb.weight"].to(getattr(torch, dtype))
    with pytest.raises(ValueError, match=r"'pos_emb.weight' has dtype .*must be floating point"):
        params_from_torch(state)


@pytest.mark.parametrize(
    ("tok", "pos", "match"),
    [
        ((V, D), (C, D + 1), "same number of features"),
        ((V,), (C, D), r"'tok_emb.weight' has shape \(50257,\)"),
    ],
)
def test_inconsistent_tables(tok, pos, match):
    state = {"tok_emb.weight": np.ones(tok, np.float32), "pos_emb.weight": np.ones(pos, np.float32)}
    with pytest.raises(ValueError, match=match):
        params_from_torch(state)


@needs_torch
def test_tables_of_different_dtypes_are_refused():
    state = book_state()
    state["pos_emb.weight"] = state["pos_emb.weight"].half()
    with pytest.raises(ValueError, match=r"float32 but 'pos_emb\.weight' is float16"):
        params_from_torch(state)


@pytest.mark.parametrize("params", [{}, {"params": {"tok_emb": {}}}, {"tok_emb": 3}])
@needs_torch
def test_params_without_tables(params):
    with pytest.raises(ValueError, match=r"params have no 'tok_emb'"):
        params_to_torch(params)


def test_integer_params_are_refused_on_save(tmp_path):
    ints = {"tok_emb": {"embedding": np.ones((3, 2), np.int32)}, "pos_emb": {"embedding": None}}
    with pytest.raises(ValueError, match="must be floating point"):
        save_params(tmp_path / "x.safetensors", ints)
    assert list(tmp_path.iterdir()) == []


@needs_torch
def test_failing_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    import safetensors.numpy

    target = tmp_path / "e.safetensors"
    target.write_bytes(b"old contents")

    def write_half_then_fail(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a fi")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.numpy, "save_file", write_half_then_fail)
    with pytest.raises(OSError, match=r"e.safetensors: cannot write \(No space left on device\)"):
        save_params(target, params_from_torch(book_state()))
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["e.safetensors"]


@needs_torch
def test_save_into_missing_folder(tmp_path):
    with pytest.raises(OSError, match="no-such-dir"):
        save_params(tmp_path / "no-such-dir" / "e.safetensors", params_from_torch(book_state()))


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing.safetensors: no such file"):
        load_params(tmp_path / "nothing.safetensors")


@pytest.mark.parametrize("contents", [b"", b"not a safetensors file at all", b"\xff" * 64])
def test_load_garbage(tmp_path, contents):
    (tmp_path / "bad.safetensors").write_bytes(contents)
    with pytest.raises(ValueError, match=r"bad.safetensors: not a safetensors file"):
        load_params(tmp_path / "bad.safetensors")


@needs_torch
def test_load_truncated_file(tmp_path):
    save_params(tmp_path / "e.safetensors", params_from_torch(book_state()))
    data = (tmp_path / "e.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_params(tmp_path / "cut.safetensors")


@needs_torch
def test_load_integer_table(tmp_path):
    state = {"tok_emb.weight": torch.ones(3, 2, dtype=torch.int64), "pos_emb.weight": torch.ones(2)}
    safetensors_torch.save_file(state, tmp_path / "ints.safetensors")
    with pytest.raises(ValueError, match=r"'pos_emb.weight' has dtype|'tok_emb.weight' has dtype"):
        load_params(tmp_path / "ints.safetensors")


def test_load_is_not_fooled_by_a_directory(tmp_path):
    os.mkdir(tmp_path / "dir.safetensors")
    with pytest.raises(OSError, match=r"dir\.safetensors: cannot read"):
        load_params(tmp_path / "dir.safetensors")


def test_conversion_module_does_not_import_torch(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, flax_embed.convert as c\n"
        "t = np.ones((3, 2), np.float32)\n"
        f"c.save_params({str(tmp_path / 'x.safetensors')!r}, "
        "{'tok_emb': {'embedding': t}, 'pos_emb': {'embedding': t}})\n"
        f"c.load_params({str(tmp_path / 'x.safetensors')!r})\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
