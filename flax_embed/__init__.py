"""flax-embed: GPT-2's input-embedding stage in JAX/Flax, with exact PyTorch parity.

tokenizer → batcher → embedding → conversion:

* ``gpt2_tokenizer`` / ``encode``: GPT-2 BPE ids (tiktoken), offline if need be;
  ``encode_parallel``: the same ids on every core;
* ``write_token_file`` / ``read_token_file``: ids on disk, memory-mapped back
  (``SlidingWindowDataset.from_file``);
* ``SlidingWindowDataset`` / ``Batcher`` / ``create_dataloader``: the book's
  sliding-window loader in NumPy;
* ``InputEmbedding``: the Flax module, token plus position embedding;
* ``params_from_torch`` / ``params_to_torch``: weights to and from PyTorch;
  ``save_params`` / ``load_params``: the same as safetensors files.
"""

from flax_embed.batcher import Batcher, SlidingWindowDataset, create_dataloader, epoch_permutation
from flax_embed.conversion import load_params, params_from_torch, params_to_torch, save_params
from flax_embed.data import sample_text
from flax_embed.embedding import InputEmbedding, torch_embedding_init
from flax_embed.parallel_tokenize import encode_parallel
from flax_embed.token_files import TokenFileError, read_token_file, write_token_file
from flax_embed.tokenizer import (
    ENDOFTEXT,
    ENDOFTEXT_ID,
    GPT2_VOCAB_SIZE,
    TokenizerUnavailableError,
    encode,
    gpt2_tokenizer,
)

__version__ = "0.1.0"

__all__ = [
    "ENDOFTEXT",
    "ENDOFTEXT_ID",
    "GPT2_VOCAB_SIZE",
    "Batcher",
    "InputEmbedding",
    "SlidingWindowDataset",
    "TokenFileError",
    "TokenizerUnavailableError",
    "create_dataloader",
    "encode",
    "encode_parallel",
    "epoch_permutation",
    "gpt2_tokenizer",
    "load_params",
    "params_from_torch",
    "params_to_torch",
    "read_token_file",
    "sample_text",
    "save_params",
    "torch_embedding_init",
    "write_token_file",
]
