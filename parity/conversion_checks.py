"""Conversion rows: whole-model state dicts in and out, and safetensors files both ways.

Each model's state dict (``parity.model_state_dicts``) is converted with
``params_from_torch`` (layout detected); the Flax output must equal that model's
own ``tok_emb(x) + pos_emb(arange(T))`` computed by torch bit for bit, and
``params_to_torch`` must give back the very same tables.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import torch

from flax_embed.convert import (
    detect_layout,
    load_params,
    params_from_torch,
    params_to_torch,
    save_params,
)
from flax_embed.layers.linen import InputEmbedding
from parity import model_state_dicts
from parity.common import compare, on_backend, text_batch
from parity.result import CheckResult
from parity.torch_reference import TorchInputEmbedding

__all__ = ["MODELS", "conversion_checks", "torch_model_embedding"]


class Model(NamedTuple):
    build: Callable[..., dict]
    layout: str
    """The layout it must be detected as."""
    tables: tuple[str, str]
    """Its token and position tables' keys, written out here, not asked of the code
    under test: the torch reference reads these."""


MODELS: dict[str, Model] = {
    "book GPTModel": Model(
        model_state_dicts.book_gptmodel, "book", ("tok_emb.weight", "pos_emb.weight")
    ),
    "HF GPT2Model": Model(model_state_dicts.hf_gpt2model, "hf", ("wte.weight", "wpe.weight")),
    "HF GPT2LMHeadModel": Model(
        model_state_dicts.hf_gpt2lmheadmodel,
        "hf",
        ("transformer.wte.weight", "transformer.wpe.weight"),
    ),
    "nanoGPT GPT": Model(
        model_state_dicts.nanogpt, "nanogpt", ("transformer.wte.weight", "transformer.wpe.weight")
    ),
}
OUT_TABLES = {
    "book": ("tok_emb.weight", "pos_emb.weight"),
    "hf": ("wte.weight", "wpe.weight"),
    "nanogpt": ("transformer.wte.weight", "transformer.wpe.weight"),
}
"""The keys ``params_to_torch(params, layout)`` must write."""

CONFIG = model_state_dicts.GPTConfig()


def torch_model_embedding(
    state_dict: dict, tables: tuple[str, str], ids_BxT: np.ndarray
) -> torch.Tensor:
    """The model's own input stage in torch: ``tok_emb(ids) + pos_emb(arange(T))``."""
    tok_key, pos_key = tables
    tok_emb = torch.nn.Embedding.from_pretrained(state_dict[tok_key])
    pos_emb = torch.nn.Embedding.from_pretrained(state_dict[pos_key])
    ids = torch.from_numpy(np.asarray(ids_BxT)).long()
    with torch.no_grad():
        return tok_emb(ids) + pos_emb(torch.arange(ids.shape[-1]))


def _model() -> InputEmbedding:
    return InputEmbedding(
        vocab_size=CONFIG.vocab_size, context_length=CONFIG.context_length, features=CONFIG.emb_dim
    )


def state_dict_roundtrip(name: str, backend: str) -> list[CheckResult]:
    """Two rows: ``name``'s state dict → Flax (outputs), Flax → state dict (tables)."""
    build, layout, tables = MODELS[name]
    state = build(CONFIG, seed=1)
    keys = detect_layout(state)
    if keys.layout != layout:
        raise AssertionError(f"{name}: detected layout {keys.layout!r}, expected {layout!r}")
    ids_BxT, _ = text_batch(8, CONFIG.context_length)
    model = _model()
    with on_backend(backend):
        params = params_from_torch(state, model=model)
        out = jax.jit(model.apply)(params, ids_BxT)
    expected = torch_model_embedding(state, tables, ids_BxT)
    # GPT2LMHeadModel's prefixed keys come back as GPT2Model's: the "hf" layout's names.
    back = params_to_torch(params, layout)
    back_tables = np.concatenate([back[k].numpy() for k in OUT_TABLES[layout]])
    original_tables = np.concatenate([state[k].numpy() for k in tables])
    used = f"took {keys.tok_emb!r}, {keys.pos_emb!r} of {len(state)} keys"
    return [
        compare(f"convert {name} state dict → flax", backend, out, expected, note=used),
        compare(f"convert flax → {name} tables", backend, back_tables, original_tables),
    ]


def safetensors_roundtrips(backend: str) -> list[CheckResult]:
    """save_params → torch ``load_file`` + ``load_state_dict(strict=True)``, and back."""
    from safetensors.torch import load_file, save_file

    ids_BxT, _ = text_batch(8, 4)
    model = InputEmbedding(context_length=4, features=256)
    torch.manual_seed(0)
    module = TorchInputEmbedding(context_length=4, emb_dim=256)
    with tempfile.TemporaryDirectory() as tmp:
        with on_backend(backend):
            params = model.init(jax.random.key(0), ids_BxT)
            flax_out = jax.jit(model.apply)(params, ids_BxT)
        save_params(Path(tmp) / "flax.safetensors", params)
        loaded = TorchInputEmbedding(context_length=4, emb_dim=256)
        loaded.load_state_dict(load_file(Path(tmp) / "flax.safetensors"), strict=True)
        save_file(module.state_dict(), Path(tmp) / "torch.safetensors")
        with on_backend(backend):
            torch_params = load_params(Path(tmp) / "torch.safetensors", model=model)
            flax_from_torch = jax.jit(model.apply)(torch_params, ids_BxT)
    torch_from_flax, torch_out = loaded.run(ids_BxT), module.run(ids_BxT)
    return [
        compare("safetensors flax → torch (save_params, load_file)", backend, flax_out,
                torch_from_flax),
        compare("safetensors torch → flax (save_file, load_params)", backend, flax_from_torch,
                torch_out),
    ]  # fmt: skip


def conversion_checks(backend: str) -> list[CheckResult]:
    """Every model's state dict both ways, and the safetensors round trips; all exact."""
    rows = [row for name in MODELS for row in state_dict_roundtrip(name, backend)]
    return rows + safetensors_roundtrips(backend)
