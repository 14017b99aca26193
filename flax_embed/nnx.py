"""``InputEmbedding`` for Flax NNX, and its state to and from the Linen params.

The NNX twin of ``flax_embed.layers.linen.InputEmbedding``: the same arguments (plus
``rngs``), the same submodule names, the same checks and the same arithmetic (both
call ``_validation.check_inputs``, ``common.embed_sum`` and
``common.tied_logits``), so with the same tables the two give bit-identical
outputs. ``params_to_nnx`` / ``params_from_nnx`` move the tables between them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, traverse_util
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

__all__ = ["InputEmbedding", "params_from_nnx", "params_to_nnx"]


def _axes(logical_axes: bool, names: tuple[str, str]) -> dict:
    if not logical_axes:
        return {}
    return {"embedding_metadata": {"out_sharding": names, "eager_sharding": False}}


def _table(embed: nnx.Embed) -> jax.Array:
    (table,) = embed.promote_dtype((embed.embedding[...],), dtype=embed.dtype, inexact=False)
    return table


class InputEmbedding(nnx.Module):
    """GPT-2's input stage in Flax NNX: ``tok_emb(token_ids) + pos_emb(positions)``.

    Holds two ``nnx.Embed`` named ``tok_emb`` (``(vocab_size, features)``) and
    ``pos_emb`` (``(context_length, features)``), and an ``nnx.Dropout`` named
    ``drop_emb``, as in the book's GPTModel.

    Example::

      >>> from flax import nnx
      >>> model = InputEmbedding(vocab_size=50257, context_length=4, features=256,
      ...                        rngs=nnx.Rngs(0))
      >>> token_ids_BxT = jnp.zeros((8, 4), jnp.int32)
      >>> nnx.jit(lambda m, ids: m(ids))(model, token_ids_BxT).shape
      (8, 4, 256)

    With plain ``jax.jit``, split the module into a static graph and a state::

      >>> graphdef, state = nnx.split(model)
      >>> embed = jax.jit(lambda state, ids: nnx.merge(graphdef, state)(ids))
      >>> embed(state, token_ids_BxT).shape
      (8, 4, 256)

    Bad input raises exactly as in the Linen module (``validation.check_inputs``).

    Args:
      vocab_size: number of token ids, ``V``.
      context_length: number of positions, ``C``; the longest sequence it embeds.
      features: embedding width, ``D``.
      dtype: the dtype of the computation (default: that of the params).
      param_dtype: the dtype of the tables.
      embedding_init: initializer of both tables; N(0, 1) as in torch.
      dropout_rate: embedding dropout after the sum (the book's ``drop_emb``);
        0.0, the default, applies none and leaves the outputs bit for bit unchanged.
      deterministic: whether dropout is off. False by default, as for
        ``nnx.Dropout``: dropout is on when ``dropout_rate > 0`` until
        ``model.eval()`` (or ``deterministic=True`` here or in ``__call__``).
      precision: the precision of ``attend``'s matmul (lookups are gathers, exact);
        ``HIGHEST`` (true float32) by default, see ``embedding.tied_logits``.
      logical_axes: whether to annotate the tables with the logical axis names
        ``TOKEN_AXES`` / ``POSITION_AXES`` (Param metadata ``out_sharding``, with
        ``eager_sharding=False``: annotated, not sharded at creation, so no mesh
        is needed). Under ``nn.logical_axis_rules(rules)``,
        ``nnx.get_partition_spec(nnx.state(model))`` then gives their mesh layout.
      position: ``"learned"`` (``pos_emb``), ``"sinusoidal"`` (a fixed table, no
        parameter) or ``"none"``, as in the Linen module.
      sinusoidal_variant: the ``positions.sinusoidal_table`` variant.
      rngs: ``params`` draws the tables; ``dropout`` (or ``default``) the masks.
    """

    def __init__(
        self,
        vocab_size: int = GPT2_VOCAB_SIZE,
        context_length: int = 1024,
        features: int = 256,
        *,
        dtype: Dtype | None = None,
        param_dtype: Dtype = jnp.float32,
        embedding_init: Initializer = torch_embedding_init,
        dropout_rate: float = 0.0,
        deterministic: bool | None = False,
        precision: PrecisionLike = jax.lax.Precision.HIGHEST,
        logical_axes: bool = False,
        position: str = "learned",
        sinusoidal_variant: str = "interleaved",
        rngs: nnx.Rngs,
    ):
        check_module_options(
            vocab_size, context_length, features, dropout_rate, dtype=dtype, param_dtype=param_dtype
        )
        check_position_mode(position, sinusoidal_variant)
        self.position = position
        self.sinusoidal_variant = sinusoidal_variant
        self.vocab_size = vocab_size
        self.context_length = context_length
        self.features = features
        self.dtype = dtype
        self.dropout_rate = dropout_rate
        self.precision = precision
        embed = dict(
            features=features,
            dtype=dtype,
            param_dtype=param_dtype,
            embedding_init=embedding_init,
            rngs=rngs,
        )
        self.tok_emb = nnx.Embed(vocab_size, **embed, **_axes(logical_axes, TOKEN_AXES))
        if position == "learned":
            self.pos_emb = nnx.Embed(context_length, **embed, **_axes(logical_axes, POSITION_AXES))
        self.drop_emb = nnx.Dropout(
            dropout_rate,
            deterministic=deterministic,
            rngs=rngs if dropout_rate > 0 else None,  # no rng state when there is no dropout
        )

    def __call__(
        self,
        token_ids: jax.Array,
        positions: jax.Array | None = None,
        *,
        deterministic: bool | None = None,
        rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None,
    ) -> jax.Array:
        """Embeds a batch of token ids.

        Args:
          token_ids: int array ``(B, T)``, or ``(T,)`` for one sequence; values in
            ``[0, vocab_size)``; ``T <= context_length``.
          positions: int array ``(T,)`` or ``(B, T)`` in ``[0, context_length)``;
            defaults to ``arange(T)``. Use offsets for decoding or packed sequences.
          deterministic: overrides the module's flag for this call.
          rngs: a key or stream for this call's dropout mask, instead of the
            module's own stream (e.g. a key passed through plain ``jax.jit``).

        Returns:
          ``(B, T, features)`` (or ``(T, features)``) embeddings.
        """
        pos_CxD = _table(self.pos_emb) if self.position == "learned" else None
        x = embed_inputs(self, _table(self.tok_emb), pos_CxD, token_ids, positions)
        if self.dropout_rate > 0:
            x = self.drop_emb(x, deterministic=deterministic, rngs=rngs)
        return x

    def attend(self, x: jax.Array) -> jax.Array:
        """Logits against the token table (GPT-2's tied output head): ``x @ tok_emb.T``.

        Args:
          x: ``(..., features)``.

        Returns:
          ``(..., vocab_size)``, computed at ``self.precision`` (default ``HIGHEST``).
        """
        return tied_logits(
            x, self.tok_emb.embedding[...], dtype=self.dtype, precision=self.precision
        )


def params_from_nnx(model: InputEmbedding) -> dict:
    """The Linen params of ``model``'s tables: ``{'params': {'tok_emb': {'embedding': ...}, ...}}``.

    The arrays themselves (no copy), taken with ``nnx.state(model, nnx.Param)``;
    ``flax_embed.InputEmbedding(...).apply(params, ids)`` then equals ``model(ids)``
    bit for bit, and ``params_to_torch`` takes them to PyTorch.
    """
    return {"params": nnx.to_pure_dict(nnx.state(model, nnx.Param))}


def params_to_nnx(params: Mapping[str, Any], model: InputEmbedding) -> InputEmbedding:
    """Loads Linen params into ``model`` in place (``nnx.update``); returns ``model``.

    Args:
      params: ``{'params': {'tok_emb': {'embedding': (V, D)}, 'pos_emb': {...}}}``
        as ``InputEmbedding.init`` returns it (boxed partitioning metadata is
        dropped), or the inner dict; NumPy or JAX arrays.
      model: an NNX ``InputEmbedding`` of the same configuration; its tables are
        replaced, its other state (the dropout rng) is kept.

    Raises:
      ValueError: a table is missing, an unexpected one is present, or a table's
        shape or dtype differs from the module's (nothing is cast).
    """
    tree = nn.meta.unbox(params.get("params", params))
    state = nnx.state(model, nnx.Param)
    expected = {"/".join(map(str, path)): leaf for path, leaf in nnx.to_flat_state(state)}
    given = traverse_util.flatten_dict(tree, sep="/")
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"params do not match the NNX module: missing {missing}, unexpected {unexpected}"
        )
    values = {}
    for key, param in expected.items():
        value: Any = given[key]
        shape, dtype = tuple(np.shape(value)), np.dtype(value.dtype)
        want_shape, want_dtype = tuple(param.shape), np.dtype(param.dtype)
        if shape != want_shape:
            raise ValueError(f"params[{key!r}] has shape {shape}, the module's is {want_shape}")
        if dtype != want_dtype:
            raise ValueError(f"params[{key!r}] has dtype {dtype}, the module's is {want_dtype}")
        values[key] = jnp.asarray(value)
    nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(values, sep="/"))
    nnx.update(model, state)
    return model
