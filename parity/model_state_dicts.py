"""Whole-model state dicts of three GPT-2 implementations, with their real key names.

The key names and shapes are those of

* the book's ``GPTModel`` (chapter 4): ``tok_emb``, ``pos_emb``, ``trf_blocks.N.att.W_query``,
  ..., ``final_norm.scale``, ``out_head.weight``;
* Hugging Face ``transformers``' ``GPT2Model`` (``Conv1D`` weights stored ``(in, out)``):
  ``wte``, ``wpe``, ``h.N.attn.c_attn``, ..., ``ln_f``; ``GPT2LMHeadModel`` adds the
  ``transformer.`` prefix and a tied ``lm_head.weight``;
* nanoGPT's ``GPT`` (``nn.Linear`` weights stored ``(out, in)``): ``transformer.wte``,
  ``transformer.wpe``, ``transformer.h.N.attn.c_attn``, ..., ``lm_head.weight`` (tied).

The tensors are random (seeded), small configs keep them cheap; what matters for
the conversion is that the embedding tables sit among the other keys as they do in
the real models. Building them needs no ``transformers`` install.
"""

from __future__ import annotations

import dataclasses

import torch

__all__ = ["GPTConfig", "book_gptmodel", "hf_gpt2lmheadmodel", "hf_gpt2model", "nanogpt"]


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """The book's ``GPT_CONFIG_124M`` fields (small defaults, GPT-2's vocabulary)."""

    vocab_size: int = 50257
    context_length: int = 64
    emb_dim: int = 32
    n_heads: int = 2
    n_layers: int = 2
    qkv_bias: bool = False


def _tensors(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shape, generator=gen) for key, shape in shapes.items()}


def book_gptmodel(cfg: GPTConfig = GPTConfig(), seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict of the book's ``GPTModel(cfg)``, in its key order."""
    d, c = cfg.emb_dim, cfg.context_length
    shapes = {"tok_emb.weight": (cfg.vocab_size, d), "pos_emb.weight": (c, d)}
    for i in range(cfg.n_layers):
        b = f"trf_blocks.{i}"
        for w in ("W_query", "W_key", "W_value"):
            shapes[f"{b}.att.{w}.weight"] = (d, d)
            if cfg.qkv_bias:
                shapes[f"{b}.att.{w}.bias"] = (d,)
        shapes |= {f"{b}.att.out_proj.weight": (d, d), f"{b}.att.out_proj.bias": (d,)}
        shapes |= {f"{b}.ff.layers.0.weight": (4 * d, d), f"{b}.ff.layers.0.bias": (4 * d,)}
        shapes |= {f"{b}.ff.layers.2.weight": (d, 4 * d), f"{b}.ff.layers.2.bias": (d,)}
        shapes |= {f"{b}.norm{n}.{p}": (d,) for n in (1, 2) for p in ("scale", "shift")}
    shapes |= {"final_norm.scale": (d,), "final_norm.shift": (d,)}
    shapes["out_head.weight"] = (cfg.vocab_size, d)
    state = _tensors(shapes, seed)
    # The causal mask is a (persistent) buffer of each attention block.
    for i in range(cfg.n_layers):
        state[f"trf_blocks.{i}.att.mask"] = torch.triu(torch.ones(c, c), diagonal=1)
    return state


def _hf_block_shapes(cfg: GPTConfig, prefix: str, conv1d: bool) -> dict[str, tuple[int, ...]]:
    d = cfg.emb_dim

    def linear(name: str, n_in: int, n_out: int) -> dict[str, tuple[int, ...]]:
        weight = (n_in, n_out) if conv1d else (n_out, n_in)
        return {f"{name}.weight": weight, f"{name}.bias": (n_out,)}

    shapes = {}
    for i in range(cfg.n_layers):
        h = f"{prefix}h.{i}"
        shapes |= {f"{h}.ln_1.weight": (d,), f"{h}.ln_1.bias": (d,)}
        shapes |= linear(f"{h}.attn.c_attn", d, 3 * d) | linear(f"{h}.attn.c_proj", d, d)
        shapes |= {f"{h}.ln_2.weight": (d,), f"{h}.ln_2.bias": (d,)}
        shapes |= linear(f"{h}.mlp.c_fc", d, 4 * d) | linear(f"{h}.mlp.c_proj", 4 * d, d)
    return shapes | {f"{prefix}ln_f.weight": (d,), f"{prefix}ln_f.bias": (d,)}


def hf_gpt2model(cfg: GPTConfig = GPTConfig(), seed: int = 0) -> dict[str, torch.Tensor]:
    """The state dict of Hugging Face's ``GPT2Model``: ``wte.weight``, ``wpe.weight``, ``h.N...``.

    Includes the boolean causal-mask buffer ``h.N.attn.bias`` that transformers
    versions before 4.40 saved, to show that non-float tensors elsewhere are ignored.
    """
    d, c = cfg.emb_dim, cfg.context_length
    shapes = {"wte.weight": (cfg.vocab_size, d), "wpe.weight": (c, d)}
    state = _tensors(shapes | _hf_block_shapes(cfg, "", conv1d=True), seed)
    for i in range(cfg.n_layers):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(c, c, dtype=torch.bool))[None, None]
    return state


def hf_gpt2lmheadmodel(cfg: GPTConfig = GPTConfig(), seed: int = 0) -> dict[str, torch.Tensor]:
    """``GPT2LMHeadModel``'s state dict: ``transformer.``-prefixed, ``lm_head`` tied to wte."""
    state = {f"transformer.{k}": v for k, v in hf_gpt2model(cfg, seed).items()}
    state["lm_head.weight"] = state["transformer.wte.weight"]
    return state


def nanogpt(cfg: GPTConfig = GPTConfig(), seed: int = 0) -> dict[str, torch.Tensor]:
    """nanoGPT's ``GPT`` state dict: ``transformer.wte.weight``, ..., tied ``lm_head.weight``."""
    d, c = cfg.emb_dim, cfg.context_length
    shapes = {"transformer.wte.weight": (cfg.vocab_size, d), "transformer.wpe.weight": (c, d)}
    state = _tensors(shapes | _hf_block_shapes(cfg, "transformer.", conv1d=False), seed)
    state["lm_head.weight"] = state["transformer.wte.weight"]
    return state
