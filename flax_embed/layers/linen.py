"""``InputEmbedding`` for Flax Linen: token embedding plus learned absolute position embedding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import PrecisionLike

from flax_embed._validation import check_module_options
from flax_embed.layers.common import (
    POSITION_AXES,
    TOKEN_AXES,
    Dtype,
    Initializer,
    check_position_mode,
    embed_inputs,
    tied_logits,
    torch_embedding_init,
)
from flax_embed.tokenizer import GPT2_VOCAB_SIZE

__all__ = ["InputEmbedding"]


def _table(embed: nn.Embed) -> jax.Array:
    (table,) = embed.promote_dtype(embed.embedding, dtype=embed.dtype, inexact=False)
    assert table is not None
    return table


class InputEmbedding(nn.Module):
    """GPT-2's input stage: ``tok_emb(token_ids) + pos_emb(positions)``.

    ``position="sinusoidal"`` adds a fixed ``positions.sinusoidal_table`` instead of
    the learned ``pos_emb`` (no parameter), ``position="none"`` embeds tokens alone
    (for RoPE or ALiBi in attention); ``"learned"`` is the default.

    The Flax port of the book's pair of ``torch.nn.Embedding`` layers (chapter 2,
    and ``GPTModel.tok_emb`` / ``pos_emb``). Parameters::

      {'params': {'tok_emb': {'embedding': (vocab_size, features)},
                  'pos_emb': {'embedding': (context_length, features)}}}

    Lookups are gathers (``.at[ids].get`` with an explicit mode), never one-hot
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
    have out-of-range ids reported there too (see docs/modules.md). Under ``vmap`` outside
    ``jit`` the ids are checked too, on a best-effort basis (see
    ``_validation._batched_value``); under ``jit`` an id out of range that slips
    through gives a NaN row, never another id's row.

    64-bit ids and ``jit``: with JAX's default ``jax_enable_x64=False``, ``jax.jit``
    narrows an int64 argument to int32 *at the call*, before this module sees it:
    an id of ``2**32 + 5`` arrives as ``5`` and embeds as id 5's row, with no NaN
    and no error (positions likewise). Nothing inside the module can tell. So pass
    int32 ids (``encode``, ``Batcher`` and the token-file readers never give
    anything else), or check other ids on the host first with
    ``flax_embed.as_token_ids(ids, vocab_size=...)``, which sees the 64-bit values.
    Outside ``jit`` 64-bit ids are checked as they are.

    Attributes:
      vocab_size: number of token ids, ``V``.
      context_length: number of positions, ``C``; the longest sequence it embeds.
      features: embedding width, ``D``.
      dtype: the dtype of the computation (default: that of the params); floating
        point (an integer dtype is refused: it would truncate the tables).
      param_dtype: the dtype of the tables; floating point.
      embedding_init: initializer of both tables; N(0, 1) as in torch.
      dropout_rate: embedding dropout after the sum (the book's ``drop_emb``);
        0.0, the default, applies none and leaves the outputs bit for bit unchanged.
      deterministic: whether dropout is off; when ``dropout_rate > 0`` it must be
        given here or to ``__call__`` (not both), as for ``nn.Dropout``. Dropout
        draws its mask from the ``'dropout'`` rng: ``apply(..., rngs={'dropout': key})``.
      precision: the precision of ``attend``'s matmul (lookups are gathers, exact);
        ``HIGHEST`` (true float32) by default, see ``tied_logits``.
      position: ``"learned"`` (a ``pos_emb`` parameter, GPT-2), ``"sinusoidal"`` (a
        fixed table, ``sinusoidal_variant``), or ``"none"`` (no position embedding:
        ``positions`` must be None and ``T`` is not limited by ``context_length``).
        Sinusoidal positions are checked exactly like learned ones.
      sinusoidal_variant: the ``positions.sinusoidal_table`` variant.
      logical_axes: whether to annotate the tables with logical axis names,
        ``TOKEN_AXES = ('vocab', 'embed')`` and ``POSITION_AXES = ('position',
        'embed')`` (``nn.with_logical_partitioning``), so they can be sharded on a
        mesh (``sharding.init_sharded``). ``init`` then returns
        ``nn.LogicallyPartitioned`` boxes instead of arrays: ``apply`` takes them as
        they are, ``nn.unbox(params)`` gives the plain arrays (for
        ``params_to_torch`` and the like). Off by default: plain arrays.
    """

    vocab_size: int = GPT2_VOCAB_SIZE
    context_length: int = 1024
    features: int = 256
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    embedding_init: Initializer = torch_embedding_init
    dropout_rate: float = 0.0
    deterministic: bool | None = None
    precision: PrecisionLike = jax.lax.Precision.HIGHEST
    logical_axes: bool = False
    position: str = "learned"
    sinusoidal_variant: str = "interleaved"

    def _init(self, axes: tuple[str, str]) -> Callable[..., Any]:
        if self.logical_axes:
            return nn.with_logical_partitioning(self.embedding_init, axes)
        return self.embedding_init

    def setup(self):
        check_module_options(
            self.vocab_size,
            self.context_length,
            self.features,
            self.dropout_rate,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        check_position_mode(self.position, self.sinusoidal_variant)
        embed: dict[str, Any] = dict(
            features=self.features, dtype=self.dtype, param_dtype=self.param_dtype
        )
        self.tok_emb = nn.Embed(self.vocab_size, embedding_init=self._init(TOKEN_AXES), **embed)
        if self.position == "learned":
            self.pos_emb = nn.Embed(
                self.context_length, embedding_init=self._init(POSITION_AXES), **embed
            )
        self.drop_emb = nn.Dropout(self.dropout_rate, deterministic=self.deterministic)

    def __call__(
        self,
        token_ids: jax.Array,
        positions: jax.Array | None = None,
        *,
        deterministic: bool | None = None,
    ) -> jax.Array:
        """Embeds a batch of token ids.

        Args:
          token_ids: int array ``(B, T)``, or ``(T,)`` for one sequence; values in
            ``[0, vocab_size)``; ``T <= context_length``.
          positions: int array ``(T,)`` or ``(B, T)`` in ``[0, context_length)``;
            defaults to ``arange(T)``. Use offsets for decoding or packed sequences.
          deterministic: True turns dropout off, False on; give it here or as the
            field, not both (``nn.merge_param``). Read only when ``dropout_rate > 0``.
            Under ``jit`` keep it static: ``jax.jit(model.apply,
            static_argnames="deterministic")``.

        Returns:
          ``(B, T, features)`` (or ``(T, features)``) embeddings.
        """
        pos_CxD = _table(self.pos_emb) if self.position == "learned" else None
        x = embed_inputs(self, _table(self.tok_emb), pos_CxD, token_ids, positions)
        if self.dropout_rate > 0:
            x = self.drop_emb(x, deterministic=deterministic)
        return x

    def attend(self, x: jax.Array) -> jax.Array:
        """Logits against the token table (GPT-2's tied output head): ``x @ tok_emb.T``.

        Args:
          x: ``(..., features)``.

        Returns:
          ``(..., vocab_size)``, computed at ``self.precision`` (default ``HIGHEST``).
        """
        return tied_logits(x, self.tok_emb.embedding, dtype=self.dtype, precision=self.precision)
