"""The pinned behaviour differences as data: what each framework does with unusual ids.

``parity.behaviour`` checks every entry against the installed torch, Flax and
flax-embed (the report's ``pinned:`` rows); the documentation renders this table
as it is (``docs/hooks.py``), so the two can never disagree. Light to import: no
jax, no torch.
"""

from __future__ import annotations

__all__ = ["FRAMEWORKS", "OUTCOMES", "PINNED", "VERIFIED_WITH"]

VERIFIED_WITH = "torch 2.13, flax 0.12.8, jax 0.10.2"
"""The versions the outcomes were last confirmed with (the parity report checks them anew)."""

FRAMEWORKS: dict[str, str] = {
    "torch": "`torch.nn.Embedding`",
    "nn.Embed": "Flax `nn.Embed`",
    "nn.Embed jit": "Flax `nn.Embed` under `jit`",
    "ours": "`InputEmbedding`",
    "ours jit": "`InputEmbedding` under `jit`",
}
"""Who is observed (the keys of each ``PINNED`` entry) → how the documentation names it."""

PINNED: dict[str, dict[str, str]] = {
    "id = vocab_size": {
        "torch": "IndexError",
        "nn.Embed": "NaN row",
        "nn.Embed jit": "NaN row",
        "ours": "ValueError",
        "ours jit": "NaN row",  # unchecked under jit (see InputEmbedding: checkify)
    },
    "id = -1": {
        "torch": "IndexError",
        "nn.Embed": "row V-1",
        "nn.Embed jit": "row V-1",
        "ours": "ValueError",
        "ours jit": "NaN row",  # negative ids are sent out of range, never wrapped
    },
    "uint16 ids": {
        "torch": "RuntimeError",
        "nn.Embed": "rows",
        "ours": "rows",
        "ours jit": "rows",
    },
}
"""Kind of ids → framework → the observed outcome (``parity.behaviour.observe``)."""

OUTCOMES: dict[str, str] = {
    "NaN row": "a NaN row",
    "row V-1": "row V-1 (wraps around)",
    "rows": "accepted: the same rows as int32 ids",
}
"""How the documentation words an outcome; exception names are shown as they are."""
