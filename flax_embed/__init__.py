"""flax-embed: GPT-2's input-embedding stage in JAX/Flax, with exact PyTorch parity.

The pipeline, one subpackage a stage (imports go one way, left to right)::

  tokenizer → data → layers → convert → distributed → cli

* ``encode`` / ``gpt2_tokenizer``: GPT-2 BPE ids (tiktoken), offline if need be;
* ``data``: token files, sliding windows, ``Batcher`` (the book's loader in NumPy);
* ``layers``, ``nnx``, ``positions``: the Flax modules (Linen and NNX) and position encodings;
* ``convert``: weights to and from PyTorch and safetensors;
* ``distributed``: meshes, global batches, prefetching;
* ``cli``: the ``flax-embed`` command.
"""

import importlib
from typing import TYPE_CHECKING

# Loaded on first use (PEP 562), so that ``import flax_embed.data`` and ``flax-embed
# tokenize`` load neither JAX nor Flax: the data pipeline is NumPy only.
_SUBMODULES = frozenset({"convert", "data", "distributed", "layers", "nnx", "positions"})
_NAMES = {
    "as_token_ids": "flax_embed._validation",
    "load_params": "flax_embed.convert",
    "params_from_torch": "flax_embed.convert",
    "params_to_torch": "flax_embed.convert",
    "save_params": "flax_embed.convert",
    "Batcher": "flax_embed.data",
    "SlidingWindowDataset": "flax_embed.data",
    "TokenFileError": "flax_embed.data",
    "create_dataloader": "flax_embed.data",
    "encode_parallel": "flax_embed.data",
    "read_token_file": "flax_embed.data",
    "sample_text": "flax_embed.data",
    "write_token_file": "flax_embed.data",
    "InputEmbedding": "flax_embed.layers",
    "GPT2_VOCAB_SIZE": "flax_embed.tokenizer",
    "TokenizerUnavailableError": "flax_embed.tokenizer",
    "encode": "flax_embed.tokenizer",
    "gpt2_tokenizer": "flax_embed.tokenizer",
    "load_tokenizer": "flax_embed.tokenizer",
}

if TYPE_CHECKING:  # what type checkers and IDEs see: the names, eagerly
    from flax_embed import convert as convert
    from flax_embed import data as data
    from flax_embed import distributed as distributed
    from flax_embed import layers as layers
    from flax_embed import nnx as nnx
    from flax_embed import positions as positions
    from flax_embed._validation import as_token_ids
    from flax_embed.convert import load_params, params_from_torch, params_to_torch, save_params
    from flax_embed.data import (
        Batcher,
        SlidingWindowDataset,
        TokenFileError,
        create_dataloader,
        encode_parallel,
        read_token_file,
        sample_text,
        write_token_file,
    )
    from flax_embed.layers import InputEmbedding
    from flax_embed.tokenizer import (
        GPT2_VOCAB_SIZE,
        TokenizerUnavailableError,
        encode,
        gpt2_tokenizer,
        load_tokenizer,
    )


def __getattr__(name: str):
    if name == "__version__":  # importlib.metadata takes 40 ms to import: not at start-up
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("flax-embed")
        except PackageNotFoundError:  # running from a checkout that was never installed
            value = "0+unknown"
    elif name in _SUBMODULES:
        value = importlib.import_module(f"flax_embed.{name}")
    elif name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    else:
        raise AttributeError(f"module 'flax_embed' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


# What ``from flax_embed import *`` gives: the curated names, never the subpackages
# (``nnx`` would shadow ``flax.nnx``), each defined in one module and documented there.
__all__ = [
    "GPT2_VOCAB_SIZE",
    "Batcher",
    "InputEmbedding",
    "SlidingWindowDataset",
    "TokenFileError",
    "TokenizerUnavailableError",
    "as_token_ids",
    "create_dataloader",
    "encode",
    "encode_parallel",
    "gpt2_tokenizer",
    "load_tokenizer",
    "load_params",
    "params_from_torch",
    "params_to_torch",
    "read_token_file",
    "sample_text",
    "save_params",
    "write_token_file",
]
