"""Writes docs/figures/rope_angle_error.png: RoPE angle error against position.

    PYTHONPATH=. python docs/positions_figures.py

For Llama's default frequencies (head_dim 128, θ = 500,000), the angle ``p·ω_i`` is
computed as each framework computes it in float32 and in bfloat16 (positions and
frequencies cast to the dtype, then multiplied), and compared with the exact angle
(float64 from the float64 frequencies). Plotted: the largest error over the 64
frequencies, per position, for JAX and PyTorch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "figures" / "rope_angle_error.png"


def angle_errors(positions: np.ndarray, head_dim: int = 128, base: float = 500000.0):
    """``{label: max_i |θ(p) - p·ω_i|}`` for JAX/torch in float32/bfloat16."""
    inv64 = 1.0 / base ** (np.arange(0, head_dim, 2) / head_dim)
    exact = positions.astype(np.float64)[:, None] * inv64
    errors = {}
    for name, jdt, tdt in (
        ("float32", jnp.float32, torch.float32),
        ("bfloat16", jnp.bfloat16, torch.bfloat16),
    ):
        inv32 = inv64.astype(np.float32)
        j = jnp.asarray(positions).astype(jdt)[:, None] * jnp.asarray(inv32).astype(jdt)
        t = torch.from_numpy(positions).to(tdt)[:, None] * torch.from_numpy(inv32).to(tdt)
        errors[f"JAX {name}"] = np.abs(np.asarray(j.astype(jnp.float32), np.float64) - exact)
        errors[f"PyTorch {name}"] = np.abs(t.float().numpy().astype(np.float64) - exact)
    return {k: v.max(axis=1) for k, v in errors.items()}


def main() -> int:
    positions = np.unique(np.geomspace(1, 131072, 400).astype(np.int64)) - 1
    errors = angle_errors(positions)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    styles = {
        "JAX float32": ("tab:blue", "-"),
        "PyTorch float32": ("tab:cyan", "--"),
        "JAX bfloat16": ("tab:red", "-"),
        "PyTorch bfloat16": ("tab:orange", "--"),
    }
    for label, err in errors.items():
        color, ls = styles[label]
        ax.plot(positions[1:], np.maximum(err[1:], 1e-12), ls, color=color, label=label)
    ax.axhline(np.pi, color="k", lw=0.8, ls=":")
    ax.text(2, np.pi * 1.3, "π: the angle is meaningless", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("position p")
    ax.set_ylabel("max over frequencies of |θ - p·ω| (radians)")
    ax.set_title("RoPE angle error, θ = 500,000 (Llama 3), head_dim 128, unscaled")
    ax.legend()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    for label, err in errors.items():
        print(f"{label:17s} max angle error at p = 131,071: {err[-1]:.3g} rad")
    return 0


if __name__ == "__main__":
    sys.exit(main())
