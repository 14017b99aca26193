"""Corpus readers: text, JSON Lines (plain, ``.gz``, ``.zst``), Parquet, HF ``save_to_disk``.

A corpus is a list of *documents*. ``flax-embed tokenize`` (and ``shards.tokenize_corpus``)
turns it into ``encode("<|endoftext|>".join(documents))``; this module finds the
documents and hands them on as text *pieces* whose concatenation is that joined
string, without ever holding a whole file in memory.

Inputs (``expand_inputs``):

* ``*.jsonl`` / ``*.json`` — one JSON object per line, the document in ``field``
  (default ``"text"``); blank lines are skipped. Also ``*.jsonl.gz``, ``*.jsonl.zst``, ...
* ``*.parquet`` — the string column ``field``, streamed one record batch of one row
  group at a time with ``pyarrow`` (optional ``corpora`` extra);
* a Hugging Face dataset saved with ``Dataset.save_to_disk`` (a folder with
  ``state.json``): its Arrow files, read with ``pyarrow`` (``datasets`` is not needed);
* any other file: UTF-8 text, the whole file one document, newlines translated as
  ``open()`` does (``\\r\\n`` and ``\\r`` become ``\\n``); ``*.txt.gz`` / ``*.txt.zst`` too;
* a folder: the files in it (recursively, hidden ones skipped) whose suffix is one of
  the above, in sorted order; a glob pattern: its matches, sorted.

Work is split into ``Segment``\\ s (``plan_segments``): a byte range of a plain JSONL file
cut after a newline, a run of Parquet row groups, one Arrow file, or a whole file.
Because tiktoken splits its input at ``<|endoftext|>`` before its pre-tokenizer runs,
``encode(A + "<|endoftext|>" + B) == encode(A) + [50256] + encode(B)`` for any texts
``A`` and ``B`` (``tests/data/test_corpus.py`` checks this on adversarial documents,
whitespace at the edges included), so segments cut at document boundaries can be
tokenized apart and their ids joined with 50256.

Every malformed input raises ``CorpusError`` (a ``ValueError``) with a one-line
message naming the file and the line, row group or byte.
"""

from __future__ import annotations

import codecs
import dataclasses
import glob
import gzip
import hashlib
import io
import itertools
import json
import os
import stat
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import AnyStr, Generic

from flax_embed._io import describe_os_error, resolves_inside
from flax_embed.tokenizer import ENDOFTEXT

__all__ = [
    "BLOCK_BYTES",
    "DEFAULT_FIELD",
    "CorpusError",
    "DocumentCount",
    "Segment",
    "TextRange",
    "corpus_pieces",
    "expand_inputs",
    "input_format",
    "input_identity",
    "input_size",
    "plan_segments",
    "segment_pieces",
]

BLOCK_BYTES = 16 << 20
"""Bytes read at a time (text and JSONL), and about the text per piece handed on."""
DEFAULT_FIELD = "text"
_PIECE_CHARS = 4 << 20  # JSONL/Parquet documents are joined into pieces of about this size
_COMPRESSIONS = {".gz": "gz", ".zst": "zst"}
_KINDS = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".txt": "txt"}
_GLOB_CHARS = frozenset("*?[")
_CUT_WINDOW = 64 << 10  # bytes searched at a time for a cut in a TextRange

Progress = Callable[[int], object]


class CorpusError(ValueError):
    """A corpus input is missing, unreadable or malformed; the message is one line naming it."""


def _no_progress(n: int) -> None:
    pass


def input_format(path: str | os.PathLike[str]) -> tuple[str, str | None]:
    """``(kind, compression)`` of an input file, from its name.

    ``kind`` is ``"jsonl"``, ``"parquet"``, ``"hf"`` (a ``save_to_disk`` folder) or
    ``"txt"`` (any other name); ``compression`` is ``"gz"``, ``"zst"`` or None.

    >>> input_format("shard_00.jsonl.zst")
    ('jsonl', 'zst')
    >>> input_format("book.txt")
    ('txt', None)
    """
    path = Path(path)
    if path.is_dir() and (path / "state.json").is_file():
        return "hf", None
    suffixes = [s.lower() for s in path.suffixes]
    compression = _COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    kind = _KINDS.get(suffixes[-1], "txt") if suffixes else "txt"
    if kind == "parquet" and compression:
        raise CorpusError(f"{path}: a compressed .parquet file is not supported (Parquet "
                          "compresses its own columns)")  # fmt: skip
    return kind, compression


def _is_corpus_name(path: Path) -> bool:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSIONS:
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in _KINDS


def _excluded(path: Path, exclude: Sequence[str]) -> str | None:
    """The entry of ``exclude`` (real paths) that ``path`` is, or lies under; else None."""
    real = os.path.realpath(path)
    for x in exclude:
        if real == x or real.startswith(x.rstrip(os.sep) + os.sep):
            return x
    return None


def _expand_dir(folder: Path, exclude: Sequence[str] = ()) -> list[str]:
    if (folder / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in folder.iterdir() if (p / "state.json").is_file())
        raise CorpusError(
            f"{folder}: a Hugging Face DatasetDict (splits: {', '.join(splits) or 'none'}); "
            f"give one split's folder, e.g. {folder / (splits[0] if splits else 'train')}"
        )
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and not _excluded(Path(root) / d, exclude))  # fmt: skip
        for d in list(dirs):
            if (Path(root) / d / "state.json").is_file():  # a saved HF dataset inside
                found.append(Path(root) / d)
                dirs.remove(d)
        found += [Path(root) / f for f in files
                  if not f.startswith(".") and _is_corpus_name(Path(f))
                  and not _excluded(Path(root) / f, exclude)]  # fmt: skip
    return [str(p) for p in sorted(found, key=lambda p: p.relative_to(folder).parts)]


def expand_inputs(
    specs: Sequence[str | os.PathLike[str]],
    *,
    exclude: Sequence[str | os.PathLike[str]] = (),
) -> list[str]:
    """The input files of ``specs``: files as given, folders and globs expanded, sorted.

    ``exclude`` names the command's own outputs (files, or a folder with everything
    under it): a folder or glob skips them, and a spec that names one is refused.

    Raises:
      CorpusError: a spec that names nothing (no such file, a glob with no match, a
        folder with no corpus file in it), or one of the outputs.
    """
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    exclude = [os.path.realpath(x) for x in exclude]
    paths: list[str] = []
    for spec in map(str, specs):
        path = Path(spec)
        if path.exists() and (x := _excluded(path, exclude)):
            raise CorpusError(f"{spec}: is this command's output ({x}), so it cannot be "
                              "an input; choose another output")  # fmt: skip
        if path.is_dir():
            if (path / "state.json").is_file():
                paths.append(spec)
                continue
            found = _expand_dir(path, exclude)
            if not found:
                raise CorpusError(f"{spec}: a folder with no .txt, .jsonl, .json or .parquet "
                                  "file (optionally .gz or .zst) in it")  # fmt: skip
            paths += found
        elif not path.exists() and _GLOB_CHARS & set(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                raise CorpusError(f"{spec}: no file matches this pattern")
            for match in matches:
                if _excluded(Path(match), exclude):
                    continue
                paths += (expand_inputs([match], exclude=exclude) if Path(match).is_dir()
                          else [match])  # fmt: skip
            if not paths:
                raise CorpusError(f"{spec}: matches only this command's own output")
        else:
            paths.append(spec)  # a missing or unreadable file is reported when read
    return paths


@dataclasses.dataclass(frozen=True)
class Segment:
    """A document-aligned part of one input: the unit of work of a sharded job.

    ``start``/``stop``: a byte range (plain ``jsonl``), a row-group range (``parquet``),
    or ``0, None`` (the whole file).
    """

    path: str
    kind: str
    compression: str | None = None
    start: int = 0
    stop: int | None = None
    nbytes: int = 0
    """The input bytes this segment stands for (for progress and planning)."""


_FILE_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
               stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}  # fmt: skip


def _regular_stat(path: str | os.PathLike[str]) -> os.stat_result:
    """``os.stat(path)`` of a regular file; CorpusError (one line) for anything else.

    Checked before the file is opened: opening a FIFO would wait for a writer forever.
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise CorpusError(describe_os_error(path, e)) from None
    if stat.S_ISDIR(st.st_mode):
        raise CorpusError(describe_os_error(path, IsADirectoryError(21, "Is a directory")))
    if not stat.S_ISREG(st.st_mode):
        what = _FILE_KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise CorpusError(f"{path}: {what}, not a regular file; inputs must be regular files")
    return st


def _input_files(path: str) -> list[str]:
    """The files that make up an input: itself, or a HF dataset's ``state.json`` and Arrow files."""
    p = Path(path)
    if p.is_dir() and (p / "state.json").is_file():
        return [str(p / "state.json"), *(str(p / f) for f in _hf_files(p))]
    return [path]


def input_size(path: str) -> int:
    """The size of an input in bytes (of its Arrow files for a HF dataset); CorpusError if not.

    Only regular files are inputs: a FIFO, socket or device is refused before it is opened.
    """
    p = Path(path)
    if p.is_dir() and (p / "state.json").is_file():
        return sum(_regular_stat(p / f).st_size for f in _hf_files(p))
    size = _regular_stat(path).st_size
    try:
        with open(p, "rb"):  # readable: fail before any output is made
            pass
    except OSError as e:
        raise CorpusError(describe_os_error(path, e)) from None
    return size


def input_identity(path: str, *, sha256: bool = False) -> dict:
    """``{"path", "bytes", "mtime_ns"}`` of an input (and ``"sha256"`` of its bytes if asked).

    For a HF dataset: the bytes of its Arrow files and the latest ``mtime_ns`` of them
    and ``state.json``; its ``sha256`` hashes each file's digest in order. A file edited
    in place keeps its size but gets a new ``mtime_ns`` (unless the editor restores it);
    ``sha256`` sees any change of content.
    """
    files = _input_files(path)
    stats = [_regular_stat(f) for f in files]
    identity: dict = {
        "path": path,
        "bytes": input_size(path),
        "mtime_ns": max(st.st_mtime_ns for st in stats),
    }
    if sha256:
        digests = []
        for f in files:
            digest = hashlib.sha256()
            try:
                with open(f, "rb") as fh:
                    while block := fh.read(8 << 20):
                        digest.update(block)
            except OSError as e:
                raise CorpusError(describe_os_error(f, e)) from None
            digests.append(digest.hexdigest())
        identity["sha256"] = (digests[0] if len(digests) == 1 else
                              hashlib.sha256("".join(digests).encode()).hexdigest())  # fmt: skip
    return identity


def _line_starts(path: str, size: int, target: int) -> list[int]:
    """Offsets of line starts about every ``target`` bytes: ``[0, ..., size]``."""
    bounds = [0]
    with open(path, "rb") as f:
        for b in range(target, size, target):
            if b <= bounds[-1]:
                continue
            f.seek(b - 1)
            f.readline()
            pos = f.tell()
            if pos >= size:
                break
            bounds.append(pos)
    bounds.append(size)
    return bounds


def plan_segments(paths: Sequence[str], *, target_bytes: int = 64 << 20) -> list[Segment]:
    """Cuts the inputs into document-aligned segments of about ``target_bytes`` each.

    Plain JSONL files are cut after a newline, Parquet files between row groups, HF
    datasets between Arrow files; compressed and text files stay whole.
    """
    segments = []
    for path in paths:
        kind, compression = input_format(path)
        size = input_size(path)
        try:
            if kind == "jsonl" and compression is None and size > target_bytes:
                bounds = _line_starts(path, size, target_bytes)
                segments += [Segment(path, kind, None, a, b, b - a)
                             for a, b in itertools.pairwise(bounds)]  # fmt: skip
            elif kind == "parquet":
                sizes = _parquet_group_sizes(path)
                start, acc = 0, 0
                for i, n in enumerate(sizes):
                    acc += n
                    if acc >= target_bytes or i == len(sizes) - 1:
                        segments.append(Segment(path, kind, None, start, i + 1, acc))
                        start, acc = i + 1, 0
                if not sizes:
                    segments.append(Segment(path, kind, None, 0, 0, size))
            elif kind == "hf":
                for i, name in enumerate(_hf_files(Path(path))):
                    n = _regular_stat(Path(path, name)).st_size
                    segments.append(Segment(path, kind, None, i, i + 1, n))
            else:
                segments.append(Segment(path, kind, compression, 0, None, size))
        except OSError as e:
            raise CorpusError(describe_os_error(path, e)) from None
    return segments


# --- raw bytes ----------------------------------------------------------------------------


def _zst_blocks(f, path: str) -> Iterator[bytes]:
    import zstandard

    decompressor = zstandard.ZstdDecompressor()
    d = decompressor.decompressobj()
    started = False
    while raw := f.read(1 << 20):
        while raw:
            started = True
            try:
                out = d.decompress(raw)
            except zstandard.ZstdError as e:
                raise _ZstdError(str(e)) from None
            if out:
                yield out
            raw = d.unused_data if d.eof else b""
            if d.eof:  # concatenated frames
                d, started = decompressor.decompressobj(), bool(raw)
    if started and not d.eof:
        raise _ZstdError("truncated: the file ends inside a zstd frame")


class _ZstdError(Exception):
    pass


class _Counting(io.RawIOBase):
    """A read-only wrapper that reports the bytes read from the file to ``progress``."""

    def __init__(self, f, progress: Progress):
        self._f, self._progress = f, progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._f.readinto(buffer)
        self._progress(n or 0)
        return n


def _byte_blocks(seg: Segment, progress: Progress) -> Iterator[bytes]:
    """The (decompressed) bytes of ``seg`` in blocks. OSError / _ZstdError / gzip errors raise."""
    with open(seg.path, "rb") as raw:
        if seg.compression is None:
            raw.seek(seg.start)
            left = None if seg.stop is None else seg.stop - seg.start
            while left is None or left > 0:
                block = raw.read(BLOCK_BYTES if left is None else min(BLOCK_BYTES, left))
                if not block:
                    break
                progress(len(block))
                if left is not None:
                    left -= len(block)
                yield block
            return
        counted = io.BufferedReader(_Counting(raw, progress), 1 << 20)
        if seg.compression == "gz":
            with gzip.GzipFile(fileobj=counted) as f:
                while block := f.read(BLOCK_BYTES):
                    yield block
        else:
            yield from _zst_blocks(counted, seg.path)


def _decompress_errors(seg: Segment, after: Callable[[], str], fn: Callable[[], Iterator[str]]):
    """Runs the generator ``fn()``, turning read and decompression errors into CorpusError."""
    try:
        yield from fn()
    except OSError as e:
        if isinstance(e, gzip.BadGzipFile):
            raise CorpusError(f"{seg.path}: corrupt gzip data after {after()} ({e})") from None
        raise CorpusError(describe_os_error(seg.path, e)) from None
    except (EOFError, zlib.error) as e:
        raise CorpusError(f"{seg.path}: corrupt or truncated gzip data after {after()} ({e})") \
            from None  # fmt: skip
    except _ZstdError as e:
        raise CorpusError(f"{seg.path}: corrupt or truncated zstd data after {after()} ({e})") \
            from None  # fmt: skip


# --- text ---------------------------------------------------------------------------------


def _not_utf8(path: str, byte: int, reason: str, where: str = "") -> CorpusError:
    return CorpusError(f"{path}: not UTF-8 text (byte {byte}{where}: {reason})")


def _text_pieces(seg: Segment, progress: Progress) -> Iterator[str]:
    """The text of a text file in blocks: UTF-8, newlines translated as ``open()`` does."""
    decoder = io.IncrementalNewlineDecoder(codecs.getincrementaldecoder("utf-8")(), translate=True)
    offset = 0  # bytes given to the decoder so far
    where = "" if seg.compression is None else " of the decompressed text"

    def pieces() -> Iterator[str]:
        nonlocal offset
        for block in _byte_blocks(seg, progress):
            pending = len(decoder.getstate()[0])
            try:
                yield decoder.decode(block)
            except UnicodeDecodeError as e:
                raise _not_utf8(seg.path, offset - pending + e.start, e.reason, where) from None
            offset += len(block)
        try:
            yield decoder.decode(b"", final=True)
        except UnicodeDecodeError as e:
            byte = offset - len(e.object) + e.start
            raise _not_utf8(seg.path, byte, e.reason, where) from None

    yield from _decompress_errors(seg, lambda: f"byte {offset}", pieces)


@dataclasses.dataclass(frozen=True)
class TextRange:
    """The bytes ``[start, stop)`` of a plain text file, as a piece read where it is encoded.

    ``corpus_pieces(..., ranges=True)`` hands a plain text file on as one ``TextRange``
    instead of its text, so that ``iter_encode_parallel`` can cut it into byte ranges
    (``split``) whose workers read and decode their own bytes (``read``): the process
    that plans the work neither decodes the text nor sends it to them.
    """

    path: str
    start: int
    stop: int

    @property
    def nbytes(self) -> int:
        return self.stop - self.start

    def read(self) -> str:
        """The text of the bytes, as ``segment_pieces`` reads the file: UTF-8, newlines
        translated (``\\r\\n`` and ``\\r`` become ``\\n``).

        A range that starts at the file's start or right after an ASCII byte (``split``'s
        cuts) and ends at the file's end or right before one decodes and translates to
        the same text as that part of the whole file, and a bad byte is reported as the
        whole file's reading reports it.
        """
        try:
            with open(self.path, "rb") as f:
                f.seek(self.start)
                data = f.read(self.nbytes)
        except OSError as e:
            raise CorpusError(describe_os_error(self.path, e)) from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _not_utf8(self.path, self.start + e.start, e.reason) from None
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        return text

    def split(
        self, nbytes: int, next_cut: Callable[[bytes, int], int | None]
    ) -> Iterator[TextRange]:
        """The range cut into ranges of at least ``nbytes`` bytes (the last may be shorter).

        Each cut is the first ``next_cut(window, i)`` at least ``nbytes`` after the previous
        one: ``window`` holds the file's bytes around the candidate cut (a few before it),
        and ``next_cut`` returns the first index ``>= i`` in it where the text may be cut,
        or None (the next window is then searched).
        """
        behind = 4  # bytes of the character before a candidate cut (UTF-8: at most 4)
        a = self.start
        try:
            with open(self.path, "rb") as f:
                while self.stop - a > nbytes:
                    pos, cut = a + nbytes, None
                    while cut is None and pos < self.stop:
                        lo = max(pos - behind, a)  # a character starts at a: none before it
                        f.seek(lo)
                        window = f.read(min(self.stop, pos + _CUT_WINDOW) - lo)
                        if len(window) <= pos - lo:  # the file is shorter than planned
                            break
                        found = next_cut(window, pos - lo)
                        if found is not None:
                            cut = lo + found
                        pos = lo + len(window)
                    if cut is None:
                        break
                    yield TextRange(self.path, a, cut)
                    a = cut
        except OSError as e:
            raise CorpusError(describe_os_error(self.path, e)) from None
        yield TextRange(self.path, a, self.stop)


# --- JSON Lines ---------------------------------------------------------------------------


def _first_line_number(seg: Segment) -> int:
    """The 1-based line number of the first line of ``seg`` (counts newlines before it)."""
    if seg.start == 0:
        return 1
    count, left = 0, seg.start
    with open(seg.path, "rb") as f:
        while left:
            block = f.read(min(BLOCK_BYTES, left))
            if not block:
                break
            count += block.count(b"\n")
            left -= len(block)
    return count + 1


def _document(value, field: str, where: Callable[[], str]) -> str:
    if not isinstance(value, dict):
        raise CorpusError(f"{where()}: not a JSON object but {type(value).__name__}")
    try:
        doc = value[field]
    except KeyError:
        fields = ", ".join(map(repr, list(value)[:8])) or "none"
        raise CorpusError(f"{where()}: no field {field!r} (fields: {fields}); "
                          "choose one with --field") from None  # fmt: skip
    if not isinstance(doc, str):
        raise CorpusError(f"{where()}: field {field!r} is not a string but {type(doc).__name__}")
    return doc


def _jsonl_documents(seg: Segment, field: str, progress: Progress) -> Iterator[str]:
    lines_done = 0  # complete lines seen in this segment

    def where() -> str:
        return f"{seg.path}: line {_first_line_number(seg) + lines_done}"

    def documents() -> Iterator[str]:
        nonlocal lines_done
        carry = b""
        for block in _byte_blocks(seg, progress):
            lines = (carry + block).split(b"\n")
            carry = lines.pop()
            for line in lines:
                if line.strip():
                    try:
                        value = json.loads(line)
                    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
                        raise CorpusError(f"{where()}: not valid JSON ({e})") from None
                    except RecursionError:
                        raise CorpusError(f"{where()}: JSON nested too deeply to read") from None
                    yield _document(value, field, where)
                lines_done += 1
        if carry.strip():
            try:
                value = json.loads(carry)
            except ValueError as e:
                raise CorpusError(f"{where()}: not valid JSON ({e})") from None
            except RecursionError:
                raise CorpusError(f"{where()}: JSON nested too deeply to read") from None
            yield _document(value, field, where)

    yield from _decompress_errors(seg, lambda: f"line {lines_done}", documents)


# --- Parquet and Arrow --------------------------------------------------------------------


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise CorpusError("reading Parquet and Arrow files needs pyarrow: "
                          "pip install 'flax-embed[corpora]'") from None  # fmt: skip
    return pyarrow


def _open_parquet(path: str):
    pa = _pyarrow()
    try:
        return pa.parquet.ParquetFile(path)
    except OSError as e:
        if getattr(e, "errno", None) is not None:
            raise CorpusError(describe_os_error(path, e)) from None
        raise CorpusError(f"{path}: not a readable Parquet file ({e})") from None
    except (pa.ArrowException, ValueError) as e:
        raise CorpusError(f"{path}: not a readable Parquet file ({e})") from None


def _parquet_group_sizes(path: str) -> list[int]:
    """The compressed size of each row group of ``path``."""
    meta = _open_parquet(path).metadata
    return [
        sum(meta.row_group(i).column(j).total_compressed_size
            for j in range(meta.row_group(i).num_columns))
        for i in range(meta.num_row_groups)
    ]  # fmt: skip


def _string_column(schema, field: str, path: str) -> int:
    pa = _pyarrow()
    index = schema.get_field_index(field)
    if index < 0:
        names = ", ".join(map(repr, schema.names[:8])) or "none"
        raise CorpusError(f"{path}: no column {field!r} (columns: {names}); "
                          "choose one with --field")  # fmt: skip
    kind = schema.field(index).type
    values = kind.value_type if pa.types.is_dictionary(kind) else kind  # dictionary-encoded
    if not (pa.types.is_string(values) or pa.types.is_large_string(values)
            or pa.types.is_string_view(values)):  # fmt: skip
        raise CorpusError(f"{path}: column {field!r} holds {kind}, not strings")
    return index


def _column_documents(batch, field: str, where: str, first_row: int) -> list[str]:
    """The strings of ``batch[field]``; ``where`` + the row number names a null one."""
    column = batch.column(field)
    if column.null_count:
        row = column.is_null().to_pylist().index(True)
        raise CorpusError(f"{where}, row {first_row + row}: field {field!r} is null")
    return column.to_pylist()


def _parquet_documents(seg: Segment, field: str, progress: Progress) -> Iterator[str]:
    pa = _pyarrow()
    pf = _open_parquet(seg.path)
    _string_column(pf.schema_arrow, field, seg.path)
    meta = pf.metadata
    assert seg.stop is not None  # plan_segments gives Parquet segments a row-group range
    for group in range(seg.start, seg.stop):
        rows = 0
        where = f"{seg.path}: row group {group}"
        try:
            for batch in pf.iter_batches(batch_size=8192, row_groups=[group], columns=[field]):
                yield from _column_documents(batch, field, where, rows)
                rows += batch.num_rows
        except OSError as e:
            if getattr(e, "errno", None) is not None:
                raise CorpusError(describe_os_error(seg.path, e)) from None
            raise CorpusError(f"{seg.path}: row group {group}: corrupt ({e})") from None
        except (pa.ArrowException, ValueError) as e:
            if isinstance(e, CorpusError):
                raise
            raise CorpusError(f"{seg.path}: row group {group}: corrupt ({e})") from None
        rg = meta.row_group(group)
        progress(sum(rg.column(j).total_compressed_size for j in range(rg.num_columns)))


def _hf_files(folder: Path) -> list[str]:
    """The data files that ``state.json`` names, each checked to lie inside ``folder``.

    A name that leaves the folder (absolute, ``..``, a symlink pointing out) is refused
    before anything is opened: a saved dataset is read from its own folder only.
    """
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        names = [entry["filename"] for entry in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        reason = "nested too deeply" if isinstance(e, RecursionError) else e
        raise CorpusError(f"{folder}: not a dataset saved with save_to_disk "
                          f"(state.json: {reason})") from None  # fmt: skip
    for name in names:
        if not isinstance(name, str) or not name or not resolves_inside(folder, name):
            raise CorpusError(f"{folder / 'state.json'}: data file {name!r} is not inside the "
                              "dataset folder; refused")  # fmt: skip
    return names


def _hf_documents(seg: Segment, field: str, progress: Progress) -> Iterator[str]:
    pa = _pyarrow()
    folder = Path(seg.path)
    for name in _hf_files(folder)[seg.start : seg.stop]:
        path = str(folder / name)
        batch_index, rows = 0, 0
        try:
            with pa.memory_map(path) as source:
                reader = pa.ipc.open_stream(source)
                _string_column(reader.schema, field, path)
                for batch in reader:
                    where = f"{path}: record batch {batch_index}"
                    yield from _column_documents(batch, field, where, 0)
                    batch_index, rows = batch_index + 1, rows + batch.num_rows
                progress(source.size())
        except OSError as e:
            if getattr(e, "errno", None) is not None:
                raise CorpusError(describe_os_error(path, e)) from None
            raise CorpusError(f"{path}: record batch {batch_index}: corrupt ({e})") from None
        except pa.ArrowException as e:
            raise CorpusError(f"{path}: record batch {batch_index}: corrupt ({e})") from None


# --- pieces -------------------------------------------------------------------------------


class DocumentCount:
    """Counts the documents a ``segment_pieces`` generator has produced.

    ``inner_separators`` maps a document's index (0 for the first one counted) to the
    number of times the separator's text occurs *inside* that document (documents
    without one are not listed). The tokenizer turns each occurrence into the
    separator's id, so the document index (``shards.py``) tells the separators between
    documents from those inside them by this count, not by the ids. With
    ``separators=False`` they are not counted (nor looked for): no index will be written.
    """

    def __init__(self, separators: bool = True) -> None:
        self.documents = 0
        self.separators = separators
        self.inner_separators: dict[int, int] = {}

    def _inside(self, count: int) -> None:
        """Records ``count`` separators inside the current (last counted) document."""
        if count:
            k = self.documents - 1
            self.inner_separators[k] = self.inner_separators.get(k, 0) + count


def _joined(docs: Iterator[str], counter: DocumentCount, eot: bool,
            separator: str = ENDOFTEXT) -> Iterator[str]:  # fmt: skip
    """``docs`` joined by ``separator`` (or nothing), as pieces of about _PIECE_CHARS."""
    sep = separator if eot else ""
    batch: list[str] = []
    chars = 0
    for doc in docs:
        if counter.documents:
            batch.append(sep)
        batch.append(doc)
        counter.documents += 1
        if eot and counter.separators and separator in doc:
            counter._inside(doc.count(separator))
        chars += len(doc)
        if chars >= _PIECE_CHARS:
            yield "".join(batch)
            batch, chars = [], 0
    if batch:
        yield "".join(batch)


def segment_pieces(
    seg: Segment,
    field: str = DEFAULT_FIELD,
    *,
    eot: bool = True,
    counter: DocumentCount | None = None,
    progress: Progress = _no_progress,
    separator: str = ENDOFTEXT,
    ranges: bool = False,
) -> Iterator[str | TextRange]:
    """Text pieces whose concatenation is ``separator.join(documents of seg)``.

    With ``eot=False`` the documents are joined by nothing. ``counter.documents``
    counts the documents produced (a text file is one document, even when empty).
    ``progress(n)`` is called with the input bytes consumed as they are. With ``ranges``
    a plain text file is one ``TextRange`` piece, whose bytes ``progress`` does not count
    (``iter_encode_parallel`` reports them as it encodes them).
    """
    counter = DocumentCount() if counter is None else counter
    if seg.kind == "txt":
        if counter.documents and eot:
            yield separator
        counter.documents += 1
        if ranges and seg.compression is None:
            stop = _regular_stat(seg.path).st_size
            yield TextRange(seg.path, seg.start, stop)
            if eot and counter.separators:  # in the bytes: the separator has no newline
                counter._inside(_count_bytes(seg.path, seg.start, stop, separator.encode()))
            return
        if not (eot and counter.separators):
            yield from _text_pieces(seg, progress)
            return
        count = _Occurrences(separator)
        for piece in _text_pieces(seg, progress):
            counter._inside(count(piece))
            yield piece
        return
    read = {"jsonl": _jsonl_documents, "parquet": _parquet_documents, "hf": _hf_documents}
    docs = read[seg.kind](seg, field, progress)
    yield from _joined(docs, counter, eot, separator)


class _Occurrences(Generic[AnyStr]):
    """Counts ``needle`` in a text (or bytes) given block by block: ``count(block)`` is the
    number of its occurrences that end in ``block``, those across its start included."""

    def __init__(self, needle: AnyStr):
        self._needle = needle
        self._keep = len(needle) - 1  # a match may start this many items before a block
        self._tail = needle[:0]  # the last ``keep`` items so far

    def __call__(self, block: AnyStr) -> int:
        seam = self._tail + block[: self._keep]  # not a copy of the block
        if self._keep:
            self._tail = (self._tail + block[-self._keep :])[-self._keep :]
        return block.count(self._needle) + seam.count(self._needle)


def _count_bytes(path: str, start: int, stop: int, needle: bytes) -> int:
    """How many times ``needle`` occurs in the bytes ``[start, stop)`` of a file."""
    count, total = _Occurrences(needle), 0
    try:
        with open(path, "rb") as f:
            f.seek(start)
            left = stop - start
            while left > 0 and (block := f.read(min(BLOCK_BYTES, left))):
                left -= len(block)
                total += count(block)
    except OSError as e:
        raise CorpusError(describe_os_error(path, e)) from None
    return total


def corpus_pieces(
    segments: Sequence[Segment],
    field: str = DEFAULT_FIELD,
    *,
    eot: bool = True,
    counter: DocumentCount | None = None,
    progress: Progress = _no_progress,
    separator: str = ENDOFTEXT,
    ranges: bool = False,
) -> Iterator[str | TextRange]:
    """The pieces of several segments, in order: ``separator.join`` of all their documents.

    With ``ranges``, a plain text file is handed on as a ``TextRange`` where the text
    around it cannot run into it: with ``eot`` (the separator is then before and after
    it) or as the only segment. For ``iter_encode_parallel`` with a tokenizer that splits
    the separator out first (``parallel_tokenize.reads_text_ranges``).
    """
    counter = DocumentCount() if counter is None else counter
    # Separators are counted in a range's bytes, which newlines translated would change.
    ranges = ranges and (eot or len(segments) == 1) and not {"\r", "\n"} & set(separator)
    for seg in segments:
        before = counter.documents
        inner = DocumentCount(counter.separators)
        for i, piece in enumerate(segment_pieces(seg, field, eot=eot, counter=inner,
                                                 progress=progress, separator=separator,
                                                 ranges=ranges)):  # fmt: skip
            if i == 0 and before and eot:
                yield separator
            yield piece
        counter.documents = before + inner.documents
        for k, count in inner.inner_separators.items():
            counter.inner_separators[before + k] = count
