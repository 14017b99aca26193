"""``flax-embed embed [FILE]``: the book's chapter-2 *Positional Embeddings* notebook end to end."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from flax_embed._io import atomic_open
from flax_embed.cli._common import (
    INT32_MAX,
    SAMPLE_TEXT,
    CLIError,
    check_memory,
    int_option,
    read_text,
    write_error,
)

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Adds ``embed`` to the ``flax-embed`` subcommands."""
    embed = commands.add_parser(
        "embed",
        help="tokenize a text, take the first batch and embed it: the chapter-2 notebook "
        "'Positional Embeddings' of Build a Large Language Model From Scratch, end to end",
        description="Tokenizes FILE (default: a bundled sample text), takes the first batch of the "
        "sliding-window loader, embeds it with the jit-compiled InputEmbedding and, when torch is "
        "installed, compares with the PyTorch version on the same weights.",
    )
    embed.add_argument("file", nargs="?", metavar="FILE", help="a UTF-8 text file")
    size = int_option(1, INT32_MAX)
    embed.add_argument("--batch-size", type=size, default=8, help="windows per batch (default 8)")
    embed.add_argument("--max-length", type=size, default=4, help="tokens per window (default 4)")
    embed.add_argument("--stride", type=size, default=4, help="tokens between windows (default 4)")
    embed.add_argument("--features", type=size, default=256, help="embedding width (default 256)")
    embed.add_argument(
        "--context-length",
        type=size,
        default=None,
        help="rows of the position table (default: --max-length, as in the book's notebook)",
    )
    embed.add_argument(
        "--seed",
        type=int_option(-(2**63), 2**63 - 1),
        default=0,
        help="PRNG seed of the weights, a 64-bit integer (default 0)",
    )
    embed.add_argument("--out", metavar="FILE.npy", help="save the (B, T, D) embeddings here")
    embed.add_argument("--json", action="store_true", help="print one JSON object instead")
    embed.set_defaults(run=run)


class _Writer:
    """A file seen only through ``write``."""

    def __init__(self, file):
        self.write = file.write


def save_npy_atomic(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Writes ``array`` to ``path`` via a temporary file and a rename: never half a file."""
    try:
        with atomic_open(path) as f:
            # Through f.write (not ndarray.tofile, which np.save uses on real files and
            # whose errors lose their errno): a full disk reads "No space left on device".
            np.save(_Writer(f), array)
    except OSError as e:
        raise write_error(path, e) from None


def run(args: argparse.Namespace) -> int:
    """Runs ``flax-embed embed``."""
    import jax

    from flax_embed.cli.parity import torch_difference
    from flax_embed.data.batcher import create_dataloader
    from flax_embed.layers.linen import InputEmbedding
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
        # float32 tables and output; checked before JAX allocates (it would fail with a
        # traceback, or the kernel would kill the process).
        rows = model.vocab_size + context_length
        check_memory(
            f"the tables ({rows} x {args.features} float32) and the embeddings",
            4 * args.features * (rows + inputs_BxT.size),
        )
        params = model.init(jax.random.key(args.seed), inputs_BxT)
        embeddings_BxTxD = np.asarray(jax.jit(model.apply)(params, inputs_BxT))
    except (ValueError, TokenizerUnavailableError) as e:
        raise CLIError(str(e)) from None
    except (MemoryError, jax.errors.JaxRuntimeError) as e:
        # Passed check_memory, yet too large once allocated (other processes, overheads).
        if not isinstance(e, MemoryError) and "RESOURCE_EXHAUSTED" not in str(e):
            raise
        raise CLIError(
            f"out of memory for {args.features}-wide tables ({str(e).splitlines()[0][:200]})"
        ) from None

    torch_diff = torch_difference(params, inputs_BxT, embeddings_BxTxD)
    if args.out:
        save_npy_atomic(args.out, embeddings_BxTxD)
    source = args.file or f"<bundled {SAMPLE_TEXT}>"
    num_tokens = loader.dataset.token_ids.shape[0]  # type: ignore[attr-defined]
    if args.json:
        print(
            json.dumps(
                {
                    "file": source,
                    "num_tokens": int(num_tokens),
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
        print(f"text: {source}, {num_tokens} tokens")
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
