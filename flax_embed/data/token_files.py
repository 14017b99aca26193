"""Token files: GPT-2 ids on disk, memory-mapped back, checked on the way in and out.

Two layouts, chosen by the file name:

* ``tokens.npy`` — a NumPy ``.npy`` array of shape ``(N,)``; it records its dtype and
  count but not the vocabulary, so readers assume GPT-2's 50,257 unless told otherwise;
* ``tokens.bin`` — the raw little-endian ids, with a JSON sidecar ``tokens.bin.json``::

    {"format": "flax-embed token ids", "dtype": "uint16", "byteorder": "little",
     "vocab_size": 50257, "count": 1234, "bytes": 2468, "crc32": 123456789,
     "complete": true}

The ids are ``uint16`` when the vocabulary fits (at most 65,536 ids, GPT-2 included),
else ``uint32``. Writes go to a temporary file beside the target and are renamed into
place (``_io.AtomicFile``), so a reader never sees half a file.

A ``.bin`` and its sidecar are two files, which no filesystem renames together. The
writer makes them a pair that a reader accepts whole or not at all: it writes the new
sidecar first, marked ``"complete": false``, then renames the data into place, then
rewrites the sidecar as ``"complete": true``. ``bytes`` and ``crc32`` (of the data)
tie the sidecar to its data. A write interrupted between the steps leaves a sidecar
marked incomplete, which readers report as a *half-written pair* (write the file
again); a sidecar marked complete whose data differs in size (or, when the ids are
checked, in CRC-32) is reported as a *corrupt* pair. A ``.bin`` is never left
without a sidecar by the writer. Sidecars without ``bytes``/``crc32``/``complete``
(written by older versions) are read as before. Reads memory-map the
file; ``TokenFileDataset`` (``SlidingWindowDataset.from_file``) iterates windows of
it with resident memory bounded by the batch, not by the file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import time
import zlib
from pathlib import Path

import numpy as np

from flax_embed._io import AtomicFile, atomic_open, atomic_write_json, file_sha256
from flax_embed._validation import (
    check_ids_1d,
    check_one_of,
    check_positive_int,
    first_out_of_range,
)
from flax_embed.tokenizer import GPT2_VOCAB_SIZE

__all__ = [
    "SIDECAR_FORMAT",
    "TokenFileError",
    "TokenFileWriter",
    "open_token_file",
    "read_sidecar",
    "read_token_file",
    "sidecar_path",
    "token_dtype",
    "write_token_file",
]

SIDECAR_FORMAT = "flax-embed token ids"
_SUFFIXES = (".npy", ".bin")
# What a reader accepts: the two dtypes written here, and int32 (what ``encode`` returns,
# so that ``np.save("t.npy", encode(text))`` is a token file too).
_READABLE = {np.dtype("<u2"): "uint16", np.dtype("<u4"): "uint32", np.dtype("<i4"): "int32"}
# Every 1-D header written here is this long (a multiple of 64, as NumPy aligns), so
# that the count can be filled in at the end without moving the data.
_NPY_HEADER_BYTES = 128
_CHECK_CHUNK_TOKENS = 1 << 23  # 8 Mi ids, 16-32 MB, per read when checking ids
PAIR_WAIT = 1.0
"""Seconds a reader waits for a ``.bin`` pair that a writer is replacing (see ``_open_pair``)."""


class TokenFileError(ValueError):
    """A token file is truncated, corrupt, or disagrees with its sidecar or the vocabulary."""


def token_dtype(vocab_size: int) -> np.dtype:
    """The id dtype of a token file: little-endian uint16 when the vocabulary fits, else uint32."""
    vocab_size = check_positive_int("vocab_size", vocab_size, maximum=2**32)
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of a raw ``.bin`` token file: ``tokens.bin`` → ``tokens.bin.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _layout_of(path: Path) -> str:
    if path.suffix not in _SUFFIXES:
        raise ValueError(f"{path}: a token file's name ends in .npy or .bin, not {path.suffix!r}")
    return path.suffix[1:]


def _npy_header(dtype: np.dtype, count: int) -> bytes:
    """A version-1.0 ``.npy`` header for shape ``(count,)``, exactly _NPY_HEADER_BYTES long."""
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                 "shape": (count,)})  # fmt: skip
    prefix = b"\x93NUMPY\x01\x00"
    body_len = _NPY_HEADER_BYTES - len(prefix) - 2
    body = text.ljust(body_len - 1).encode("latin1") + b"\n"
    assert len(body) == body_len, text
    return prefix + body_len.to_bytes(2, "little") + body


class TokenFileWriter:
    """Streams token ids into a token file, atomically.

    The ids go to a temporary file beside ``path``; ``commit()`` (or leaving the
    ``with`` block normally) renames it into place, ``abort()`` (or an exception in
    the block) deletes it. Until then ``path`` keeps its old content, if any.

    Example::

      with TokenFileWriter("tokens.bin") as writer:
          writer.write(encode(first_document))
          writer.write([ENDOFTEXT_ID])

    Args:
      path: the target, ending in ``.npy`` or ``.bin`` (``.bin`` gets a ``.bin.json`` sidecar).
      vocab_size: ids must lie in ``[0, vocab_size)``; it also picks the dtype (``token_dtype``).
      tokenizer: the tokenizer's identity (``Tokenizer.identity``), recorded in a ``.bin``'s
        sidecar as ``"tokenizer"`` (None, e.g. GPT-2's default, records none).
    """

    def __init__(self, path: str | os.PathLike[str], *, vocab_size: int = GPT2_VOCAB_SIZE,
                 tokenizer: dict | None = None):  # fmt: skip
        self.path = Path(path)
        self.tokenizer = tokenizer
        self.layout = _layout_of(self.path)
        self.dtype = token_dtype(vocab_size)
        self.vocab_size = int(vocab_size)
        self.count = 0
        self._crc32 = 0
        # A .bin's bytes, hashed as they are written (a .npy's header changes at the commit).
        self._sha256 = hashlib.sha256() if self.layout == "bin" else None
        self._committed = False
        if self.layout == "bin" and sidecar_path(self.path).is_dir():
            sidecar = sidecar_path(self.path)
            raise IsADirectoryError(errno.EISDIR, "Is a directory (the sidecar)", str(sidecar))
        self._atomic = AtomicFile(self.path)
        self._file = self._atomic.file
        try:
            if self.layout == "npy":
                self._file.write(_npy_header(self.dtype, 0))
        except BaseException:
            self.abort()
            raise

    def write(self, ids_N) -> None:
        """Appends the ids ``ids_N`` (shape ``(N,)``, integers in ``[0, vocab_size)``).

        Raises:
          TypeError: non-integer ids. ValueError: a wrong rank, or an id out of range
            (the error names the first such id and its position in the file).
        """
        ids_N = np.asarray(ids_N)
        if ids_N.size == 0:
            return
        check_ids_1d("token ids", ids_N)
        found = first_out_of_range(ids_N, self.vocab_size)
        if found is not None:
            i, bad = found
            raise ValueError(
                f"token id {ids_N[i]} at position {self.count + i} is outside "
                f"[0, {self.vocab_size}) ({bad} of {ids_N.size} ids in this write)"
            )
        data = ids_N.astype(self.dtype, copy=False).tobytes()
        self._file.write(data)
        self._crc32 = zlib.crc32(data, self._crc32)
        if self._sha256 is not None:
            self._sha256.update(data)
        self.count += ids_N.size

    @property
    def sha256(self) -> str:
        """``"sha256:<hex>"`` of the file's bytes, once committed (``_io.file_sha256``).

        A ``.bin``'s is hashed as its ids are written, so that it is not read back; a
        ``.npy``'s header is only final at the commit, so that file is read once.
        """
        if not self._committed:
            raise RuntimeError(f"{self.path}: not written yet (commit() first)")
        if self._sha256 is None:
            return file_sha256(self.path)
        return "sha256:" + self._sha256.hexdigest()

    def commit(self) -> Path:
        """Finishes the file and renames it into place; returns ``path``.

        For ``.bin``: the sidecar marked incomplete, the data, the sidecar marked
        complete (see the module's docstring). An exception before the data is in
        place restores the old sidecar (or removes the new one); one after it
        finishes the pair if it can.
        """
        try:
            if self.layout == "npy":
                self._file.seek(0)
                self._file.write(_npy_header(self.dtype, self.count))
            self._atomic.finish()
            if self.layout == "npy":
                self._atomic.rename()
                self._committed = True
                return self.path
        except BaseException:
            self.abort()
            raise
        sidecar = sidecar_path(self.path)
        try:
            old = sidecar.read_bytes()
        except FileNotFoundError:
            old = None
        except BaseException:
            self.abort()
            raise
        try:
            atomic_write_json(sidecar, {**self._sidecar(), "complete": False})
            self._atomic.rename()
            atomic_write_json(sidecar, self._sidecar())
        except BaseException:
            # The data in place (an interrupt can come right after its rename): finish the
            # pair, one small write.
            if self._atomic.in_place():
                with contextlib.suppress(Exception):
                    atomic_write_json(sidecar, self._sidecar())
            else:
                self.abort()
                with contextlib.suppress(Exception):
                    if old is None:
                        sidecar.unlink(missing_ok=True)
                    else:
                        with atomic_open(sidecar) as f:
                            f.write(old)
            raise
        self._committed = True
        return self.path

    def abort(self) -> None:
        """Deletes the temporary file; ``path`` is left as it was."""
        self._atomic.abort()

    def _sidecar(self) -> dict:
        return {
            "format": SIDECAR_FORMAT,
            "dtype": _READABLE[self.dtype],
            "byteorder": "little",
            "vocab_size": self.vocab_size,
            "count": self.count,
            "bytes": self.count * self.dtype.itemsize,
            "crc32": self._crc32,
            "complete": True,
            **({} if self.tokenizer is None else {"tokenizer": self.tokenizer}),
        }

    def __enter__(self) -> TokenFileWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_token_file(
    path: str | os.PathLike[str], ids_N, *, vocab_size: int = GPT2_VOCAB_SIZE
) -> Path:
    """Writes the ids ``ids_N`` (shape ``(N,)``) as a token file, atomically.

    Example::

      write_token_file("tokens.npy", encode(text))
      read_token_file("tokens.npy")[:3]   # memmap([40, 367, 2885], dtype=uint16)

    Args:
      path: ``*.npy``, or ``*.bin`` plus a ``*.bin.json`` sidecar.
      ids_N (np.ndarray): integer ids in ``[0, vocab_size)``, shape ``(N,)``.
      vocab_size: the vocabulary; uint16 ids when it is at most 65,536, else uint32.

    Returns:
      ``path``. On any error nothing is left at ``path`` that was not there before.
    """
    with TokenFileWriter(path, vocab_size=vocab_size) as writer:
        writer.write(ids_N)
    return writer.path


def _sidecar_bytes(path: Path) -> bytes | None:
    """The raw sidecar of ``path``, None when there is none; an OSError names the sidecar."""
    sidecar = sidecar_path(path)
    try:
        return sidecar.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        e.filename = str(sidecar)
        raise


def _marked_incomplete(raw: bytes | None) -> bool:
    if raw is None:
        return False
    try:
        meta = json.loads(raw)
    except (TypeError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("complete", True) is False


def read_sidecar(path: str | os.PathLike[str]) -> tuple[np.dtype, int, int, int | None]:
    """``(dtype, count, vocab_size, crc32)`` from the sidecar of the ``.bin`` token file ``path``.

    The one sidecar parser (token files and shards alike), strict: a missing,
    malformed, ill-typed or incomplete sidecar raises TokenFileError naming it and
    the key; nothing is defaulted.
    """
    path = Path(path)
    return _read_sidecar(path, _sidecar_bytes(path))


def _read_sidecar(path: Path, raw: bytes | None) -> tuple[np.dtype, int, int, int | None]:
    """``(dtype, count, vocab_size, crc32)`` from a ``.bin`` file's sidecar ``raw``, checked.

    Raises TokenFileError for a missing (``raw=None``), malformed or incomplete
    (half-written) sidecar.
    """
    sidecar = sidecar_path(path)
    try:
        if raw is None:
            raise FileNotFoundError
        meta = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise TokenFileError(
            f"{path}: no sidecar {sidecar.name} (a raw .bin token file needs it for its dtype, "
            "vocabulary and count; flax-embed never leaves a .bin without one, so it was "
            "deleted or not copied; a raw .bin from elsewhere, e.g. nanoGPT's, reads with its "
            "dtype given: read_token_file(path, dtype='uint16') or from_file(..., dtype=...))"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenFileError(f"{sidecar}: not a JSON sidecar ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise TokenFileError(f"{sidecar}: not a token-file sidecar (no format {SIDECAR_FORMAT!r})")
    kinds = {
        "dtype": "a string",
        "byteorder": "a string",
        "vocab_size": "an int",
        "count": "an int",
    }
    for key, what in kinds.items():
        value = meta.get(key)
        kind = str if what == "a string" else int
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TokenFileError(f"{sidecar}: {key!r} must be {what}, got {value!r}")
    if meta["byteorder"] != "little":
        raise TokenFileError(f"{sidecar}: byteorder {meta['byteorder']!r} is not 'little'")
    names = {name: dtype for dtype, name in _READABLE.items()}
    check_one_of(f"{sidecar}: 'dtype'", meta["dtype"], tuple(sorted(names)), error=TokenFileError)
    dtype, count, vocab = names[meta["dtype"]], meta["count"], meta["vocab_size"]
    if count < 0 or vocab < 1:
        raise TokenFileError(f"{sidecar}: count {count} or vocab_size {vocab} is out of range")
    if meta.get("complete", True) is not True:
        raise TokenFileError(
            f"{path}: half-written pair: its sidecar {sidecar.name} is marked incomplete, "
            "so a write of this token file was interrupted between its two files "
            "(the data may be the old or the new one); write it again"
        )
    for key in ("bytes", "crc32"):
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TokenFileError(f"{sidecar}: {key!r} must be an int, got {value!r}")
    if meta.get("bytes") is not None and meta["bytes"] != count * dtype.itemsize:
        raise TokenFileError(
            f"{sidecar}: disagrees with itself: {count} {dtype.name} ids are "
            f"{count * dtype.itemsize} bytes, not {meta['bytes']}"
        )
    if vocab - 1 > np.iinfo(dtype).max:
        raise TokenFileError(
            f"{sidecar}: disagrees with itself: dtype {meta['dtype']} cannot hold the ids of a "
            f"{vocab}-id vocabulary"
        )
    return dtype, count, vocab, meta.get("crc32")


def _read_npy_header(path: Path, f) -> tuple[np.dtype, int]:
    """``(dtype, count)`` from a ``.npy`` header; leaves ``f`` at the first id."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, SyntaxError, EOFError) as e:
        raise TokenFileError(f"{path}: not a valid .npy file ({e})") from None
    if len(shape) != 1:
        raise TokenFileError(f"{path}: token ids must have rank 1, got shape {shape}")
    if dtype not in _READABLE:
        raise TokenFileError(
            f"{path}: dtype {dtype.str} is not a token dtype "
            "(little-endian uint16, uint32 or int32)"
        )
    return dtype, shape[0]


def _raw_dtype(dtype) -> np.dtype:
    """The explicit ``dtype=`` of a token file, checked: uint16, uint32 or int32."""
    try:
        dt = np.dtype(dtype).newbyteorder("<")
    except TypeError:
        dt = None
    by_name = {name: readable for readable, name in _READABLE.items()}
    return by_name[check_one_of("dtype", _READABLE.get(dt, dtype), tuple(sorted(by_name)))]


def _inspect(
    path: Path, f, sidecar: bytes | None, vocab_size: int | None, asked=None
) -> tuple[np.dtype, int, int, int, int | None]:
    """Checks an open token file's layout; returns ``(dtype, count, data_offset, vocab, crc32)``.

    ``asked``: the caller's ``dtype=``; it reads a ``.bin`` without a sidecar (nanoGPT's).
    """
    crc32 = None
    size = os.fstat(f.fileno()).st_size
    if _layout_of(path) == "bin" and asked is not None and sidecar is None:
        raw = _raw_dtype(asked)
        if size % raw.itemsize:
            raise TokenFileError(
                f"{path}: {size} bytes is not a whole number of {raw.name} ids "
                "(truncated, or another dtype?)"
            )
        vocab = GPT2_VOCAB_SIZE if vocab_size is None else vocab_size
        return raw, size // raw.itemsize, 0, vocab, None
    if _layout_of(path) == "npy":
        dtype, count = _read_npy_header(path, f)
        offset = f.tell()
        vocab = GPT2_VOCAB_SIZE if vocab_size is None else vocab_size
        described = f"its header says {count} {dtype.name} ids"
    else:
        dtype, count, recorded, crc32 = _read_sidecar(path, sidecar)
        offset = 0
        if vocab_size is not None and recorded > vocab_size:
            raise TokenFileError(
                f"{path} holds ids of a {recorded}-id vocabulary (its sidecar says), "
                f"more than vocab_size={vocab_size}"
            )
        vocab = recorded if vocab_size is None else vocab_size
        described = f"its sidecar {sidecar_path(path).name} says {count} {dtype.name} ids"
    if asked is not None and _raw_dtype(asked) != dtype:
        raise TokenFileError(f"{path}: holds {dtype.name} ids, not the dtype={asked!r} asked for")
    expected = offset + count * dtype.itemsize
    if size != expected:
        what = "truncated" if size < expected else "longer than described"
        raise TokenFileError(
            f"{path}: corrupt: {what}: {size - offset} bytes of ids, but {described} = "
            f"{count * dtype.itemsize} bytes "
            "(a partial copy, or a sidecar or dtype from another file?)"
        )
    return dtype, count, offset, vocab, crc32


def _open_pair(path: Path):
    """``(open data file, its sidecar's bytes)``, consistent although a writer may be at work.

    A ``.bin`` and its sidecar are two files. The sidecar is read before and after
    the data file is opened; when both reads agree and it is marked complete, the
    open file is the data it describes (the writer renames the data in between a
    sidecar marked incomplete and one marked complete). Otherwise a writer is at
    work: it is tried again for up to ``PAIR_WAIT`` seconds, after which a sidecar
    still marked incomplete is reported as a half-written pair.
    """
    if _layout_of(path) == "npy":
        return open(path, "rb"), None
    deadline = time.monotonic() + PAIR_WAIT
    while True:
        before = _sidecar_bytes(path)
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed by the caller)
        except FileNotFoundError:
            if before is None:
                raise
            f = None
        after = _sidecar_bytes(path)
        settled = before == after and not _marked_incomplete(after)
        if f is not None and settled:
            return f, after
        if f is not None:
            f.close()
        if time.monotonic() >= deadline or (settled and f is None):
            break
        time.sleep(0.01)
    _read_sidecar(path, after)  # a half-written pair or a malformed sidecar says so
    if f is None:
        raise TokenFileError(
            f"{path}: no such file, but its sidecar {sidecar_path(path).name} is there "
            "(the data was deleted or not copied)"
        )
    raise TokenFileError(f"{path}: its sidecar kept changing for {PAIR_WAIT} s (a writer at work?)")


def _check_ids(
    path: Path, f, dtype: np.dtype, count: int, offset: int, vocab_size: int, crc32: int | None
) -> None:
    """Raises TokenFileError naming the first id outside ``[0, vocab_size)``; O(chunk) memory.

    With ``crc32`` (a ``.bin``'s sidecar records it), also checks the data's CRC-32.
    """
    crc = 0
    buffer = bytearray(_CHECK_CHUNK_TOKENS * dtype.itemsize)
    f.seek(offset)
    start = 0
    while start < count:
        n = min(_CHECK_CHUNK_TOKENS, count - start)
        view = memoryview(buffer)[: n * dtype.itemsize]
        if f.readinto(view) != len(view):
            raise TokenFileError(f"{path}: truncated while reading (changed on disk?)")
        if crc32 is not None:
            crc = zlib.crc32(view, crc)
        ids = np.frombuffer(view, dtype=dtype)
        found = first_out_of_range(ids, vocab_size)
        if found is not None:
            i, _ = found
            raise TokenFileError(
                f"{path}: token id {ids[i]} at position {start + i} is outside "
                f"[0, {vocab_size}) (vocab_size={vocab_size}; the file may be corrupt or "
                "tokenized with another vocabulary)"
            )
        start += n
    if crc32 is not None and crc != crc32:
        raise TokenFileError(
            f"{path}: corrupt: its CRC-32 is {crc}, but its sidecar {sidecar_path(path).name} "
            f"says {crc32} (the data changed after it was written, or the pair was put "
            "together from two files)"
        )


def open_token_file(
    path: str | os.PathLike[str], vocab_size: int | None, check_ids: bool, *, dtype=None
) -> tuple[np.ndarray, int]:
    path = Path(path)
    if vocab_size is not None:
        token_dtype(vocab_size)  # type and range
    asked = dtype
    if asked is not None:
        _raw_dtype(asked)
    # One open file for the header, the checks and the mapping: a file replaced by a
    # rename meanwhile is not mixed up with its successor.
    f, sidecar = _open_pair(path)
    with f:
        dtype, count, offset, vocab, crc32 = _inspect(path, f, sidecar, vocab_size, asked)
        if check_ids and count:
            _check_ids(path, f, dtype, count, offset, vocab, crc32)
        if count == 0:  # mmap cannot map an empty range
            return np.zeros(0, dtype), vocab
        return np.memmap(f, dtype=dtype, mode="r", offset=offset, shape=(count,)), vocab


def read_token_file(
    path: str | os.PathLike[str],
    *,
    vocab_size: int | None = None,
    check_ids: bool = True,
    dtype: str | np.dtype | None = None,
) -> np.ndarray:
    """Memory-maps a token file (read-only), after checking it.

    Checked always (cheap): the ``.npy`` header, or the ``.bin`` sidecar (present,
    well-formed, consistent), and that the file holds exactly the bytes they describe
    (a truncated or padded file is an error). Checked with ``check_ids=True``, the
    default: that every id lies in ``[0, vocab_size)`` — one sequential read of the
    file in 8 Mi-id chunks (resident memory O(chunk), about 0.5 s per GB from the page
    cache); pass ``check_ids=False`` to skip it for files you trust.

    Args:
      path: ``*.npy`` or ``*.bin`` (with its ``*.bin.json`` sidecar).
      vocab_size: the vocabulary the ids must fit. Default: the sidecar's for ``.bin``,
        GPT-2's 50,257 for ``.npy`` (which does not record it). A ``.bin`` written for a
        larger vocabulary than ``vocab_size`` is an error.
      check_ids: whether to read every id and check it against ``vocab_size``.
      dtype: ``"uint16"``, ``"uint32"`` or ``"int32"``: reads a raw ``.bin`` that has
        no sidecar (nanoGPT's ``train.bin`` is ``dtype="uint16"``), its count taken
        from its size; for other files, the dtype they must hold.

    Returns:
      The ids, shape ``(N,)``, uint16/uint32 (or int32 for an int32 ``.npy``): a
      read-only ``np.memmap`` (a plain empty array when ``N == 0``).

    Raises:
      TokenFileError: a truncated or corrupt file, a missing or disagreeing sidecar,
        an id out of range (named, with its position).
      OSError: the file cannot be read.
    """
    return open_token_file(path, vocab_size, check_ids, dtype=dtype)[0]
