"""The pure functions both ``InputEmbedding`` modules (Linen and NNX) are built of.

Sharing them is what makes the two modules bit-identical: the same checks
(``_validation.check_inputs``), the same gathers (``lookup``, ``embed_sum``) and the
same tied head (``tied_logits``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from flax.typing import PrecisionLike

__all__ = [
    "POSITION_AXES",
    "TOKEN_AXES",
    "Dtype",
    "Initializer",
    "embed_sum",
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
