"""``flax-embed tokenize CORPUS... -o tokens.npy``: text files to one token file, on every core.

The files are read in blocks and streamed through ``iter_encode_parallel`` into a
``TokenFileWriter``, so neither the corpus nor its ids need to fit in memory, and
the ids equal ``encode("<|endoftext|>".join(texts))`` (``"".join`` with ``--no-eot``),
where ``texts`` are the files as ``cli._common.read_text`` reads them (UTF-8, universal newlines).
"""

from __future__ import annotations

import argparse
import codecs
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from flax_embed.cli._common import CLIError, int_option, read_error, write_error
from flax_embed.data.parallel_tokenize import default_workers, iter_encode_parallel
from flax_embed.data.token_files import TokenFileWriter
from flax_embed.tokenizer import ENDOFTEXT, TokenizerUnavailableError

__all__ = ["BLOCK_BYTES", "MAX_WORKERS", "PROGRESS_MIN_BYTES", "add_parser", "run"]

BLOCK_BYTES = 16 << 20
"""Bytes of text read at a time."""
PROGRESS_MIN_BYTES = 4 << 20
"""Inputs of at least this many bytes in all get a progress bar (on stderr)."""
MAX_WORKERS = 1024
"""The most threads ``--workers`` takes."""


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Adds ``tokenize`` to the ``flax-embed`` subcommands."""
    tokenize = commands.add_parser(
        "tokenize",
        help="tokenize text files into one GPT-2 token file (.npy, or .bin + .bin.json)",
        description="Tokenizes the UTF-8 text files CORPUS... with GPT-2 BPE on every core and "
        "writes their ids, in order, to one token file: uint16 ids as .npy, or as raw .bin with "
        "a JSON sidecar (.bin.json). Documents are separated by <|endoftext|> (id 50256). The "
        "write is atomic: on any error the output is left as it was.",
    )
    tokenize.add_argument("corpus", nargs="+", metavar="CORPUS", help="UTF-8 text files")
    tokenize.add_argument(
        "-o", "--out", required=True, metavar="TOKENS", help="the token file: *.npy or *.bin"
    )
    tokenize.add_argument(
        "--workers",
        type=int_option(1, MAX_WORKERS),
        default=None,
        help=f"threads, 1 to {MAX_WORKERS} (default: the number of cores)",
    )
    tokenize.add_argument(
        "--no-eot",
        dest="eot",
        action="store_false",
        help="concatenate the documents without <|endoftext|> between them",
    )
    tokenize.set_defaults(run=run)


def _check_readable(path: str) -> int:
    """The size of ``path`` in bytes; a CLIError (``read_error``) if it is unreadable."""
    try:
        with open(path, "rb") as f:
            return os.fstat(f.fileno()).st_size
    except OSError as e:
        raise read_error(path, e) from None


def _text_blocks(path: str, progress: tqdm) -> Iterator[str]:
    """The text of ``path`` in blocks: UTF-8, newlines translated as ``read_text`` does."""
    decoder = io.IncrementalNewlineDecoder(codecs.getincrementaldecoder("utf-8")(), translate=True)
    offset = 0  # bytes of the file given to the decoder so far
    try:
        with open(path, "rb") as f:
            while block := f.read(BLOCK_BYTES):
                pending = len(decoder.getstate()[0])
                try:
                    yield decoder.decode(block)
                except UnicodeDecodeError as e:
                    byte = offset - pending + e.start
                    raise CLIError(f"{path}: not UTF-8 text (byte {byte}: {e.reason})") from None
                offset += len(block)
                progress.update(len(block))
            try:
                yield decoder.decode(b"", final=True)
            except UnicodeDecodeError as e:
                byte = offset - len(e.object) + e.start
                raise CLIError(f"{path}: not UTF-8 text (byte {byte}: {e.reason})") from None
    except OSError as e:
        raise read_error(path, e) from None


def run(args: argparse.Namespace) -> int:
    """Runs ``flax-embed tokenize``."""
    out = Path(args.out)
    if out.suffix not in (".npy", ".bin"):
        raise CLIError(f"{out}: the output must end in .npy or .bin")
    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers must be at least 1, got {args.workers}")
    workers = args.workers or default_workers()
    total = sum(_check_readable(path) for path in args.corpus)

    def pieces(progress: tqdm) -> Iterator[str]:
        for i, path in enumerate(args.corpus):
            if i and args.eot:
                yield ENDOFTEXT
            yield from _text_blocks(path, progress)

    progress = tqdm(total=total, unit="B", unit_scale=True, desc="tokenize", file=sys.stderr,
                    disable=total < PROGRESS_MIN_BYTES)  # fmt: skip
    try:
        # Made inside the `with`: an interrupt right after it is made still removes it.
        with progress, TokenFileWriter(out) as writer:
            for ids_N in iter_encode_parallel(pieces(progress), workers=workers):
                writer.write(ids_N)
    except TokenizerUnavailableError as e:
        raise CLIError(str(e)) from None
    except OSError as e:
        raise write_error(out, e) from None
    files = f"{len(args.corpus)} file{'s' if len(args.corpus) > 1 else ''}"
    print(f"wrote {out}: {writer.count} tokens ({writer.dtype.name}) from {files}")
    return 0
