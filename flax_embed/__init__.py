"""flax-embed: GPT-2's input-embedding stage in JAX/Flax, with exact PyTorch parity.

tokenizer → batcher → embedding → conversion:

* ``gpt2_tokenizer`` / ``encode``: GPT-2 BPE ids (tiktoken), offline if need be;
* ``SlidingWindowDataset`` / ``Batcher`` / ``create_dataloader``: the book's
  sliding-window loader in NumPy;
* ``InputEmbedding``: the Flax module, token plus position embedding;
* ``params_from_torch`` / ``params_to_torch``: weights to and from PyTorch.
"""

from flax_embed.batcher import Batcher, SlidingWindowDataset, create_dataloader, epoch_permutation
from flax_embed.conversion import params_from_torch, params_to_torch
from flax_embed.embedding import InputEmbedding, torch_embedding_init
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
    "TokenizerUnavailableError",
    "create_dataloader",
    "encode",
    "epoch_permutation",
    "gpt2_tokenizer",
    "params_from_torch",
    "params_to_torch",
    "torch_embedding_init",
]
