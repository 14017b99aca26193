"""Weights between PyTorch state dicts and ``InputEmbedding`` params."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["params_from_torch", "params_to_torch"]

_BOOK_KEYS = {"tok_emb": "tok_emb.weight", "pos_emb": "pos_emb.weight"}


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; torch itself is never imported here
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def params_from_torch(state_dict: Mapping[str, Any]) -> dict:
    """``{'params': ...}`` for ``InputEmbedding`` from a book-style state dict.

    Args:
      state_dict: holds ``tok_emb.weight`` ``(V, D)`` and ``pos_emb.weight``
        ``(C, D)``, as torch tensors or NumPy arrays.
    """
    params = {}
    for module, key in _BOOK_KEYS.items():
        if key not in state_dict:
            raise ValueError(f"state dict has no {key!r}; keys: {sorted(state_dict)}")
        params[module] = {"embedding": _to_numpy(state_dict[key]).copy()}
    return {"params": params}


def params_to_torch(params: Mapping[str, Any]) -> dict:
    """A book-style torch state dict (``tok_emb.weight``, ``pos_emb.weight``)."""
    import torch

    tree = params.get("params", params)
    return {
        key: torch.from_numpy(np.array(tree[module]["embedding"]))
        for module, key in _BOOK_KEYS.items()
    }
