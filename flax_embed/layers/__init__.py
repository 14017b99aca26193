"""The Flax modules: ``InputEmbedding`` for Linen (``linen``) and NNX (``nnx``), and the pure
functions they share (``common``)."""

from flax_embed.layers.common import embed_sum, lookup, tied_logits, torch_embedding_init
from flax_embed.layers.linen import InputEmbedding

__all__ = ["InputEmbedding", "embed_sum", "lookup", "tied_logits", "torch_embedding_init"]
