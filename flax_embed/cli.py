"""The ``flax-embed`` command (also ``python -m flax_embed``)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from flax_embed.atomic import atomic_open
from flax_embed.data import sample_text

__all__ = ["CLIError", "main", "read_error", "read_text"]

SAMPLE_TEXT = "sample.txt"


class CLIError(Exception):
    """A user error: printed as one line, exit code 2, no traceback."""


def read_error(path: str | os.PathLike[str], error: OSError) -> CLIError:
    """The one-line error for a file that cannot be read."""
    if isinstance(error, FileNotFoundError):
        return CLIError(f"{path}: no such file")
    if isinstance(error, IsADirectoryError):
        return CLIError(f"{path}: is a directory, not a text file")
    if isinstance(error, PermissionError):
        return CLIError(f"{path}: permission denied")
    return CLIError(f"{path}: cannot read ({error.strerror or error})")


def read_text(path: str | os.PathLike[str] | None) -> str:
    """The UTF-8 text of ``path``, or the bundled sample text when ``path`` is None."""
    if path is None:
        return sample_text()
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CLIError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except OSError as e:
        raise read_error(path, e) from None


def save_npy_atomic(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Writes ``array`` to ``path`` via a temporary file and a rename: never half a file."""
    try:
        with atomic_open(path) as f:
            np.save(f, array)
    except OSError as e:
        raise CLIError(f"{path}: cannot write ({e.strerror or e})") from None


def _cmd_embed(args: argparse.Namespace) -> int:
    import jax

    from flax_embed.batcher import create_dataloader
    from flax_embed.embedding import InputEmbedding
    from flax_embed.tokenizer import TokenizerUnavailableError

    text = read_text(args.file)
    context_length = args.max_length if args.context_length is None else args.context_length
    try:
        loader = create_dataloader(
            text,
            batch_size=args.batch_size,
            max_length=args.max_length,
            stride=args.stride,
            shuffle=False,
            drop_last=False,
        )
        model = InputEmbedding(context_length=context_length, features=args.features)
        inputs_BxT, _ = next(iter(loader))
        params = model.init(jax.random.key(args.seed), inputs_BxT)
        embeddings_BxTxD = np.asarray(jax.jit(model.apply)(params, inputs_BxT))
    except (ValueError, TokenizerUnavailableError) as e:
        raise CLIError(str(e)) from None

    torch_diff = _torch_difference(params, inputs_BxT, embeddings_BxTxD, context_length, args)
    if args.out:
        save_npy_atomic(args.out, embeddings_BxTxD)
    source = args.file or f"<bundled {SAMPLE_TEXT}>"
    if args.json:
        print(
            json.dumps(
                {
                    "file": source,
                    "num_tokens": int(loader.dataset.token_ids.shape[0]),
                    "num_batches": len(loader),
                    "token_ids": inputs_BxT.tolist(),
                    "token_ids_shape": list(inputs_BxT.shape),
                    "embeddings_shape": list(embeddings_BxTxD.shape),
                    "embeddings_dtype": str(embeddings_BxTxD.dtype),
                    "torch_max_abs_diff": torch_diff,
                    "out": args.out,
                }
            )
        )
    else:
        print(f"text: {source}, {loader.dataset.token_ids.shape[0]} tokens")
        print("Token IDs:")
        print(inputs_BxT)
        print(f"Inputs shape: {inputs_BxT.shape}")
        print(f"Input embeddings shape: {embeddings_BxTxD.shape}")
        if torch_diff is None:
            print("PyTorch not installed: parity not checked (pip install 'flax-embed[parity]')")
        else:
            print(f"max |JAX - PyTorch| with the same weights: {torch_diff}")
        if args.out:
            print(f"wrote {args.out}")
    return 0


def _torch_difference(params, inputs_BxT, embeddings_BxTxD, context_length, args) -> float | None:
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    from flax_embed.conversion import params_to_torch
    from parity.torch_reference import TorchInputEmbedding

    module = TorchInputEmbedding(context_length=context_length, emb_dim=args.features)
    module.load_state_dict(params_to_torch(params))
    with torch.no_grad():
        expected = module(torch.from_numpy(inputs_BxT).long()).numpy()
    return float(np.abs(expected - embeddings_BxTxD).max())


def _cmd_parity(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("torch") is None:
        raise CLIError("the parity report needs torch: pip install 'flax-embed[parity]'")
    from parity.report import run

    try:
        return run(args)
    except (ValueError, OSError) as e:
        raise CLIError(str(e)) from None


def _add_parity(commands) -> None:
    from parity.options import add_arguments

    parity = commands.add_parser(
        "parity",
        help="compare with the PyTorch reference: forward, conversion, gradients, AdamW",
        description="Runs the parity report (as python -m parity): a table of every check on "
        "every JAX backend present; exit code 1 when a check fails.",
    )
    add_arguments(parity)
    parity.set_defaults(run=_cmd_parity)


def _add_tokenize(commands) -> None:
    from flax_embed.tokenize_command import add_parser  # imports this module: not at the top

    add_parser(commands)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flax-embed",
        description="GPT-2's input-embedding stage in JAX/Flax, with exact PyTorch parity.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    embed = commands.add_parser(
        "embed",
        help="tokenize a text, take the first batch and embed it (the seed notebook end to end)",
        description="Tokenizes FILE (default: a bundled sample text), takes the first batch of the "
        "sliding-window loader, embeds it with the jit-compiled InputEmbedding and, when torch is "
        "installed, compares with the PyTorch version on the same weights.",
    )
    embed.add_argument("file", nargs="?", metavar="FILE", help="a UTF-8 text file")
    embed.add_argument("--batch-size", type=int, default=8, help="windows per batch (default 8)")
    embed.add_argument("--max-length", type=int, default=4, help="tokens per window (default 4)")
    embed.add_argument("--stride", type=int, default=4, help="tokens between windows (default 4)")
    embed.add_argument("--features", type=int, default=256, help="embedding width (default 256)")
    embed.add_argument(
        "--context-length",
        type=int,
        default=None,
        help="rows of the position table (default: --max-length, as in the seed)",
    )
    embed.add_argument("--seed", type=int, default=0, help="PRNG seed of the weights (default 0)")
    embed.add_argument("--out", metavar="FILE.npy", help="save the (B, T, D) embeddings here")
    embed.add_argument("--json", action="store_true", help="print one JSON object instead")
    embed.set_defaults(run=_cmd_embed)
    _add_parity(commands)
    _add_tokenize(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except CLIError as e:
        print(f"flax-embed {args.command}: error: {e}", file=sys.stderr)
        return 2
