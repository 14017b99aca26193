"""``flax-embed parity``: the parity report (``python -m parity``), and the torch side of ``embed``.

The only module of ``flax_embed`` that imports the top-level ``parity`` package, and
only inside its functions: ``parity`` depends on ``flax_embed``, never the reverse
(``lint-imports`` checks it).
"""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

import numpy as np

from flax_embed.cli._common import CLIError

__all__ = ["add_parser", "run", "torch_difference"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Adds ``parity`` to the ``flax-embed`` subcommands."""
    from parity.options import add_arguments

    parity = commands.add_parser(
        "parity",
        help="compare with the PyTorch reference: forward, conversion, gradients, AdamW",
        description="Runs the parity report (as python -m parity): a table of every check on "
        "every JAX backend present; exit code 1 when a check fails.",
    )
    add_arguments(parity)
    parity.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``flax-embed parity``."""
    if importlib.util.find_spec("torch") is None:
        raise CLIError("the parity report needs torch: pip install 'flax-embed[parity]'")
    from parity.report import run as run_report

    try:
        return run_report(args)
    except (ValueError, OSError) as e:
        raise CLIError(str(e)) from None


def torch_difference(
    params: Any, inputs_BxT: np.ndarray, embeddings_BxTxD: np.ndarray
) -> float | None:
    """max |torch - ``embeddings_BxTxD``| for the book's PyTorch module on ``params``.

    None when torch is not installed.
    """
    if importlib.util.find_spec("torch") is None:
        return None
    from parity.torch_reference import torch_embed

    expected = torch_embed(params, inputs_BxT)
    return float(np.abs(expected - embeddings_BxTxD).max())
