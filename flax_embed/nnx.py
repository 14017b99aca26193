"""``InputEmbedding`` for Flax NNX (``flax_embed.layers.nnx``), under the name Flax users expect.

>>> import jax.numpy as jnp
>>> from flax import nnx
>>> from flax_embed.nnx import InputEmbedding
>>> model = InputEmbedding(vocab_size=50257, context_length=4, features=256, rngs=nnx.Rngs(0))
>>> model(jnp.zeros((8, 4), jnp.int32)).shape
(8, 4, 256)
"""

from flax_embed.layers.nnx import InputEmbedding, params_from_nnx, params_to_nnx

__all__ = ["InputEmbedding", "params_from_nnx", "params_to_nnx"]
