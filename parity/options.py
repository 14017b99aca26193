"""The parity report's command-line options; light to import (no jax, no torch)."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--backend`` and ``--json`` (``python -m parity`` and ``flax-embed parity``)."""
    parser.add_argument(
        "--backend",
        action="append",
        choices=("cpu", "gpu", "tpu"),
        help="a JAX backend to check (repeatable; default: every backend present)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
