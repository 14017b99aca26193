"""``InputEmbedding``: token embedding plus learned absolute position embedding."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flax_embed.tokenizer import GPT2_VOCAB_SIZE
from flax_embed.validation import check_inputs

__all__ = ["InputEmbedding", "embed_sum", "lookup", "torch_embedding_init"]

Dtype = Any
Initializer = jax.nn.initializers.Initializer

torch_embedding_init: Initializer = jax.nn.initializers.normal(stddev=1.0)
"""N(0, 1), the distribution ``torch.nn.Embedding`` initialises its weight with."""


def lookup(table_VxD: jax.Array, ids: jax.Array) -> jax.Array:
    """Rows ``ids`` of ``table_VxD``: a gather, shape ``ids.shape + (D,)``.

    The ids must already be checked (``validation.check_inputs``); an id out of
    range that slips through under ``jit`` gives a NaN row, never a clamped one.
    """
    return jnp.take(table_VxD, ids, axis=0, mode="fill", fill_value=jnp.nan)


def embed_sum(
    tok_VxD: jax.Array, pos_CxD: jax.Array, token_ids: jax.Array, positions: jax.Array
) -> jax.Array:
    """``tok_VxD[token_ids] + pos_CxD[positions]``: the whole input stage, unchecked.

    Shared by the Linen and NNX modules. Returns ``token_ids.shape + (D,)``.
    """
    return lookup(tok_VxD, token_ids) + lookup(pos_CxD, positions)


def _table(embed: nn.Embed) -> jax.Array:
    (table,) = embed.promote_dtype(embed.embedding, dtype=embed.dtype, inexact=False)
    return table


class InputEmbedding(nn.Module):
    """GPT-2's input stage: ``tok_emb(token_ids) + pos_emb(positions)``.

    The Flax port of the book's pair of ``torch.nn.Embedding`` layers (chapter 2,
    and ``GPTModel.tok_emb`` / ``pos_emb``). Parameters::

      {'params': {'tok_emb': {'embedding': (vocab_size, features)},
                  'pos_emb': {'embedding': (context_length, features)}}}

    Lookups are gathers (``jnp.take`` with an explicit mode), never one-hot
    matmuls, so float32 outputs equal torch's bit for bit.

    Example::

      >>> model = InputEmbedding(vocab_size=50257, context_length=4, features=256)
      >>> token_ids_BxT = jnp.zeros((8, 4), jnp.int32)
      >>> params = model.init(jax.random.key(0), token_ids_BxT)
      >>> apply = jax.jit(model.apply)
      >>> apply(params, token_ids_BxT).shape
      (8, 4, 256)

    Bad input: with concrete arrays (outside ``jit``) ids outside
    ``[0, vocab_size)`` and positions outside ``[0, context_length)`` raise
    ValueError naming the first bad entry. Inside ``jit`` only shapes are known
    (``T > context_length`` still raises at trace time); wrap the jitted function in
    ``jax.experimental.checkify.checkify(..., errors=checkify.index_checks)`` to
    have out-of-range ids reported there too (see README).

    Attributes:
      vocab_size: number of token ids, ``V``.
      context_length: number of positions, ``C``; the longest sequence it embeds.
      features: embedding width, ``D``.
      dtype: the dtype of the computation (default: that of the params).
      param_dtype: the dtype of the tables.
      embedding_init: initializer of both tables; N(0, 1) as in torch.
    """

    vocab_size: int = GPT2_VOCAB_SIZE
    context_length: int = 1024
    features: int = 256
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    embedding_init: Initializer = torch_embedding_init

    def setup(self):
        embed = dict(
            features=self.features,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            embedding_init=self.embedding_init,
        )
        self.tok_emb = nn.Embed(self.vocab_size, **embed)
        self.pos_emb = nn.Embed(self.context_length, **embed)

    def __call__(self, token_ids: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """Embeds a batch of token ids.

        Args:
          token_ids: int array ``(B, T)``, or ``(T,)`` for one sequence; values in
            ``[0, vocab_size)``; ``T <= context_length``.
          positions: int array ``(T,)`` or ``(B, T)`` in ``[0, context_length)``;
            defaults to ``arange(T)``. Use offsets for decoding or packed sequences.

        Returns:
          ``(B, T, features)`` (or ``(T, features)``) embeddings.
        """
        positions = check_inputs(
            token_ids, positions, vocab_size=self.vocab_size, context_length=self.context_length
        )
        return embed_sum(_table(self.tok_emb), _table(self.pos_emb), token_ids, positions)

    def attend(self, x: jax.Array) -> jax.Array:
        """Logits against the token table (GPT-2's tied output head): ``x @ tok_emb.T``.

        Args:
          x: ``(..., features)``.

        Returns:
          ``(..., vocab_size)``.
        """
        return self.tok_emb.attend(x)
