"""Pinned behaviour differences: where torch, a raw Flax ``nn.Embed`` and ours differ.

Each row states what each framework does with one kind of bad or unusual ids, as
observed with the installed versions (verified for torch 2.13, flax 0.12, jax
0.10), and passes only while they still do it; a new lookup implementation, or a
new torch or Flax that changes behaviour, turns the row red. Ids are a real batch
of GPT-2 ids with one entry replaced.

The pinned outcomes are ``parity.pinned.PINNED``, a table with no heavy imports,
which the documentation renders as it is (``docs/hooks.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import torch

from flax_embed.layers.linen import InputEmbedding
from parity.common import device_kind, on_backend, text_batch, torch_device
from parity.pinned import PINNED
from parity.result import CheckResult

__all__ = ["PINNED", "behaviour_checks", "observe"]

VOCAB, FEATURES, SEQ_LEN = 50257, 8, 4


def observe(embed: Callable[[], np.ndarray], table_VxD: np.ndarray, ids: np.ndarray) -> str:
    """What ``embed()`` did with ``ids``, where entry ``[0, 1]`` is the special one.

    Returns the exception's class name, or for the special entry's output row:
    ``"NaN row"``, ``"row V-1"`` (a negative id wrapped around) or ``"rows"`` when
    every row equals ``table_VxD[ids]`` (the ids were valid), else ``"other"``.
    """
    try:
        out = np.asarray(embed())
    except Exception as e:
        return type(e).__name__
    special = out[0, 1]
    if np.isnan(special).all():
        return "NaN row"
    if np.array_equal(special, table_VxD[-1]) and int(ids[0, 1]) < 0:
        return "row V-1"
    valid = ids.min() >= 0 and ids.max() < table_VxD.shape[0]
    if valid and np.array_equal(out, table_VxD[ids.astype(np.int64)]):
        return "rows"
    return "other"


def _pinned_row(name: str, ids: np.ndarray, backend: str) -> CheckResult:
    table_VxD = np.random.default_rng(0).standard_normal((VOCAB, FEATURES), np.float32)
    # ``ours`` adds position rows; a zero position table makes its output the token rows.
    pos_CxD = np.zeros((SEQ_LEN, FEATURES), np.float32)
    ours = InputEmbedding(vocab_size=VOCAB, context_length=SEQ_LEN, features=FEATURES)
    ours_params = {
        "params": {"tok_emb": {"embedding": table_VxD}, "pos_emb": {"embedding": pos_CxD}}
    }
    raw = nn.Embed(VOCAB, FEATURES)
    raw_params = {"params": {"embedding": table_VxD}}
    device = torch_device(backend)
    torch_embed = torch.nn.Embedding.from_pretrained(torch.from_numpy(table_VxD)).to(device)
    torch_ids = torch.from_numpy(ids)  # the same dtype: int32 (accepted) or uint16

    def run_torch():
        with torch.no_grad():
            return torch_embed(torch_ids.to(device)).cpu().numpy()

    runs = {
        "torch": run_torch,
        "nn.Embed": lambda: raw.apply(raw_params, jnp.asarray(ids)),
        "nn.Embed jit": lambda: jax.jit(raw.apply)(raw_params, jnp.asarray(ids)),
        "ours": lambda: ours.apply(ours_params, ids),
        "ours jit": lambda: jax.jit(ours.apply)(ours_params, ids),
    }
    expected = PINNED[name]
    with on_backend(backend):
        seen = {who: observe(runs[who], table_VxD, ids) for who in expected}
    held = seen == expected
    note = "; ".join(
        f"{who}: {seen[who]}" + ("" if seen[who] == expected[who] else f" (pinned {expected[who]})")
        for who in expected
    )
    return CheckResult(
        check=f"pinned: {name}",
        backend=backend,
        device_kind=device_kind(backend),
        dtype=str(ids.dtype),
        shape=tuple(ids.shape),
        max_abs_diff=float("nan"),
        tolerance=0.0,
        bit_identical=False,
        note=note,
        pinned=held,
    )


def pinned_ids(name: str) -> np.ndarray:
    """A real ``(8, 4)`` batch of GPT-2 ids made into the kind ``name``."""
    ids_BxT, _ = text_batch(8, SEQ_LEN)  # int32, as the loader gives them
    ids_BxT = ids_BxT.copy()
    if name == "id = vocab_size":
        ids_BxT[0, 1] = VOCAB
    elif name == "id = -1":
        ids_BxT[0, 1] = -1
    elif name == "uint16 ids":
        return ids_BxT.astype(np.uint16)
    return ids_BxT


def behaviour_checks(backend: str) -> list[CheckResult]:
    """One pinned row per kind of ids."""
    return [_pinned_row(name, pinned_ids(name), backend) for name in PINNED]
