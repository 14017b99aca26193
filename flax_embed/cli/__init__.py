"""The ``flax-embed`` command (also ``python -m flax_embed``): one module per subcommand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flax_embed.cli import embed, parity, tokenize
from flax_embed.cli._common import CLIError, read_error, read_text

__all__ = ["CLIError", "build_parser", "main", "read_error", "read_text"]


def build_parser() -> argparse.ArgumentParser:
    """The ``flax-embed`` argument parser, with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="flax-embed",
        description="GPT-2's input-embedding stage in JAX/Flax, with exact PyTorch parity.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (embed, parity, tokenize):
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``flax-embed``; returns the exit code (2 for a user error, printed as one line)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except CLIError as e:
        print(f"flax-embed {args.command}: error: {e}", file=sys.stderr)
        return 2
