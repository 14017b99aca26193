"""``flax-embed tokenize CORPUS... -o tokens.npy``: a corpus to token files, on every core.

Inputs are text, JSON Lines (``.jsonl``/``.json``, also ``.gz``/``.zst``), Parquet, a
Hugging Face ``save_to_disk`` folder, folders and globs (``data.corpus``). The
documents are streamed through ``iter_encode_parallel``, so neither the corpus nor
its ids need to fit in memory, and the ids equal ``encode("<|endoftext|>".join(documents))``
(``"".join`` with ``--no-eot``; with ``--tokenizer SPEC``, that tokenizer's encoding of
the documents joined by its separator, ``tokenizer.load_tokenizer``); a text file is one
document, read as ``cli._common.read_text`` reads it (UTF-8, universal newlines).

Both outputs are one job (``data.shards``): ``-o TOKENS.npy`` / ``-o TOKENS.bin`` writes
it as one token file (``tokenize_file``); ``-o DIR/`` (or ``--shard-tokens N``) as shards
and a manifest (``tokenize_corpus``), locally or on Ray with ``--ray``
(``data.ray_tokenize``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flax_embed.cli._common import CLIError, int_option, write_error
from flax_embed.data.corpus import DEFAULT_FIELD, CorpusError
from flax_embed.data.parallel_tokenize import WorkerDiedError, default_workers
from flax_embed.data.shards import (
    DEFAULT_SHARD_TOKENS,
    OutputError,
    Runner,
    RunnerError,
    tokenize_corpus,
    tokenize_file,
)
from flax_embed.data.token_files import TokenFileError
from flax_embed.tokenizer import TokenizerError, TokenizerUnavailableError, load_tokenizer

__all__ = ["MAX_WORKERS", "PROGRESS_MIN_BYTES", "add_parser", "run"]

PROGRESS_MIN_BYTES = 4 << 20
"""Inputs of at least this many bytes in all get a progress bar (on stderr)."""
MAX_WORKERS = 1024
"""The most worker processes ``--workers`` takes."""


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Adds ``tokenize`` to the ``flax-embed`` subcommands."""
    tokenize = commands.add_parser(
        "tokenize",
        help="tokenize a corpus into GPT-2 token files (.npy, .bin + .bin.json, or shards)",
        description="Tokenizes the documents of CORPUS... (UTF-8 text files, JSON Lines "
        ".jsonl/.json, optionally .gz or .zst, Parquet, a Hugging Face save_to_disk folder, "
        "folders, globs) with GPT-2 BPE (or --tokenizer SPEC) on every core and writes their "
        "ids, in order: to one token file (uint16 ids as .npy, or raw .bin with a JSON sidecar; "
        "uint32 for a vocabulary past 65,536), or with -o DIR/ to shards "
        "DIR/tokens-00000.bin, ... and DIR/manifest.json. Documents are separated by "
        "<|endoftext|> (id 50256; another tokenizer's end-of-text token, or --separator). "
        "Writes are atomic: on any error no output is left that looks complete; a sharded "
        "job re-run over the same DIR resumes.",
    )
    tokenize.add_argument("corpus", nargs="+", metavar="CORPUS",
                          help="input files, folders or glob patterns")  # fmt: skip
    tokenize.add_argument(
        "-o", "--out", required=True, metavar="OUT",
        help="the token file (*.npy or *.bin), or a folder (DIR/) for shards",
    )  # fmt: skip
    tokenize.add_argument(
        "--field",
        default=DEFAULT_FIELD,
        help="the JSON/Parquet field holding each document (default: text)",
    )
    tokenize.add_argument(
        "--tokenizer", default="gpt2", metavar="SPEC",
        help="a tiktoken encoding (gpt2, the default; r50k_base, p50k_base, cl100k_base, "
        "o200k_base), a .tiktoken ranks file, or a Hugging Face tokenizer.json; token files "
        "are uint16 when its vocabulary fits, else uint32",
    )  # fmt: skip
    tokenize.add_argument(
        "--separator", default=None, metavar="TOKEN",
        help="the token between documents (default: the tokenizer's end-of-text/EOS token)",
    )  # fmt: skip
    tokenize.add_argument(
        "--pattern", default=None, metavar="PATTERN",
        help="a .tiktoken file's pre-tokenizer: gpt2, cl100k_base (the default) or a regex",
    )  # fmt: skip
    tokenize.add_argument(
        "--shard-tokens", type=int_option(1, 2**62), default=None, metavar="N",
        help="tokens per shard (implies a folder output; default 100,000,000)",
    )  # fmt: skip
    tokenize.add_argument(
        "--workers",
        type=int_option(1, MAX_WORKERS),
        default=None,
        help=f"worker processes, 1 to {MAX_WORKERS} (default: the number of cores)",
    )
    tokenize.add_argument(
        "--no-eot",
        dest="eot",
        action="store_false",
        help="concatenate the documents without <|endoftext|> between them",
    )
    tokenize.add_argument(
        "--ray", action="store_true", help="run on Ray (pip install 'flax-embed[ray]'); shards only"
    )
    tokenize.add_argument(
        "--ray-address", default=None, metavar="ADDRESS",
        help="an existing Ray cluster (e.g. 10.0.0.1:6379 or auto; implies --ray); "
        "default: a local Ray instance",
    )  # fmt: skip
    tokenize.add_argument(
        "--verify-inputs", action="store_true",
        help="with -o DIR/: record each input's sha256 and compare it on reruns (reads the "
        "inputs twice); by default an input is identified by its path, size and mtime",
    )  # fmt: skip
    tokenize.set_defaults(run=run)


def _is_folder_output(args: argparse.Namespace) -> bool:
    return (args.shard_tokens is not None or args.out.endswith(("/", "\\"))
            or Path(args.out).is_dir())  # fmt: skip


def _runner(args: argparse.Namespace) -> Runner | None:
    """A ``RayRunner`` for ``--ray``/``--ray-address``; None: the job's local runner."""
    if not (args.ray or args.ray_address):
        return None
    from flax_embed.data.ray_tokenize import RayRunner

    try:
        return RayRunner(address=args.ray_address)
    except ImportError as e:  # a bad address is a RunnerError, which run() reports
        raise CLIError(str(e)) from None


def run(args: argparse.Namespace) -> int:
    """Runs ``flax-embed tokenize``: one job, with one shard (``-o FILE``) or many (``-o DIR/``)."""
    workers = args.workers or default_workers()
    out = Path(args.out)
    folder = _is_folder_output(args)
    if not folder and (args.ray or args.ray_address):
        raise CLIError("--ray writes shards: give a folder, -o DIR/ (and --shard-tokens N)")
    if folder and (args.ray or args.ray_address) and not args.eot:
        raise CLIError("--ray needs document boundaries to split the work: drop --no-eot")
    runner = None
    try:
        tok = load_tokenizer(args.tokenizer, separator=args.separator, pattern=args.pattern)
        options = dict(field=args.field, eot=args.eot, workers=workers,
                       progress=PROGRESS_MIN_BYTES, tokenizer=tok)  # fmt: skip
        if folder:
            if out.exists() and not out.is_dir():
                raise CLIError(f"{out}: exists and is not a folder (shards go to a folder)")
            runner = _runner(args)
            shard_tokens = DEFAULT_SHARD_TOKENS if args.shard_tokens is None else args.shard_tokens
            manifest = tokenize_corpus(args.corpus, out, shard_tokens=shard_tokens, runner=runner,
                                       verify_inputs=args.verify_inputs, **options)  # fmt: skip
        else:
            manifest = tokenize_file(args.corpus, out, **options)
    except (CorpusError, TokenizerError, TokenizerUnavailableError, OutputError,
            TokenFileError, WorkerDiedError, RunnerError) as e:  # fmt: skip
        raise CLIError(str(e)) from None
    except OSError as e:
        raise write_error(getattr(e, "filename", None) or out, e) from None
    finally:
        if runner is not None:
            runner.close()
    n = len(manifest["inputs"])
    files = f"{n} file{'s' if n > 1 else ''}"
    if not folder:
        print(f"wrote {out}: {manifest['tokens']} tokens ({manifest['dtype']}) from {files}")
        return 0
    shards = len(manifest["shards"])
    print(f"wrote {out}: {manifest['tokens']} tokens ({manifest['dtype']}) in {shards} "
          f"shard{'s' if shards != 1 else ''} from {files}")  # fmt: skip
    return 0
