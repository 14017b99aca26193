"""Attention masks for packed rows: attend within a document only, never to padding."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["segment_mask"]


def segment_mask(
    q_segment_ids: jax.Array, kv_segment_ids: jax.Array | None = None, *, causal: bool = True
) -> jax.Array:
    """The boolean attention mask of packed rows, ``(B, 1, Tq, Tk)`` (True: attend).

    Query ``q`` may attend key ``k`` when both belong to the same segment (document
    piece), that segment is not padding (segment id 0 is never attended, nor does a
    padding query attend anything) and, with ``causal=True``, ``k <= q``. A padding
    query's row is all False: give its scores a large negative value (not ``-inf``)
    or ignore its output, as its targets are padding too.

    Example::

      >>> seg = jnp.array([[1, 1, 2, 0]])
      >>> segment_mask(seg)[0, 0].astype(int).tolist()
      [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]

    Args:
      q_segment_ids: ``(B, Tq)`` integer segment ids (``inputs_segment_ids``).
      kv_segment_ids: ``(B, Tk)``; default ``q_segment_ids``.
      causal: also mask future keys (key index > query index; with ``Tq != Tk`` the
        queries are the last ``Tq`` of the keys' positions).

    Returns:
      ``(B, 1, Tq, Tk)`` bool, broadcasting over heads.
    """
    q_BxT = jnp.asarray(q_segment_ids)
    kv_BxS = q_BxT if kv_segment_ids is None else jnp.asarray(kv_segment_ids)
    if q_BxT.ndim != 2 or kv_BxS.ndim != 2 or q_BxT.shape[0] != kv_BxS.shape[0]:
        raise ValueError(
            "q_segment_ids and kv_segment_ids must have shapes (B, Tq) and (B, Tk), got "
            f"{tuple(q_BxT.shape)} and {tuple(kv_BxS.shape)}"
        )
    same = q_BxT[:, :, None] == kv_BxS[:, None, :]
    mask = same & (q_BxT[:, :, None] != 0) & (kv_BxS[:, None, :] != 0)
    if causal:
        tq, tk = q_BxT.shape[1], kv_BxS.shape[1]
        q_pos = jnp.arange(tq)[:, None] + (tk - tq)
        mask = mask & (jnp.arange(tk)[None, :] <= q_pos)
    return mask[:, None, :, :]
