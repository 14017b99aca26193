"""GPT-2 BPE tokenizer (tiktoken), usable offline.

Two ways to work without a network:

* tiktoken's own cache: ``TIKTOKEN_CACHE_DIR`` pointing at a folder that holds
  the two GPT-2 files under tiktoken's cache names;
* a plain folder with ``encoder.json`` and ``vocab.bpe`` (the files OpenAI
  published with GPT-2), given as ``bpe_dir=`` or in ``FLAX_EMBED_BPE_DIR``.

Both files are checked against the sha256 values tiktoken pins.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import tiktoken

__all__ = [
    "BPE_DIR_ENV",
    "ENDOFTEXT",
    "ENDOFTEXT_ID",
    "GPT2_VOCAB_SIZE",
    "TokenizerUnavailableError",
    "encode",
    "gpt2_tokenizer",
]

BPE_DIR_ENV = "FLAX_EMBED_BPE_DIR"
ENDOFTEXT = "<|endoftext|>"
ENDOFTEXT_ID = 50256
GPT2_VOCAB_SIZE = 50257

# The sha256 values tiktoken pins for the GPT-2 files (tiktoken_ext/openai_public.py).
_SHA256 = {
    "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    "encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
}
# GPT-2's pre-tokenizer pattern, as tiktoken writes it for "gpt2".
_GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
_HOW_TO_PROVIDE = (
    f"set {BPE_DIR_ENV} (or pass bpe_dir=) to a folder holding GPT-2's encoder.json and "
    "vocab.bpe, or set TIKTOKEN_CACHE_DIR to a tiktoken cache that has them, "
    "or connect to the internet once so that tiktoken can download them"
)


class TokenizerUnavailableError(RuntimeError):
    """The GPT-2 BPE files could not be found, read or verified."""


def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable-unicode stand-ins for the 256 bytes (``bytes_to_unicode``)."""
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    decoder = {chr(b): b for b in printable}
    n = 0
    for b in range(256):
        if b not in decoder.values():
            decoder[chr(256 + n)] = b
            n += 1
    return decoder


def _read_verified(folder: Path, name: str) -> bytes:
    path = folder / name
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TokenizerUnavailableError(
            f"cannot read {path} ({e.strerror or e}); {_HOW_TO_PROVIDE}."
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != _SHA256[name]:
        raise TokenizerUnavailableError(
            f"{path} is not GPT-2's {name}: sha256 {digest} != {_SHA256[name]}; {_HOW_TO_PROVIDE}."
        )
    return data


def _encoding_from_folder(folder: Path) -> tiktoken.Encoding:
    # vocab.bpe's merges are implied by encoder.json's ranks (tiktoken asserts that the two
    # agree); both files are verified so that a folder is only accepted whole.
    _read_verified(folder, "vocab.bpe")
    encoder = json.loads(_read_verified(folder, "encoder.json"))
    decode = _byte_decoder()
    ranks = {
        bytes(decode[ch] for ch in token): rank
        for token, rank in encoder.items()
        if token not in (ENDOFTEXT, "<|startoftext|>")
    }
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=_GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={ENDOFTEXT: ENDOFTEXT_ID},
        explicit_n_vocab=GPT2_VOCAB_SIZE,
    )


@functools.cache
def _load(bpe_dir: str | None) -> tiktoken.Encoding:
    if bpe_dir is not None:
        return _encoding_from_folder(Path(bpe_dir))
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as e:  # network errors, hash mismatches, unwritable caches, ...
        raise TokenizerUnavailableError(
            f"tiktoken could not load the GPT-2 BPE files ({type(e).__name__}); {_HOW_TO_PROVIDE}."
        ) from e


def gpt2_tokenizer(bpe_dir: str | os.PathLike[str] | None = None) -> tiktoken.Encoding:
    """Returns tiktoken's GPT-2 ``Encoding`` (50,257 ids, ``<|endoftext|>`` = 50256).

    Args:
      bpe_dir: a folder holding ``encoder.json`` and ``vocab.bpe``. Defaults to
        ``$FLAX_EMBED_BPE_DIR``; when neither is set, tiktoken loads the files from
        its cache (``TIKTOKEN_CACHE_DIR``) or downloads them.

    Raises:
      TokenizerUnavailableError: the files cannot be found, read or verified; the
        message says how to provide them.
    """
    if bpe_dir is None:
        bpe_dir = os.environ.get(BPE_DIR_ENV) or None
    return _load(None if bpe_dir is None else os.fspath(bpe_dir))


def encode(text: str, *, bpe_dir: str | os.PathLike[str] | None = None) -> np.ndarray:
    """Tokenizes ``text`` as the book does (``<|endoftext|>`` allowed in the text).

    Returns:
      The GPT-2 token ids, an int32 array of shape ``(N,)``.
    """
    if not isinstance(text, str):
        raise TypeError(f"encode() takes a str, got {type(text).__name__}")
    ids = gpt2_tokenizer(bpe_dir).encode(text, allowed_special={ENDOFTEXT})
    return np.asarray(ids, dtype=np.int32)
