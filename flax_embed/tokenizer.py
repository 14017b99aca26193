"""GPT-2 BPE tokenizer (tiktoken), usable offline; and ``load_tokenizer`` for any other.

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
import itertools
import json
import os
from pathlib import Path

import numpy as np
import tiktoken

__all__ = [
    "BPE_DIR_ENV",
    "ENCODINGS",
    "ENDOFTEXT",
    "ENDOFTEXT_ID",
    "EOS_TOKENS",
    "GPT2_IDENTITY",
    "GPT2_VOCAB_SIZE",
    "MAX_VOCAB",
    "Tokenizer",
    "TokenizerError",
    "TokenizerUnavailableError",
    "encode",
    "gpt2_tokenizer",
    "id_dtype",
    "load_tokenizer",
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


def _read_verified(folder: Path, name: str, file_name: str | None = None) -> bytes:
    path = folder / (file_name or name)
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


# tiktoken's cache names for GPT-2's files: sha1 of their URLs (tiktoken.load.read_file_cached).
_GPT2_URL = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
_CACHE_NAMES = {name: hashlib.sha1((_GPT2_URL + name).encode()).hexdigest()
                for name in _SHA256}  # fmt: skip


def _encoding_from_tiktoken_cache() -> tiktoken.Encoding | None:
    """GPT-2 from tiktoken's cache, read the fast way; None unless both files are there and good.

    tiktoken's own loader parses ``vocab.bpe``'s 50,000 merges in Python (about 0.3 s on an
    idle core, most of ``flax-embed tokenize``'s start-up); the ranks follow from
    ``encoder.json`` alone (``_encoding_from_folder``), and both files are verified.
    """
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    if cache is None:
        import tempfile

        cache = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    folder = Path(cache)
    if not all((folder / n).is_file() for n in _CACHE_NAMES.values()):
        return None
    try:
        return _encoding_from_folder(folder, _CACHE_NAMES)
    except TokenizerUnavailableError:  # a stale or corrupt cache: tiktoken fetches it again
        return None


def _encoding_from_folder(folder: Path, names: dict[str, str] | None = None) -> tiktoken.Encoding:
    # vocab.bpe's merges are implied by encoder.json's ranks (tiktoken asserts that the two
    # agree); both files are verified so that a folder is only accepted whole. ``names``:
    # the files' names in ``folder``, if not their own (tiktoken's cache).
    names = names or {}
    _read_verified(folder, "vocab.bpe", names.get("vocab.bpe"))
    encoder = json.loads(_read_verified(folder, "encoder.json", names.get("encoder.json")))
    # Each stand-in character to the byte it stands for, as a Latin-1 character: one
    # str.translate and one encode of all the tokens joined (one character is one byte
    # either way), then the bytes cut at the tokens' lengths (C loops, not Python ones).
    to_latin1 = {ord(ch): b for ch, b in _byte_decoder().items()}
    tokens = [t for t in encoder if t not in (ENDOFTEXT, "<|startoftext|>")]
    blob = "".join(tokens).translate(to_latin1).encode("latin-1")
    ends = list(itertools.accumulate(map(len, tokens)))
    starts = [0, *ends[:-1]]
    ranks = {blob[a:b]: encoder[t] for t, a, b in zip(tokens, starts, ends, strict=True)}
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
    cached = _encoding_from_tiktoken_cache()
    if cached is not None:
        return cached
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


# --- any tokenizer: tiktoken encodings, .tiktoken ranks files, Hugging Face tokenizer.json ---


class TokenizerError(ValueError):
    """A tokenizer spec that cannot be used: unknown name, bad file, bad separator (one line)."""


ENCODINGS = ("gpt2", "r50k_base", "p50k_base", "cl100k_base", "o200k_base")
"""The tiktoken encodings ``load_tokenizer`` takes by name."""

# The sha256 values tiktoken pins for each encoding's file (tiktoken_ext/openai_public.py), and
# verifies on loading: a name's identity. GPT-2's is that of vocab.bpe (encoder.json is pinned
# too, _SHA256).
_ENCODING_SHA256 = {
    "gpt2": _SHA256["vocab.bpe"],
    "r50k_base": "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
    "p50k_base": "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}
GPT2_IDENTITY = {
    "name": "gpt2", "kind": "tiktoken", "sha256": "sha256:" + _SHA256["vocab.bpe"],
    "vocab_size": GPT2_VOCAB_SIZE, "separator": ENDOFTEXT, "separator_id": ENDOFTEXT_ID,
}  # fmt: skip
"""``load_tokenizer("gpt2").identity``: what a manifest without a ``"tokenizer"`` field means."""
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
"""cl100k_base's pre-tokenizer pattern: a ``.tiktoken`` file's default (Llama 3's is the same)."""
_PATTERNS = {"gpt2": _GPT2_PATTERN, "r50k_base": _GPT2_PATTERN, "p50k_base": _GPT2_PATTERN,
             "cl100k_base": _CL100K_PATTERN}  # fmt: skip
EOS_TOKENS = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>")
"""The added tokens a ``tokenizer.json``'s separator is derived from, the first one present."""
MAX_VOCAB = 2**32
"""The largest vocabulary a token file holds (uint32 ids)."""


def id_dtype(n_vocab: int) -> np.dtype:
    """Token-file ids: little-endian ``uint16`` for at most 65,536 ids, else ``uint32``.

    >>> id_dtype(50257), id_dtype(128256)
    (dtype('uint16'), dtype('uint32'))
    >>> id_dtype(2**32 + 1)
    Traceback (most recent call last):
    ...
    flax_embed.tokenizer.TokenizerError: a vocabulary of 4294967297 ids does not fit uint32 ...
    """
    if n_vocab > MAX_VOCAB:
        raise TokenizerError(f"a vocabulary of {n_vocab} ids does not fit uint32 token files "
                             f"(at most {MAX_VOCAB})")  # fmt: skip
    return np.dtype("<u2") if n_vocab <= 2**16 else np.dtype("<u4")


class Tokenizer:
    """A loaded tokenizer (``load_tokenizer``): its identity and a batch encoder to NumPy.

    Attributes:
      name: the encoding's name, or the file's name.
      kind: ``"tiktoken"`` (a name), ``"tiktoken-file"`` or ``"tokenizer.json"``.
      sha256: ``"sha256:<hex>"`` of the file the vocabulary comes from (for a name: the
        file tiktoken pins and verifies; GPT-2's ``vocab.bpe``).
      n_vocab: the number of ids, ``[0, n_vocab)`` (the largest id plus one).
      separator: the token between documents; ``separator_id``: its id.
      dtype: the token files' id dtype (``id_dtype(n_vocab)``).
      cut_at_whitespace: the pre-tokenizer is GPT-2's pattern, so a text may be cut at
        ``parallel_tokenize``'s safe whitespace boundaries.
      cut_before_separator: the text may be cut right before a separator (the library
        splits it out first, whatever is around it).
      independent_documents: ``encode(A + sep + B) == encode(A) + [sep_id] + encode(B)``,
        so a corpus may be cut into units of work at document boundaries.

    A ``Tokenizer`` pickles as its spec (and sha256, checked on loading): Ray tasks and
    worker processes load it again.
    """

    def __init__(self, *, spec: str, name: str, kind: str, sha256: str, n_vocab: int,
                 separator: str, separator_id: int, encode_one, encode_many,
                 cut_at_whitespace: bool, cut_before_separator: bool,
                 independent_documents: bool, pattern: str | None = None):  # fmt: skip
        self.spec, self.name, self.kind, self.sha256 = spec, name, kind, sha256
        self.n_vocab, self.separator, self.separator_id = n_vocab, separator, separator_id
        self.dtype = id_dtype(n_vocab)
        self.cut_at_whitespace = cut_at_whitespace
        self.cut_before_separator = cut_before_separator
        self.independent_documents = independent_documents
        self._pattern = pattern
        self._encode_one, self._encode_many = encode_one, encode_many

    @property
    def recorded_identity(self) -> dict | None:
        """What a token file's sidecar records: None for GPT-2 (its files stay as they were)."""
        return None if self.identity == GPT2_IDENTITY else self.identity

    @property
    def identity(self) -> dict:
        """What a manifest records: ``{"name", "kind", "sha256", "vocab_size", "separator",
        "separator_id"}``."""
        return {"name": self.name, "kind": self.kind, "sha256": self.sha256,
                "vocab_size": self.n_vocab, "separator": self.separator,
                "separator_id": self.separator_id}  # fmt: skip

    def encode(self, text: str) -> np.ndarray:
        """The ids of ``text`` (the separator in it is its id), int32 (int64 past 2**31 ids)."""
        return self._encode_one(text)

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """``[encode(t) for t in texts]``, in one library call where the library has one."""
        return self._encode_many(list(texts))

    def __reduce__(self):
        return _restore, (self.spec, self.separator, self._pattern, self.sha256)

    def __repr__(self) -> str:
        return (
            f"Tokenizer({self.name!r}, kind={self.kind!r}, n_vocab={self.n_vocab}, "
            f"separator={self.separator!r} ({self.separator_id}), dtype={self.dtype.name})"
        )


def _restore(spec: str, separator: str | None, pattern: str | None, sha256: str) -> Tokenizer:
    tokenizer = load_tokenizer(spec, separator=separator, pattern=pattern)
    if tokenizer.sha256 != sha256:
        raise TokenizerError(f"{spec}: changed since the job started ({tokenizer.sha256} != "
                             f"{sha256})")  # fmt: skip
    return tokenizer


def _ids_dtype(n_vocab: int) -> type:
    return np.int32 if n_vocab <= 2**31 else np.int64


def _from_tiktoken(enc: tiktoken.Encoding, *, spec: str, name: str, kind: str, sha256: str,
                   separator: str | None, pattern: str | None) -> Tokenizer:  # fmt: skip
    sep = ENDOFTEXT if separator is None else separator
    if sep not in enc.special_tokens_set:
        specials = ", ".join(sorted(enc.special_tokens_set)) or "none"
        raise TokenizerError(f"separator {sep!r} is not a special token of {name} "
                             f"(special tokens: {specials}); pass --separator TOKEN")  # fmt: skip
    sep_id = enc.encode_single_token(sep)
    allowed = {sep}
    n_vocab = enc.n_vocab
    dtype = _ids_dtype(n_vocab)

    def encode_one(text: str) -> np.ndarray:
        try:  # the Rust encoder fills a buffer without the GIL and without a Python list
            ids = enc.encode_to_numpy(text, allowed_special=allowed, disallowed_special=())
        except UnicodeEncodeError:  # surrogates: encode() has tiktoken's fix-up
            ids = enc.encode(text, allowed_special=allowed, disallowed_special=())
        return np.asarray(ids).astype(dtype, copy=False)

    return Tokenizer(
        spec=spec, name=name, kind=kind, sha256=sha256, n_vocab=n_vocab, separator=sep,
        separator_id=sep_id, encode_one=encode_one,
        encode_many=lambda texts: [encode_one(t) for t in texts],
        cut_at_whitespace=enc._pat_str == _GPT2_PATTERN, cut_before_separator=True,
        independent_documents=True, pattern=pattern,
    )  # fmt: skip


def _file_sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _load_tiktoken_file(path: Path, data: bytes, separator: str | None,
                        pattern: str | None, spec: str) -> Tokenizer:  # fmt: skip
    import base64
    import binascii

    if not data.endswith(b"\n"):
        raise TokenizerError(f"{path}: truncated .tiktoken file (does not end with a newline)")
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise TokenizerError(
                f"{path}: line {number}: not a .tiktoken line "
                "('<base64 token> <rank>'); not a tokenizer file?"
            ) from None
    if not ranks or sorted(ranks.values()) != list(range(len(ranks))):
        raise TokenizerError(f"{path}: the ranks are not 0..{len(ranks) - 1}, each once "
                             "(a truncated or edited .tiktoken file)")  # fmt: skip
    sep = ENDOFTEXT if separator is None else separator
    if sep.encode() in ranks:
        raise TokenizerError(f"{path}: separator {sep!r} is an ordinary token of this "
                             "vocabulary; pass --separator with a token it lacks")  # fmt: skip
    pat = _PATTERNS.get(pattern or "cl100k_base", pattern or _CL100K_PATTERN)
    try:
        enc = tiktoken.Encoding(name=path.name, pat_str=pat, mergeable_ranks=ranks,
                                special_tokens={sep: len(ranks)})  # fmt: skip
    except Exception as e:  # a bad regex, ranks tiktoken refuses
        raise TokenizerError(f"{path}: tiktoken refused it ({e})") from None
    return _from_tiktoken(enc, spec=spec, name=path.name, kind="tiktoken-file",
                          sha256=_file_sha256(data), separator=sep, pattern=pattern)  # fmt: skip


def _added_token(added: list, content: str) -> dict | None:
    return next((t for t in added if isinstance(t, dict) and t.get("content") == content), None)


def _starts_text_specially(pre_tokenizer) -> bool:
    """A pre-tokenizer that treats the start of the text alone (Metaspace, prepend "first")."""
    if not isinstance(pre_tokenizer, dict):
        return False
    if pre_tokenizer.get("type") == "Sequence":
        return any(map(_starts_text_specially, pre_tokenizer.get("pretokenizers") or []))
    return pre_tokenizer.get("type") == "Metaspace" and pre_tokenizer.get(
        "prepend_scheme", "always") == "first"  # fmt: skip


def _load_tokenizer_json(path: Path, data: bytes, separator: str | None, spec: str) -> Tokenizer:
    try:
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError:
        raise TokenizerError(f"{path}: a tokenizer.json needs the tokenizers library: "
                             "pip install 'flax-embed[corpora]'") from None  # fmt: skip
    try:
        config = json.loads(data)
    except ValueError as e:
        raise TokenizerError(f"{path}: not valid JSON, truncated? ({e})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise TokenizerError(f"{path}: JSON, but not a Hugging Face tokenizer.json (no 'model')")
    try:
        hf = HFTokenizer.from_str(data.decode("utf-8"))
    except Exception as e:  # tokenizers raises its own Exception type
        raise TokenizerError(f"{path}: not a usable tokenizer.json ({e})") from None
    vocab = hf.get_vocab(with_added_tokens=True)
    if not vocab:
        raise TokenizerError(f"{path}: an empty vocabulary")
    n_vocab = max(vocab.values()) + 1
    id_dtype(n_vocab)  # refuses a vocabulary past uint32
    added = config.get("added_tokens") or []
    if separator is None:
        found = [t for t in EOS_TOKENS if _added_token(added, t) is not None]
        if not found:
            raise TokenizerError(f"{path}: no end-of-text token among its added tokens "
                                 f"({', '.join(EOS_TOKENS)}); pass --separator TOKEN")  # fmt: skip
        separator = found[0]
    sep_id = hf.token_to_id(separator)
    if sep_id is None:
        raise TokenizerError(f"{path}: separator {separator!r} is not in the vocabulary")
    token = _added_token(added, separator)
    if token is None:
        raise TokenizerError(f"{path}: separator {separator!r} is an ordinary token, not an added "
                             "one: the documents next to it would merge with it; pass "
                             "--separator with an added token")  # fmt: skip
    # The library splits an added token out of the text first, then normalizes and
    # pre-tokenizes each piece between them on its own. A cut right before the separator
    # keeps those pieces, unless the token eats whitespace on its left, matches only as a
    # single word, or is matched after normalization.
    cut = not (token.get("lstrip") or token.get("single_word") or token.get("normalized"))
    independent = cut and not token.get("rstrip") and not _starts_text_specially(
        config.get("pre_tokenizer"))  # fmt: skip
    dtype = _ids_dtype(n_vocab)

    # encode_batch_fast (tokenizers >= 0.21) skips the character offsets, which are not kept.
    batch = getattr(hf, "encode_batch_fast", hf.encode_batch)

    def encode_many(texts: list[str]) -> list[np.ndarray]:
        return [np.asarray(e.ids, dtype) for e in batch(texts, add_special_tokens=False)]

    def encode_one(text: str) -> np.ndarray:
        if not independent or separator not in text:
            return np.asarray(hf.encode(text, add_special_tokens=False).ids, dtype)
        # encode(A + sep + B) == encode(A) + [sep_id] + encode(B) (``independent``): each
        # document alone, in one batch call: the same ids, and several times faster than
        # the library's encode of a long text (benchmarks/tokenize_e2e.py).
        docs = encode_many(text.split(separator))
        sep_N = np.array([sep_id], dtype)
        return np.concatenate([x for ids in docs for x in (sep_N, ids)][1:])

    return Tokenizer(
        spec=spec, name=path.name, kind="tokenizer.json", sha256=_file_sha256(data),
        n_vocab=n_vocab, separator=separator, separator_id=sep_id, encode_one=encode_one,
        encode_many=encode_many, cut_at_whitespace=False, cut_before_separator=cut,
        independent_documents=independent,
    )  # fmt: skip


@functools.cache
def _load_cached(spec: str, given: str, separator: str | None, pattern: str | None,
                 mtime_ns: int, size: int) -> Tokenizer:  # fmt: skip
    """``spec``: a name or an absolute path; ``given``: as the user wrote it, for messages."""
    if spec in ENCODINGS:
        if pattern is not None:
            raise TokenizerError(f"--pattern is for .tiktoken files; {spec} has its own")
        if spec == "gpt2":
            enc = gpt2_tokenizer()
        else:
            try:
                enc = tiktoken.get_encoding(spec)
            except Exception as e:  # network errors, hash mismatches, unwritable caches
                raise TokenizerUnavailableError(
                    f"tiktoken could not load {spec} ({type(e).__name__}); set "
                    "TIKTOKEN_CACHE_DIR to a tiktoken cache that has it, or connect to the "
                    "internet once"
                ) from None
        return _from_tiktoken(enc, spec=spec, name=spec, kind="tiktoken",
                              sha256="sha256:" + _ENCODING_SHA256[spec], separator=separator,
                              pattern=None)  # fmt: skip
    path = Path(given)
    if not path.exists():
        raise TokenizerError(f"unknown tokenizer {given!r}: not a tiktoken encoding "
                             f"({', '.join(ENCODINGS)}) nor a file")  # fmt: skip
    try:
        data = Path(spec).read_bytes()
    except OSError as e:
        raise TokenizerError(f"{path}: cannot read it ({e.strerror or e})") from None
    if data.lstrip()[:1] == b"{":
        if pattern is not None:
            raise TokenizerError(f"{path}: --pattern is for .tiktoken files, not tokenizer.json")
        return _load_tokenizer_json(path, data, separator, spec)
    if not data.strip():
        raise TokenizerError(f"{path}: an empty file, not a tokenizer")
    return _load_tiktoken_file(path, data, separator, pattern, spec)


def load_tokenizer(
    spec: str | os.PathLike[str] = "gpt2",
    *,
    separator: str | None = None,
    pattern: str | None = None,
) -> Tokenizer:
    """The tokenizer ``spec`` names, for ``flax-embed tokenize --tokenizer SPEC``.

    ``spec`` is one of:

    * a tiktoken encoding name (``ENCODINGS``): ``gpt2`` (the default: ``gpt2_tokenizer``,
      so ``FLAX_EMBED_BPE_DIR`` works offline), ``r50k_base``, ``p50k_base``,
      ``cl100k_base``, ``o200k_base`` (tiktoken downloads or finds them in its cache);
      separator ``<|endoftext|>``;
    * a ``.tiktoken`` ranks file (lines ``<base64 token> <rank>``, as tiktoken's and Llama
      3's ``tokenizer.model``): the pre-tokenizer is ``pattern`` (an encoding's name,
      ``gpt2`` or ``cl100k_base``, or a regex; default ``cl100k_base``'s, which Llama 3
      uses too), and the separator (default ``<|endoftext|>``) is added with the id
      after the last rank;
    * a Hugging Face ``tokenizer.json`` (the ``tokenizers`` library): the separator is the
      first of ``EOS_TOKENS`` (``<|endoftext|>``, ``<|end_of_text|>``, ``</s>``,
      ``<eos>``) among its added tokens. No BOS/EOS is added around a text
      (``add_special_tokens=False``).

    Args:
      separator: the token between documents, instead of the derived one; it must be a
        special token (tiktoken) or an added token (tokenizer.json).

    Raises:
      TokenizerError: an unknown name; a file that is not a tokenizer, truncated or of
        another kind; a separator that is not in the vocabulary (or none derivable);
        a vocabulary larger than uint32. One line, naming the spec.
      TokenizerUnavailableError: tiktoken cannot find or download the encoding's files.

    >>> tok = load_tokenizer("gpt2")
    >>> tok.n_vocab, tok.separator_id, tok.dtype.name
    (50257, 50256, 'uint16')
    >>> tok.encode("Hello<|endoftext|>world").tolist()
    [15496, 50256, 6894]
    """
    spec = os.fspath(spec)
    try:
        st = os.stat(spec) if spec not in ENCODINGS else None
    except OSError:
        st = None
    key = (st.st_mtime_ns, st.st_size) if st is not None else (0, 0)
    return _load_cached(spec if spec in ENCODINGS else os.path.abspath(spec), spec, separator,
                        pattern, *key)  # fmt: skip
