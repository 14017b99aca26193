"""The pure functions both ``InputEmbedding`` modules (Linen and NNX) are built of.

Sharing them is what makes the two modules bit-identical: the same checks
(``_validation.check_inputs``), the same gathers (``lookup``, ``embed_sum``) and the
same tied head (``tied_logits``).
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from flax.typing import PrecisionLike

from flax_embed._validation import check_inputs, check_one_of, is_concrete
from flax_embed.positions import SINUSOIDAL_VARIANTS, sinusoidal_table

__all__ = [
    "POSITION_AXES",
    "POSITION_MODES",
    "TOKEN_AXES",
    "Dtype",
    "Initializer",
    "check_position_inputs",
    "check_position_mode",
    "EmbeddingConfig",
    "embed_inputs",
    "embed_sum",
    "embed_tokens",
    "fixed_sinusoidal_table",
    "lookup",
    "tied_logits",
    "torch_embedding_init",
]

Dtype = Any
Initializer = jax.nn.initializers.Initializer

torch_embedding_init: Initializer = jax.nn.initializers.normal(stddev=1.0)
"""N(0, 1), the distribution ``torch.nn.Embedding`` initialises its weight with."""

TOKEN_AXES = ("vocab", "embed")
"""Logical axis names of ``tok_emb``'s ``(V, D)`` table (``InputEmbedding(logical_axes=True)``)."""
POSITION_AXES = ("position", "embed")
"""Logical axis names of ``pos_emb``'s ``(C, D)`` table."""


def lookup(table_VxD: jax.Array, ids: jax.Array) -> jax.Array:
    """Rows ``ids`` of ``table_VxD``: a gather, shape ``ids.shape + (D,)``.

    The ids must already be checked (``_validation.check_inputs``); an id out of
    range that slips through under ``jit`` gives a NaN row, never a clamped or
    wrapped one, and ``checkify.index_checks`` reports it (a negative id as index
    ``V``, where it was sent). (An int64 id passed to ``jax.jit`` with x64 off is
    wrapped to int32 by JAX before it gets here: see ``_validation.as_token_ids``.)
    """
    if jnp.issubdtype(ids.dtype, jnp.signedinteger):
        # JAX indexing wraps negative ids as NumPy does (-1 is the last row); send them past
        # the end instead, so that they are out of range like any other bad id.
        ids = ids.astype(jnp.promote_types(ids.dtype, jnp.int32))
        ids = jnp.where(ids < 0, table_VxD.shape[0], ids)
    # No ids are negative now: skip jnp.take's own wrapping (a second select on the ids).
    return table_VxD.at[ids].get(mode="fill", fill_value=jnp.nan, wrap_negative_indices=False)


POSITION_MODES = ("learned", "sinusoidal", "none")
"""``InputEmbedding(position=...)``: a learned ``pos_emb`` table (GPT-2, the default), a
fixed ``positions.sinusoidal_table``, or none (positions handled in attention: RoPE, ALiBi)."""


def check_position_mode(position: str, sinusoidal_variant: str) -> None:
    """ValueError naming ``position`` / ``sinusoidal_variant`` for an unknown value."""
    check_one_of("position", position, POSITION_MODES)
    check_one_of("sinusoidal_variant", sinusoidal_variant, SINUSOIDAL_VARIANTS)


def check_position_inputs(
    token_ids, positions, *, position: str, vocab_size: int, context_length: int
) -> None:
    """``check_inputs`` for each mode: ``"none"`` takes no positions and no length limit."""
    if position != "none":
        check_inputs(token_ids, positions, vocab_size=vocab_size, context_length=context_length)
        return
    if positions is not None:
        raise ValueError("positions must be None when position='none' (no position embedding)")
    length = token_ids.shape[-1] if getattr(token_ids, "ndim", 0) else context_length
    check_inputs(token_ids, None, vocab_size=vocab_size, context_length=max(length, 1))


def embed_tokens(
    tok_VxD: jax.Array,
    token_ids: jax.Array,
    positions: jax.Array | None,
    *,
    position: str,
    context_length: int,
    sinusoidal_variant: str = "interleaved",
    pos_CxD: jax.Array | None = None,
) -> jax.Array:
    """The input stage for each ``position`` mode, unchecked (shared by Linen and NNX).

    ``"learned"``: ``embed_sum(tok_VxD, pos_CxD, ...)``, today's arithmetic;
    ``"sinusoidal"``: the same with ``sinusoidal_table(context_length, D)`` (in the
    token table's dtype) as ``pos_CxD``; ``"none"``: ``lookup(tok_VxD, token_ids)``.

    The sinusoidal table is built once, not on every call: with concrete tables (an
    eager call) it comes from ``fixed_sinusoidal_table``'s cache; under ``jit`` it is
    part of the traced computation, which is compiled once.
    """
    if position == "learned":
        if pos_CxD is None:
            raise ValueError("position='learned' needs pos_CxD")
        return embed_sum(tok_VxD, pos_CxD, token_ids, positions)
    if position == "none":
        return lookup(tok_VxD, token_ids)
    features, dtype = tok_VxD.shape[-1], jnp.dtype(tok_VxD.dtype)
    if is_concrete(tok_VxD):
        table = fixed_sinusoidal_table(context_length, features, sinusoidal_variant, dtype)
    else:
        table = sinusoidal_table(context_length, features, variant=sinusoidal_variant, dtype=dtype)
    return embed_sum(tok_VxD, table, token_ids, positions)


@functools.lru_cache(maxsize=2)
def fixed_sinusoidal_table(
    context_length: int, features: int, variant: str, dtype: jnp.dtype
) -> jax.Array:
    """``sinusoidal_table(context_length, features, ...)``, built once and kept: ``(C, D)``.

    What an eager ``InputEmbedding(position="sinusoidal")`` call adds, so that a
    module does not rebuild its table on every call (``context_length=131072,
    features=4096`` takes seconds). The same function computes it, so the bits are
    those of ``sinusoidal_table``. The two most recently used tables are kept (a
    Linen module and its NNX twin share one); ``fixed_sinusoidal_table.cache_clear()``
    frees them.
    """
    with jax.ensure_compile_time_eval():  # concrete even when called inside a trace
        return sinusoidal_table(context_length, features, variant=variant, dtype=dtype)


class EmbeddingConfig(Protocol):
    """The fields of an ``InputEmbedding`` (Linen or NNX) that ``embed_inputs`` reads."""

    vocab_size: int
    context_length: int
    position: str
    sinusoidal_variant: str


def embed_inputs(
    config: EmbeddingConfig,
    tok_VxD: jax.Array,
    pos_CxD: jax.Array | None,
    token_ids: jax.Array,
    positions: jax.Array | None,
) -> jax.Array:
    """``check_position_inputs`` then ``embed_tokens``: both modules' ``__call__`` before dropout.

    ``pos_CxD`` is the learned table (``position="learned"``), else unused.
    Returns ``token_ids.shape + (D,)``.
    """
    check_position_inputs(
        token_ids,
        positions,
        position=config.position,
        vocab_size=config.vocab_size,
        context_length=config.context_length,
    )
    return embed_tokens(
        tok_VxD,
        token_ids,
        positions,
        position=config.position,
        context_length=config.context_length,
        sinusoidal_variant=config.sinusoidal_variant,
        pos_CxD=pos_CxD,
    )


def embed_sum(
    tok_VxD: jax.Array,
    pos_CxD: jax.Array,
    token_ids: jax.Array,
    positions: jax.Array | None = None,
) -> jax.Array:
    """``tok_VxD[token_ids] + pos_CxD[positions]``: the whole input stage, unchecked.

    Shared by the Linen and NNX modules. Returns ``token_ids.shape + (D,)``.
    ``positions=None`` means ``arange(T)``, read as the slice ``pos_CxD[:T]`` (the
    same rows, so the same bits): it fuses with the token gather into one kernel,
    where a gather of ``arange(T)`` is a second kernel and buffer (benchmarks/).
    """
    if positions is None:
        return lookup(tok_VxD, token_ids) + pos_CxD[: token_ids.shape[-1]]
    return lookup(tok_VxD, token_ids) + lookup(pos_CxD, positions)


def tied_logits(
    x_xD: jax.Array,
    tok_VxD: jax.Array,
    *,
    dtype: Dtype | None = None,
    precision: PrecisionLike = jax.lax.Precision.HIGHEST,
) -> jax.Array:
    """GPT-2's tied output head: ``x_xD @ tok_VxD.T``, logits of shape ``(..., V)``.

    Shared by the Linen and NNX modules' ``attend``. Both operands are promoted to
    ``dtype`` (default: their common type), as ``nn.Embed.attend`` does. Unlike
    ``nn.Embed.attend``, the matmul's ``precision`` is explicit: ``HIGHEST`` by
    default, because the default precision of a float32 matmul on GPU (TF32) and
    TPU (bfloat16 passes) is not float32; on CPU the two are the same.
    """
    x_xD, tok_VxD = promote_dtype(x_xD, tok_VxD, dtype=dtype)
    return jnp.dot(x_xD, tok_VxD.T, precision=precision)
