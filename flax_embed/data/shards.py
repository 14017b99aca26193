"""Sharded token files: a corpus in, ``tokens-00000.bin``, ... and ``manifest.json`` out.

``tokenize_corpus(inputs, out_dir, shard_tokens=N)`` writes the ids
``encode("<|endoftext|>".join(documents))`` of the corpus (``corpus.py``) as shards of
exactly ``N`` tokens each (the last one shorter): shard ``k`` holds the global ids
``[k*N, (k+1)*N)``. Each shard is a ``.bin`` token file with its sidecar; the manifest
lists the shards (name, token count, sha256 of the ``.bin``), the dtype, the vocabulary
and the inputs with their sizes. Documents joined by the separator also get a document
index, ``documents.npy`` (``DOCUMENT_INDEX``): the global start of each document, int64
``(D,)``, listed as ``"document_index"`` (manifest version 3; see ``docs/corpora.md``).

How a job runs (the same steps on one machine and on Ray, ``ray_tokenize.py``):

1. **Plan.** The inputs are cut into document-aligned ``Segment``\\ s (``plan_segments``);
   consecutive segments of at least ``segment_bytes`` together form a *unit* (each
   segment of a big input is one; with ``eot=False`` all of them form one unit, since
   documents joined by nothing cannot be tokenized apart).
2. **Tokenize units.** Each unit's ids, ``encode("<|endoftext|>".join(its documents))``,
   go to ``OUT/.work/part-XXXXX.bin``. Units are independent: tiktoken splits at
   ``<|endoftext|>`` before anything else, so the global ids are the units' ids joined
   by 50256 (units with no document contribute nothing). With ``eot``, the starts of
   the unit's documents go to ``part-XXXXX.docs.npy`` (``document_starts``: from the
   documents and the separators counted inside them, never from the ids alone).
3. **Cut shards.** From the unit token counts, shard ``k``'s span of the global stream
   is known exactly; it is copied from the part files into ``tokens-0000k.bin``. The
   units' document starts, moved by the tokens before each unit, form ``documents.npy``.
4. **Publish.** The new shards are built in ``.work``; only when all are complete is
   the new manifest recorded there (``commit.json``), the shards and the document
   index renamed into ``OUT``,
   the old job's shards that the new one does not have deleted, the manifest written
   atomically, and ``.work`` deleted. A run that fails before the commit leaves a
   finished output as it was; one killed during the swap is finished by the next run.

The folder is the job's: a lock (``.flax-embed.lock``, ``fcntl.flock``) keeps a second
writer out, and a folder whose ``manifest.json`` or ``.work`` was not written by this
code, or that holds files named like shards (or a ``documents.npy``) that no manifest of
ours lists, is refused
(``OutputError``): only files the job wrote are ever replaced or deleted. The manifest
records a job id and each input's identity (path, bytes, ``mtime_ns``, and with
``verify_inputs=True`` its sha256): a rerun over a finished folder returns it only if
the inputs and options are the same and every shard (and the document index) still
verifies, else it redoes the job.

A single token file (``tokenize_file``, ``flax-embed tokenize ... -o tokens.bin``) is the
same job with one shard, the file itself: one unit is written straight into it, several
are staged in a temporary folder of ours beside it (no ``.work``, no lock, no resume).
Who runs units and shards is a ``Runner`` (``LocalRunner``, ``ray_tokenize.RayRunner``).

So the shards depend only on the ids and ``N``, never on who ran which unit: a Ray
run and a local run give the same bytes, shard for shard. Every file is written
atomically (``TokenFileWriter``, ``atomic_open``); ``.work`` records each finished
unit and shard with its checksum, so re-running an interrupted job over the same
directory skips what is complete and valid.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import errno
import functools
import hashlib
import json
import operator
import os
import re
import shutil
import socket
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from flax_embed._io import (
    TEMP_MARK,
    atomic_open,
    atomic_write_json,
    describe_os_error,
    file_sha256,
    interrupts_held,
    remove_stale_temps,
    resolves_inside,
    temp_path,
)
from flax_embed._validation import check_positive_int
from flax_embed.data.corpus import (
    DEFAULT_FIELD,
    CorpusError,
    DocumentCount,
    Segment,
    corpus_pieces,
    expand_inputs,
    input_identity,
    plan_segments,
)
from flax_embed.data.fingerprint import token_digest
from flax_embed.data.parallel_tokenize import (
    default_workers,
    iter_encode_parallel,
    reads_text_ranges,
)
from flax_embed.data.token_files import (
    TokenFileError,
    TokenFileWriter,
    open_token_file,
    read_sidecar,
    sidecar_path,
    token_dtype,
)
from flax_embed.data.windows import Batch
from flax_embed.tokenizer import (
    ENDOFTEXT_ID,
    GPT2_IDENTITY,
    GPT2_VOCAB_SIZE,
    Tokenizer,
    load_tokenizer,
)

__all__ = [
    "DEFAULT_SHARD_TOKENS",
    "DOCUMENT_INDEX",
    "MANIFEST",
    "MANIFEST_FORMAT",
    "LocalRunner",
    "OutputError",
    "Runner",
    "RunnerError",
    "ShardedTokenDataset",
    "manifest_tokenizer",
    "output_paths",
    "read_manifest",
    "shard_name",
    "tokenize_corpus",
    "tokenize_file",
    "verify_document_index",
]

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "flax-embed token shards"
MANIFEST_VERSION = 3
"""3: the document index (``documents.npy``, ``"document_index"``); 2 and older lack it."""
DOCUMENT_INDEX = "documents.npy"
"""The document index beside the shards: int64 ``(D,)``, the global start of each document."""
DEFAULT_SHARD_TOKENS = 100_000_000
"""Tokens per shard by default: 200 MB uint16 files, as nanoGPT's FineWeb shards."""
DEFAULT_SEGMENT_BYTES = 64 << 20
"""Input bytes per unit of work (JSONL byte ranges, Parquet row groups)."""
WORK_DIR = ".work"
WORK_FORMAT = "flax-embed tokenize work"
LOCK = ".flax-embed.lock"
"""The lock file of a folder being written (``fcntl.flock``; it holds the writer's pid and host)."""
_COPY_TOKENS = 1 << 22
_ONE_SHARD = 1 << 62  # shard_tokens of a single-file job: all of its tokens in one shard
_SHARD_FILE = re.compile(r"tokens-\d{5,}\.bin(\.json)?")
_WORK_FILE = re.compile(
    r"(plan|commit)\.json|documents\.npy"
    r"|(part|tokens|shard)-\d{5,}\.(bin|bin\.json|done\.json|docs\.npy)"
)


class RunnerError(RuntimeError):
    """A runner cannot start or reach its workers (a Ray cluster that does not answer); one
    line."""


class OutputError(ValueError):
    """The output folder cannot be used (not this command's, or in use); one line naming it."""


def shard_name(index: int) -> str:
    """``tokens-00000.bin``, ``tokens-00001.bin``, ..."""
    return f"tokens-{index:05d}.bin"


# --- the units of work (module-level functions: Ray pickles them) -------------------------


@dataclasses.dataclass(frozen=True)
class UnitJob:
    """Tokenize ``segments`` into the token file ``part``."""

    segments: tuple[Segment, ...]
    part: str
    field: str
    eot: bool
    workers: int
    vocab_size: int = GPT2_VOCAB_SIZE
    tokenizer: Tokenizer | None = None
    """None: GPT-2 (``gpt2_tokenizer``); a ``Tokenizer`` pickles as its spec (Ray)."""
    index: bool = True
    """With ``eot``: also write the unit's document index beside ``part`` (not for a single
    token file, whose job keeps no index)."""


def run_unit(job: UnitJob, progress: Callable[[int], object] | None = None) -> dict:
    """Writes a unit's ids to ``job.part``; returns ``{"tokens", "documents", "sha256"}``.

    With ``job.eot`` and ``job.index`` it also writes the unit's document index, the
    start of each of its documents in its ids (``unit_index_path``), and returns its
    ``"index_sha256"``.
    """
    counter = DocumentCount(separators=job.eot and job.index)
    tok = job.tokenizer
    separator_id = ENDOFTEXT_ID if tok is None else tok.separator_id
    progress = progress or (lambda n: None)
    pieces = corpus_pieces(job.segments, job.field, eot=job.eot, counter=counter,
                           progress=progress, ranges=reads_text_ranges(tok),
                           **({} if tok is None else {"separator": tok.separator}))  # fmt: skip
    found: list[np.ndarray] = []  # where the separator's id is, in the unit's ids
    recorded = None if tok is None else tok.recorded_identity  # the sidecar of a file's one unit
    with TokenFileWriter(job.part, vocab_size=job.vocab_size, tokenizer=recorded) as writer:
        for ids_N in iter_encode_parallel(
            pieces, workers=job.workers, tokenizer=tok, processes=True, progress=progress
        ):
            if job.eot and job.index:
                found.append(np.flatnonzero(ids_N == separator_id) + writer.count)
            writer.write(ids_N)
    result = {"tokens": writer.count, "documents": counter.documents,
              "sha256": writer.sha256}  # fmt: skip
    if job.eot and job.index:
        where = job.segments[0].path if job.segments else job.part
        positions = np.concatenate(found) if found else np.zeros(0, np.int64)
        starts = document_starts(positions, counter, where=where, separator_id=separator_id)
        index = unit_index_path(job.part)
        write_document_index(index, [starts], len(starts))
        result["index_sha256"] = file_sha256(index)
    return result


def unit_index_path(part: str | os.PathLike[str]) -> Path:
    """``part-00000.bin`` -> ``part-00000.docs.npy``: a unit's document index."""
    part = Path(part)
    return part.with_name(part.name.removesuffix(".bin") + ".docs.npy")


def document_starts(separators_S: np.ndarray, counter: DocumentCount, *, where: str,
                    separator_id: int) -> np.ndarray:  # fmt: skip
    """The start of each document in ids whose separator ids are at ``separators_S``.

    The documents are ``counter``'s, joined by the separator: the ids hold one separator
    id per separator text, between documents and inside them (``counter.inner_separators``
    per document). So the separator after document ``k`` is the id number
    ``inner_0 + ... + inner_k + k``, whatever the text inside the documents: a document
    containing ``<|endoftext|>`` stays one document.

    Returns:
      ``(D,)`` int64: document ``k`` is ``ids[starts[k] : starts[k + 1] - 1]``, the last
      one ``ids[starts[-1]:]``.

    Raises:
      CorpusError: the ids hold another number of separator ids than the text has
        separators (a tokenizer that does not map its separator's text to its id one to
        one): the boundaries could not be exact.
    """
    d = counter.documents
    if d == 0:
        return np.zeros(0, np.int64)
    inner_D = np.zeros(d, np.int64)
    for k, count in counter.inner_separators.items():
        inner_D[k] = count
    expected = int(inner_D.sum()) + d - 1
    if len(separators_S) != expected:
        raise CorpusError(
            f"{where}: the tokenizer gave {len(separators_S)} separator ids ({separator_id}) "
            f"for the {expected} separators in the text of its {d} documents; the document "
            "index cannot be exact with this tokenizer (its separator is not matched one "
            "to one in the text)"
        )
    nth_K = np.cumsum(inner_D[:-1]) + np.arange(d - 1)
    return np.concatenate([[0], np.asarray(separators_S, np.int64)[nth_K] + 1]).astype(np.int64)


def write_document_index(path: str | os.PathLike[str], chunks: Iterable[np.ndarray],
                         count: int) -> None:  # fmt: skip
    """Writes the ``.npy`` file of ``count`` int64 starts given in ``chunks``, atomically.

    The header is ``np.save``'s (format 1.0), so the bytes depend only on the values.
    """
    with atomic_open(path, "wb") as f:
        header = {"descr": "<i8", "fortran_order": False, "shape": (count,)}
        np.lib.format.write_array_header_1_0(f, header)
        written = 0
        for chunk in chunks:
            f.write(np.ascontiguousarray(chunk, dtype="<i8").tobytes())
            written += len(chunk)
        if written != count:
            raise AssertionError(f"{path}: {written} document starts, {count} announced")


@dataclasses.dataclass(frozen=True)
class ShardJob:
    """Copy ``spans`` (``(part path or None for one EOT id, start, stop)``) into ``path``."""

    path: str
    spans: tuple[tuple[str | None, int, int], ...]
    vocab_size: int = GPT2_VOCAB_SIZE
    separator_id: int = ENDOFTEXT_ID
    tokenizer: dict | None = None
    """The identity recorded in the shard's sidecar (None for GPT-2: none, as before)."""


def run_shard(job: ShardJob) -> dict:
    """Writes one shard; returns ``{"name", "tokens", "sha256"}``."""
    eot = np.array([job.separator_id], np.int64)
    with TokenFileWriter(job.path, vocab_size=job.vocab_size,
                         tokenizer=job.tokenizer) as writer:  # fmt: skip
        for part, start, stop in job.spans:
            if part is None:
                writer.write(eot)
                continue
            ids, _ = open_token_file(part, job.vocab_size, False)
            for a in range(start, stop, _COPY_TOKENS):
                writer.write(np.asarray(ids[a : min(stop, a + _COPY_TOKENS)]))
            del ids
    return {"name": Path(job.path).name, "tokens": writer.count,
            "sha256": writer.sha256}  # fmt: skip


def cut_shards(
    unit_results: Sequence[dict], parts: Sequence[str], shard_tokens: int, eot: bool
) -> list[tuple[tuple[str | None, int, int], ...]]:
    """Each shard's spans: the global stream (units joined by EOT) cut every ``shard_tokens``."""
    stream: list[tuple[str | None, int]] = []  # (part or None for EOT, length)
    seen_documents = False
    for result, part in zip(unit_results, parts, strict=True):
        if not result["documents"]:
            continue
        if seen_documents and eot:
            stream.append((None, 1))
        seen_documents = True
        if result["tokens"]:
            stream.append((part, result["tokens"]))
    shards: list[tuple[tuple[str | None, int, int], ...]] = []
    current: list[tuple[str | None, int, int]] = []
    room = shard_tokens
    for part, length in stream:
        start = 0
        while start < length:
            take = min(room, length - start)
            current.append((part, start, start + take))
            start += take
            room -= take
            if room == 0:
                shards.append(tuple(current))
                current, room = [], shard_tokens
    if current:
        shards.append(tuple(current))
    return shards


# --- runners ------------------------------------------------------------------------------


@runtime_checkable
class Runner(Protocol):
    """What a job runs its units and shards on: ``LocalRunner``, ``ray_tokenize.RayRunner``.

    Progress is counted in input bytes, whoever runs the units: a runner reports them
    to ``progress`` as it reads them (``LocalRunner``) or as each unit finishes
    (``RayRunner``, ``sum(s.nbytes for s in job.segments)``).
    """

    workers: int
    """Worker processes each unit is tokenized on (``UnitJob.workers``): 1 where a runner
    runs units side by side (Ray: one task per CPU)."""

    def start(self) -> None:
        """Starts what the runner runs on (a Ray instance), once; a job calls it after
        checking its inputs. Raises ``RunnerError`` (one line) if it cannot."""
        ...

    def run_units(
        self, jobs: Sequence[tuple[int, UnitJob]], progress: Callable[[int], object]
    ) -> Iterator[tuple[int, dict]]:
        """Runs ``jobs``; yields ``(index, run_unit's result)`` as each finishes."""
        ...

    def run_shards(self, jobs: Sequence[tuple[int, ShardJob]]) -> Iterator[tuple[int, dict]]:
        """Runs ``jobs``; yields ``(index, run_shard's result)`` as each finishes."""
        ...

    def close(self) -> None:
        """Releases what the runner started (a Ray instance); the job does not call it."""
        ...


class LocalRunner:
    """Runs the units one after the other, each on ``workers`` worker processes
    (``iter_encode_parallel(processes=True)``)."""

    def __init__(self, workers: int | None = None):
        self.workers: int = default_workers() if workers is None else check_positive_int(
            "workers", workers)  # fmt: skip

    def start(self) -> None:
        pass  # the worker processes start with each unit

    def run_units(
        self, jobs: Sequence[tuple[int, UnitJob]], progress: Callable[[int], object]
    ) -> Iterator[tuple[int, dict]]:
        for i, job in jobs:
            yield i, run_unit(job, progress)

    def run_shards(self, jobs: Sequence[tuple[int, ShardJob]]) -> Iterator[tuple[int, dict]]:
        for i, job in jobs:
            yield i, run_shard(job)

    def close(self) -> None:
        pass


def _local_runner(workers: int | None) -> Runner:
    """The default runner (typed as a ``Runner``: pyright checks that it is one)."""
    return LocalRunner(workers)


# --- the manifest -------------------------------------------------------------------------


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def read_manifest(path: str | os.PathLike[str]) -> tuple[dict, Path]:
    """``(manifest, folder)`` from ``manifest.json`` or the folder holding it, checked.

    Each shard must be named once, by a plain file name that resolves (symlinks
    included) inside the manifest's folder, and ``tokens`` must be the sum of the
    shards' token counts.

    Raises:
      TokenFileError: not a manifest, or one with missing, ill-typed or inconsistent fields.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokenFileError(f"{path}: no such manifest (was the job finished?)") from None
    except OSError as e:
        raise TokenFileError(describe_os_error(path, e)) from None
    except ValueError as e:
        raise TokenFileError(f"{path}: not a JSON manifest ({e})") from None
    except RecursionError:
        raise TokenFileError(f"{path}: not a token-shard manifest (JSON nested too deeply)") \
            from None  # fmt: skip
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise TokenFileError(f"{path}: not a token-shard manifest (no format {MANIFEST_FORMAT!r})")
    shards = manifest.get("shards")
    ok = isinstance(shards, list) and all(
        isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("sha256"), str)
        and _is_count(s.get("tokens")) and Path(s["name"]).name == s["name"]
        and s["name"] not in ("", ".", "..")
        for s in shards
    )  # fmt: skip
    if not ok or not isinstance(shards, list) or not _is_count(manifest.get("vocab_size")):
        raise TokenFileError(f"{path}: a malformed manifest (shards or vocab_size)")
    folder = path.parent
    seen: set[str] = set()
    for entry in shards:
        if entry["name"] in seen:
            raise TokenFileError(f"{path}: lists the shard {entry['name']} twice")
        seen.add(entry["name"])
        if not resolves_inside(folder, entry["name"]):
            raise TokenFileError(f"{folder / entry['name']}: resolves outside the manifest's "
                                 f"folder {folder} (a symlink?); refused")  # fmt: skip
    index = manifest.get("document_index")
    if index is not None:
        if not (
            isinstance(index, dict)
            and isinstance(index.get("name"), str)
            and Path(index["name"]).name == index["name"]
            and index["name"] not in ("", ".", "..", *seen)
            and _is_count(index.get("documents"))
            and isinstance(index.get("sha256"), str)
        ):
            raise TokenFileError(f"{path}: a malformed manifest (document_index)")
        if not resolves_inside(folder, index["name"]):
            raise TokenFileError(f"{folder / index['name']}: resolves outside the manifest's "
                                 f"folder {folder} (a symlink?); refused")  # fmt: skip
    total = sum(entry["tokens"] for entry in shards)
    if manifest.get("tokens") != total:
        raise TokenFileError(f"{path}: 'tokens' is {manifest.get('tokens')!r}, but its shards "
                             f"hold {total} tokens in all")  # fmt: skip
    return manifest, folder


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _digests(path: Path) -> tuple[str, int]:
    """``("sha256:<hex>", crc32)`` of a file's bytes, in one pass."""
    digest, crc = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
            crc = zlib.crc32(block, crc)
    return "sha256:" + digest.hexdigest(), crc


def _check_pair(path: Path, tokens: int, sha256: str | None) -> None:
    """Checks a ``.bin`` shard or part and its sidecar: complete, ``tokens`` ids, its digests.

    The sidecar is read by the one strict parser (``token_files.read_sidecar``). Raises
    TokenFileError naming the file. With ``sha256=None`` only the sizes are checked.
    """
    if not path.is_file() or not sidecar_path(path).is_file():
        raise TokenFileError(f"{path}: shard missing (or its sidecar), listed in the manifest")
    dtype, count, _, crc32 = read_sidecar(path)
    size = path.stat().st_size
    if count != tokens or size != tokens * dtype.itemsize:
        raise TokenFileError(
            f"{path}: size disagrees with the manifest: {size} bytes, sidecar count "
            f"{count}, manifest {tokens} tokens"
        )
    if sha256 is None:
        return
    digest, crc = _digests(path)
    if digest != sha256:
        raise TokenFileError(f"{path}: checksum disagrees with the manifest (a corrupt or "
                             "replaced shard)")  # fmt: skip
    if crc32 is not None and crc32 != crc:
        raise TokenFileError(f"{path}: its sidecar's crc32 disagrees with the data (an edited "
                             "sidecar, or a pair put together from two files)")  # fmt: skip


def manifest_tokenizer(meta: dict) -> dict | None:
    """The tokenizer identity a manifest or sidecar records (``Tokenizer.identity``).

    One without a ``"tokenizer"`` field was written before the tokenizer could be
    chosen: GPT-2's, if its ``vocab_size`` is GPT-2's (else None: unknown).
    """
    recorded = meta.get("tokenizer")
    if isinstance(recorded, dict):
        return recorded
    return dict(GPT2_IDENTITY) if meta.get("vocab_size") == GPT2_VOCAB_SIZE else None


def _same_tokenizer(a: dict, b: dict) -> bool:
    keys = ("sha256", "vocab_size", "separator_id")
    return all(a.get(k) == b.get(k) for k in keys)


def _describe(identity: dict) -> str:
    return f"{identity.get('name')} ({identity.get('sha256')}, {identity.get('vocab_size')} ids)"


def _refuse_other_tokenizer(out: Path, identity: dict) -> None:
    """CorpusError if ``out`` holds (or is making) another tokenizer's shards."""
    for path in (out / MANIFEST, out / WORK_DIR / "plan.json"):
        found = _read_json(path)
        if isinstance(found, dict) and isinstance(found.get("meta"), dict):
            found = found["meta"]
        if not isinstance(found, dict):
            continue
        other = manifest_tokenizer(found)
        if other is not None and not _same_tokenizer(other, identity):
            raise CorpusError(
                f"{out}: holds the shards of another tokenizer, {_describe(other)}, not "
                f"{_describe(identity)}; write them to another folder (or delete {out})"
            )


def verify_shard(folder: Path, entry: dict, *, checksum: bool = True) -> None:
    """Raises TokenFileError naming the shard if it or its sidecar disagrees with ``entry``.

    Always checks the sizes and that the sidecar is complete; with ``checksum``, also
    the sha256 against ``entry`` and the CRC-32 against the sidecar (one read).
    """
    try:
        _check_pair(folder / entry["name"], entry["tokens"], entry["sha256"] if checksum else None)
    except OSError as e:
        raise TokenFileError(describe_os_error(folder / entry["name"], e)) from None


def verify_document_index(folder: Path, manifest: dict, *, checksum: bool = True) -> None:
    """Raises TokenFileError naming the file if the manifest's document index disagrees.

    Checks that ``documents.npy`` is a whole ``(D,)`` int64 ``.npy`` of the manifest's
    ``D`` starts and, with ``checksum``, its sha256. Whether its starts fit the shards
    (``packing.Documents.from_files``) needs the shards' separators. A manifest without
    a ``"document_index"`` passes.
    """
    entry = manifest.get("document_index")
    if entry is None:
        return
    path = folder / entry["name"]
    try:
        if checksum and file_sha256(path) != entry["sha256"]:
            raise TokenFileError(f"{path}: checksum disagrees with the manifest (a corrupt or "
                                 "replaced document index)")  # fmt: skip
        starts = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise TokenFileError(f"{path}: document index missing, listed in the manifest") from None
    except OSError as e:
        raise TokenFileError(describe_os_error(path, e)) from None
    except ValueError as e:  # not a .npy file, or a truncated one
        raise TokenFileError(f"{path}: not a whole .npy document index ({e})") from None
    if starts.dtype != np.dtype("<i8") or starts.shape != (entry["documents"],):
        raise TokenFileError(f"{path}: {starts.dtype} {starts.shape}, but the manifest lists "
                             f"{entry['documents']} documents (int64)")  # fmt: skip


def _valid(path: Path, record: dict | None) -> bool:
    """Whether the token file ``path`` and its sidecar are whole and match ``record``."""
    if not isinstance(record, dict) or not _is_count(record.get("tokens")):
        return False
    try:
        _check_pair(path, record["tokens"], record.get("sha256"))
        return isinstance(record.get("sha256"), str)
    except (OSError, TokenFileError):
        return False


def _progress_bar(total: int, unit: str, enabled: bool):
    return _bar_class()(total=total, unit=unit, unit_scale=unit == "B", desc="tokenize",
                        file=sys.stderr, disable=not enabled)  # fmt: skip


@functools.cache
def _bar_class() -> type:
    """tqdm without its monitor thread: the workers are forked only from a process with no
    other thread (``parallel_tokenize._process_context``)."""
    from tqdm import tqdm

    return type("ProgressBar", (tqdm,), {"monitor_interval": 0})


# --- the output folder: lock and ownership ------------------------------------------------


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Holds ``out/.flax-embed.lock`` (``flock``); OutputError naming the holder if taken."""
    import fcntl

    path = out / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise OutputError(f"{out}: in use by another flax-embed tokenize "
                              f"({holder or 'starting'}; lock {path})") from None  # fmt: skip
        try:  # the file we locked may have been removed by its last holder meanwhile
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still held: a waiting writer re-checks the inode
        os.close(fd)


def output_paths(out: str | os.PathLike[str]) -> list[Path]:
    """The paths in ``out`` a sharded job writes: never read as its inputs.

    ``manifest.json``, ``.work``, the lock, the document index and the files named like
    shards or their sidecars; other files in ``out`` may be inputs.
    """
    out = Path(out)
    shards = sorted(p for p in out.iterdir() if _SHARD_FILE.fullmatch(p.name)) if (
        out.is_dir()) else []  # fmt: skip
    return [out / MANIFEST, out / WORK_DIR, out / LOCK, out / DOCUMENT_INDEX, *shards]


def _foreign(path: Path, what: str) -> OutputError:
    return OutputError(f"{path}: {what}, not written by flax-embed tokenize; move it away or "
                       "choose another output folder (files the command did not write are "
                       "never replaced or deleted)")  # fmt: skip


def _owned_manifest(out: Path) -> dict | None:
    """The finished job's manifest in ``out`` (None if none); OutputError if not ours."""
    path = out / MANIFEST
    if not path.exists() and not path.is_symlink():
        return None
    manifest = _read_json(path)
    if not (isinstance(manifest, dict) and manifest.get("format") == MANIFEST_FORMAT
            and isinstance(manifest.get("job"), str)):  # fmt: skip
        raise _foreign(path, "a manifest without this command's job id")
    try:
        read_manifest(path)
    except TokenFileError as e:
        raise _foreign(path, f"a manifest that does not check ({e})") from None
    return manifest


def _owned_work(work: Path) -> dict | None:
    """The plan in ``.work`` (None if no ``.work`` or an empty one); OutputError if not ours."""
    if not work.exists() and not work.is_symlink():
        return None
    if work.is_dir() and not work.is_symlink():
        names = [p.name for p in work.iterdir()]
        if not names:
            return None
        plan = _read_json(work / "plan.json")
        if (isinstance(plan, dict) and plan.get("format") == WORK_FORMAT
                and isinstance(plan.get("job"), str)):  # fmt: skip
            return plan
    raise _foreign(work, "a work folder without this command's plan")


def _clear_work(work: Path) -> None:
    """Deletes the files of ``.work`` that the command writes, then ``.work`` if empty."""
    if not work.is_dir():
        return
    for p in work.iterdir():
        if _WORK_FILE.fullmatch(p.name) or (TEMP_MARK in p.name and p.name.startswith(".")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    with contextlib.suppress(OSError):
        work.rmdir()  # kept if it holds anything else


def _check_shard_names(out: Path, owned: set[str]) -> None:
    """OutputError for a file named like a shard (or its sidecar) that ``owned`` lacks."""
    for p in sorted(out.iterdir()):
        if _SHARD_FILE.fullmatch(p.name) and p.name.removesuffix(".json") not in owned:
            raise _foreign(p, "a file named like a shard that no manifest of this command lists")
        if p.name == DOCUMENT_INDEX and p.name not in owned:
            raise _foreign(p, "a document index that no manifest of this command lists")


def _publish(out: Path, work: Path, commit: dict) -> dict:
    """Swaps the committed new shards into ``out`` and writes the manifest (idempotent)."""
    manifest = commit["manifest"]
    (out / MANIFEST).unlink(missing_ok=True)  # from here on, nothing looks complete
    for entry in manifest["shards"]:
        for name in (entry["name"], entry["name"] + ".json"):
            if (work / name).exists():
                os.replace(work / name, out / name)
    for name in _index_names(manifest):
        if (work / name).exists():
            os.replace(work / name, out / name)
    for name in commit["remove"]:
        for n in (name, name + ".json"):
            (out / n).unlink(missing_ok=True)
    for entry in manifest["shards"]:
        verify_shard(out, entry, checksum=False)
    verify_document_index(out, manifest, checksum=False)
    atomic_write_json(out / MANIFEST, manifest)
    _clear_work(work)
    return manifest


def _index_names(manifest: dict) -> set[str]:
    """The document index a manifest lists (a set of 0 or 1 name)."""
    entry = manifest.get("document_index")
    return {entry["name"]} if isinstance(entry, dict) else set()


def _same_inputs(old: object, new: list[dict]) -> bool:
    """Whether the recorded inputs ``old`` are ``new``: path, bytes, mtime_ns (sha256 if given)."""
    if not isinstance(old, list) or len(old) != len(new):
        return False
    keys = ("path", "bytes", "mtime_ns")
    return all(
        isinstance(o, dict) and all(o.get(k) == n[k] for k in keys)
        and ("sha256" not in n or o.get("sha256") == n["sha256"])
        for o, n in zip(old, new, strict=True)
    )  # fmt: skip


def tokenize_corpus(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    field: str = DEFAULT_FIELD,
    eot: bool = True,
    workers: int | None = None,
    runner: Runner | None = None,
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    progress: bool | int = False,
    verify_inputs: bool = False,
    tokenizer: Tokenizer | str | None = None,
) -> dict:
    """Tokenizes a corpus into ``out_dir/tokens-XXXXX.bin`` shards and ``manifest.json``.

    Args:
      inputs: files, folders or globs (see ``corpus.expand_inputs``); anything under
        ``out_dir`` is skipped.
      out_dir: the output folder (created if needed).
      shard_tokens: tokens per shard (the last one may hold fewer).
      field: the JSON / Parquet / Arrow field that holds each document's text.
      eot: join documents with ``<|endoftext|>`` (else with nothing: one unit of work).
      workers: worker processes per unit (local runner).
      runner: ``LocalRunner(workers)`` by default, or ``ray_tokenize.RayRunner(...)``.
      segment_bytes: input bytes per unit of work.
      progress: show a tqdm bar of the input bytes (and one of the shards) on stderr;
        an int: only if the inputs hold at least that many bytes.
      verify_inputs: record each input's sha256 and compare it on reruns (reads the
        inputs once more); else inputs are identified by path, size and ``mtime_ns``.
      tokenizer: a ``load_tokenizer`` tokenizer or spec (default ``"gpt2"``); documents are
        joined by its separator, the manifest records its identity (``"tokenizer"``), and a
        folder holding another tokenizer's shards is refused. A tokenizer whose documents
        are not independent (``Tokenizer.independent_documents``) runs as one unit.

    Returns:
      The manifest (also written to ``out_dir/manifest.json``).

    Raises:
      CorpusError: a missing or malformed input (then no shard or ``.work`` of this
        run is left behind, and a finished output in ``out_dir`` is kept as it was).
      OutputError: ``out_dir`` holds a ``manifest.json``, ``.work`` or shard-named file
        this command did not write, or another run holds its lock.
      OSError: the output cannot be written (``.work`` is kept: re-run to resume).
      RunnerError: the runner cannot start (a Ray cluster that does not answer); nothing
        has been written.
    """
    shard_tokens = check_positive_int("shard_tokens", shard_tokens)
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else load_tokenizer(tokenizer or "gpt2")
    runner = _local_runner(workers) if runner is None else runner
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder (shards go to a folder)")
    plan, units = _plan(inputs, output_paths(out), shard_tokens=shard_tokens, field=field,
                        eot=eot, segment_bytes=segment_bytes, verify_inputs=verify_inputs,
                        tok=tok)  # fmt: skip
    _refuse_other_tokenizer(out, tok.identity)
    runner.start()  # after the inputs are checked: a bad one is reported before Ray starts
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(out):
            return _tokenize_locked(runner, out, plan, units, _show(progress, plan), tok)
    finally:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if empty: a failed first run leaves no folder


def tokenize_file(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    field: str = DEFAULT_FIELD,
    eot: bool = True,
    workers: int | None = None,
    runner: Runner | None = None,
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    progress: bool | int = False,
    tokenizer: Tokenizer | str | None = None,
) -> dict:
    """Tokenizes a corpus into one token file: ``tokenize_corpus``'s job with one shard.

    The same plan, units and shard cutting as ``tokenize_corpus``, so the ids equal
    its shards' joined (``tokens.npy`` or ``tokens.bin`` and its sidecar, as
    ``TokenFileWriter`` writes them). With one unit of work (one text file, or
    ``eot=False``), the unit is written to ``out`` itself; with several, their parts
    are staged in a temporary folder of ours beside ``out``
    (``.{name}.flax-embed-{pid}-{hex}.tmp``, as ``_io.temp_path`` names it) and copied
    into ``out`` as its one shard. That folder is deleted however the call ends (a
    killed run's is deleted by the next write to ``out``), and ``out`` is replaced
    atomically: it is the old file or the whole new one. Nothing is kept to resume,
    and no lock is taken: of two concurrent writers of one file, the last one wins.

    Args:
      inputs: files, folders or globs (see ``corpus.expand_inputs``); ``out`` is skipped.
      out: the token file, ``*.npy`` or ``*.bin``.
      field: as in ``tokenize_corpus``.
      eot: as in ``tokenize_corpus``.
      workers: as in ``tokenize_corpus``.
      runner: as in ``tokenize_corpus``.
      segment_bytes: as in ``tokenize_corpus``.
      progress: as in ``tokenize_corpus``.
      tokenizer: as in ``tokenize_corpus``.

    Returns:
      What a manifest of the file would hold (not written): the options, ``"inputs"``,
      ``"tokens"`` and ``"shards"``, one entry naming ``out``.

    Raises:
      CorpusError: a missing or malformed input (``out`` is left as it was).
      OutputError: ``out`` is not named ``*.npy`` or ``*.bin``.
      OSError: the output cannot be written (``out`` is left as it was).
    """
    target = Path(out)
    if target.suffix not in (".npy", ".bin"):
        raise OutputError(f"{target}: the output must end in .npy or .bin (or be a folder, DIR/)")
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else load_tokenizer(tokenizer or "gpt2")
    runner = _local_runner(workers) if runner is None else runner
    plan, units = _plan(inputs, [target, sidecar_path(target)], shard_tokens=None, field=field,
                        eot=eot, segment_bytes=segment_bytes, verify_inputs=False,
                        tok=tok)  # fmt: skip
    runner.start()
    remove_stale_temps(target)
    work = temp_path(target)
    try:
        if len(units) > 1:
            work.mkdir(mode=0o700)
        return _run(runner, work, units, plan, _show(progress, plan), tok, target=target)
    finally:
        with interrupts_held():  # not cut short, half the folder left
            shutil.rmtree(work, ignore_errors=True)


def _plan(
    inputs: Sequence[str | os.PathLike[str]],
    exclude: Sequence[Path],
    *,
    shard_tokens: int | None,
    field: str,
    eot: bool,
    segment_bytes: int,
    verify_inputs: bool,
    tok: Tokenizer,
) -> tuple[dict, list[tuple[Segment, ...]]]:
    """The plan of a job and its units: the inputs, expanded here and only here.

    ``shard_tokens=None``: one shard (``tokenize_file``).
    """
    segment_bytes = check_positive_int("segment_bytes", segment_bytes)
    paths = expand_inputs(inputs, exclude=exclude)
    identities = [input_identity(p, sha256=verify_inputs) for p in paths]
    segments = plan_segments(paths, target_bytes=segment_bytes)
    split = eot and tok.independent_documents
    units = _units(segments, segment_bytes) if split else [tuple(segments)]
    vocab = tok.n_vocab
    meta = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "dtype": token_dtype(vocab).name,
        "vocab_size": vocab,
        "shard_tokens": shard_tokens,
        "field": field,
        "eot": eot,
        "tokenizer": tok.identity,
    }
    plan = {"format": WORK_FORMAT, "meta": meta, "inputs": identities,
            "segment_bytes": segment_bytes,
            "units": [[dataclasses.asdict(s) for s in u] for u in units]}  # fmt: skip
    plan = json.loads(json.dumps(plan))
    # The job: what the output depends on (options, tokenizer and inputs, not how the work
    # is cut).
    job = json.dumps([meta, identities], sort_keys=True).encode()
    plan["job"] = hashlib.sha256(job).hexdigest()[:16]
    return plan, units


def _units(segments: Sequence[Segment], segment_bytes: int) -> list[tuple[Segment, ...]]:
    """Consecutive segments grouped into units of at least ``segment_bytes`` (the last: less).

    A big input's segments are a unit each; small files share one, so that a folder of
    many small documents is not a unit (a part file, a Ray task) per file.
    """
    units: list[tuple[Segment, ...]] = []
    current: list[Segment] = []
    size = 0
    for seg in segments:
        current.append(seg)
        size += seg.nbytes
        if size >= segment_bytes:
            units.append(tuple(current))
            current, size = [], 0
    if current:
        units.append(tuple(current))
    return units


def _show(progress: bool | int, plan: dict) -> bool:
    """Whether to show progress bars: ``progress``, or an int: the inputs hold that many bytes."""
    if isinstance(progress, bool):
        return progress
    return sum(i["bytes"] for i in plan["inputs"]) >= progress


def _tokenize_locked(runner: Runner, out: Path, plan: dict, units: list[tuple[Segment, ...]],
                     progress: bool, tok: Tokenizer) -> dict:  # fmt: skip
    work = out / WORK_DIR
    old = _owned_manifest(out)
    old_plan = _owned_work(work)
    commit = _read_json(work / "commit.json") if old_plan else None
    owned = {e["name"] for e in (old or {}).get("shards", [])} | _index_names(old or {})
    if isinstance(commit, dict):
        owned |= {e["name"] for e in commit["manifest"]["shards"]} | set(commit["remove"])
        owned |= _index_names(commit["manifest"])
    _check_shard_names(out, owned)
    if isinstance(commit, dict):  # a swap was interrupted: finish it first
        try:
            old = _publish(out, work, commit)
        except TokenFileError:  # its shards are gone: this run writes them again
            _clear_work(work)
            old = None
        old_plan = None
    meta = plan["meta"]
    if (
        old is not None
        and {k: old.get(k) for k in meta} == meta
        and old.get("job") == plan["job"]
        and _same_inputs(old.get("inputs"), plan["inputs"])
    ):
        try:
            for entry in old["shards"]:
                verify_shard(out, entry)
            verify_document_index(out, old)
            _clear_work(work)
            return old  # already complete and valid
        except TokenFileError:
            pass  # redo the job: the new shards replace the damaged ones
    if old_plan != plan:
        _clear_work(work)
        if work.exists():  # something else was put in our .work
            raise _foreign(work, "a work folder holding files")
        work.mkdir()
        atomic_write_json(work / "plan.json", plan)
    try:
        manifest = _run(runner, work, units, plan, progress, tok)
        now = [input_identity(i["path"]) for i in plan["inputs"]]  # size and mtime only
        for before, after in zip(plan["inputs"], now, strict=True):
            if not _same_inputs([before], [after]):
                raise CorpusError(f"{before['path']}: changed while it was being tokenized; "
                                  "run the command again")  # fmt: skip
    except CorpusError:
        _clear_work(work)
        raise
    names = {e["name"] for e in manifest["shards"]} | _index_names(manifest)
    commit = {"manifest": manifest, "remove": sorted(owned - names)}
    atomic_write_json(work / "commit.json", commit)
    return _publish(out, work, commit)


def _run(runner: Runner, work: Path, units: list[tuple[Segment, ...]], plan: dict,
         progress: bool, tok: Tokenizer, target: Path | None = None) -> dict:  # fmt: skip
    """Steps 2 and 3 of a job: its units' parts, then its shards, in ``work``; its manifest.

    With ``target`` (``tokenize_file``), the one shard is ``target``, and the job keeps no
    records (it does not resume); a single unit is written to ``target`` itself.
    """
    meta = plan["meta"]
    field, eot = meta["field"], meta["eot"]
    shard_tokens = meta["shard_tokens"] or _ONE_SHARD
    # GPT-2's shards record no tokenizer in their sidecars: the same bytes as before it could
    # be chosen (readers take a sidecar without one for GPT-2's, manifest_tokenizer).
    recorded = tok.recorded_identity
    direct = target is not None and len(units) == 1  # the unit is the file
    parts = [str(target)] if direct else [str(work / f"part-{i:05d}.bin")
                                          for i in range(len(units))]  # fmt: skip
    results: list[dict | None] = [None] * len(units)
    todo = []
    for i, unit in enumerate(units):
        record = _read_json(work / f"part-{i:05d}.done.json")
        indexed = eot and target is None  # a single file's job keeps no document index
        if _valid(Path(parts[i]), record) and (not indexed or _unit_index_valid(parts[i], record)):
            results[i] = record
        else:
            todo.append((i, UnitJob(unit, parts[i], field, eot, runner.workers, tok.n_vocab, tok,
                                    index=indexed)))  # fmt: skip
    total_bytes = sum(i["bytes"] for i in plan["inputs"])
    done_bytes = sum(s.nbytes for i, u in enumerate(units) if results[i] for s in u)
    with _progress_bar(total_bytes, "B", progress) as bar:
        bar.update(done_bytes)
        for i, result in runner.run_units(todo, bar.update):
            if target is None:
                atomic_write_json(work / f"part-{i:05d}.done.json", result)
            results[i] = result
    finished = [r for r in results if r is not None]
    assert len(finished) == len(results), "a runner skipped a unit"
    spans = cut_shards(finished, parts, shard_tokens, eot)
    if target is None:
        paths = [work / shard_name(k) for k in range(len(spans))]
    elif direct:
        spans, paths = [], []  # written
    else:
        spans, paths = spans or [()], [target]  # one file, even of no token
    shards: list[dict | None] = [None] * len(spans)
    todo_shards = []
    for k, shard_spans in enumerate(spans):
        record = _read_json(work / f"shard-{k:05d}.done.json")
        if (
            isinstance(record, dict)
            and _valid(paths[k], record)
            and record.get("tokens") == sum(b - a for _, a, b in shard_spans)
        ):
            shards[k] = record
        else:
            todo_shards.append((k, ShardJob(str(paths[k]), shard_spans, tok.n_vocab,
                                            tok.separator_id, recorded)))  # fmt: skip
    with _progress_bar(len(todo_shards), "shard", progress and len(todo_shards) > 1) as bar:
        for k, result in runner.run_shards(todo_shards):
            if target is None:
                atomic_write_json(work / f"shard-{k:05d}.done.json", result)
            shards[k] = result
            bar.update(1)
    written = [s for s in shards if s is not None]
    assert len(written) == len(shards), "a runner skipped a shard"
    if direct:
        assert target is not None
        written = [{"name": target.name, "tokens": finished[0]["tokens"],
                    "sha256": finished[0]["sha256"]}]  # fmt: skip
    manifest = {**meta, "job": plan["job"], "inputs": plan["inputs"],
                "tokens": sum(s["tokens"] for s in written), "shards": written}  # fmt: skip
    if eot and target is None:
        manifest["document_index"] = _write_global_index(work / DOCUMENT_INDEX, finished, parts)
    return manifest


def _unit_index_valid(part: str, record: dict | None) -> bool:
    """Whether a unit's document index is whole: its sha256 is ``record``'s."""
    index = unit_index_path(part)
    if not isinstance(record, dict):
        return False
    try:
        return isinstance(record.get("index_sha256"), str) and index.is_file() and (
            file_sha256(index) == record["index_sha256"])  # fmt: skip
    except OSError:
        return False


def _write_global_index(path: Path, unit_results: Sequence[dict], parts: Sequence[str]) -> dict:
    """Writes ``documents.npy`` from the units' indexes; returns its manifest entry.

    The units' ids are joined by one separator id (as ``cut_shards`` joins them), so a
    unit's starts move by the tokens and separators before it.
    """
    count = sum(r["documents"] for r in unit_results)

    def chunks() -> Iterator[np.ndarray]:
        base, seen = 0, False
        for result, part in zip(unit_results, parts, strict=True):
            if not result["documents"]:
                continue
            base += 1 if seen else 0
            seen = True
            starts = np.load(unit_index_path(part))
            if starts.shape != (result["documents"],):
                raise TokenFileError(f"{unit_index_path(part)}: {starts.shape[0]} starts for "
                                     f"{result['documents']} documents")  # fmt: skip
            yield starts + base
            base += result["tokens"]

    write_document_index(path, chunks(), count)
    return {"name": DOCUMENT_INDEX, "documents": count, "sha256": file_sha256(path)}


# --- reading shards back ------------------------------------------------------------------


class ShardedTokenDataset:
    """Sliding windows over several token files read as one stream; ``from_files`` builds it.

    Window ``i`` covers global tokens ``[i*stride, i*stride + max_length + 1)`` of the
    concatenated files, file boundaries included, so the windows (and batches) equal
    ``SlidingWindowDataset(np.concatenate(files), max_length, stride)``'s.

    Each window is read with one ``os.pread`` (two or more across a boundary) straight
    into the batch: nothing is mapped, so resident memory is the batch itself, however
    many and however large the files (the data stays in the page cache). Memory-mapped
    reads would need a page release (``madvise``) per file every few windows to stay
    O(batch); with many files that costs more than the reads (``benchmarks/corpora.py``).
    Pickling reopens the files by path (e.g. for Grain's worker processes).

    Args:
      paths: the token files, in order (``.npy``, ``.bin`` with a sidecar, or raw
        ``.bin`` with ``dtype``).
      max_length: tokens per window, ``T``.
      stride: tokens between the starts of consecutive windows.
      vocab_size: as in ``read_token_file``, for each file.
      check_ids: as in ``read_token_file``, for each file.
      dtype: as in ``read_token_file``, for each file.
      checksums: each file's sha256 (a manifest's), its identity for ``fingerprint``.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        max_length: int,
        stride: int,
        *,
        vocab_size: int | None = None,
        check_ids: bool = True,
        dtype: str | np.dtype | None = None,
        checksums: Sequence[str] | None = None,
    ):
        self.max_length = check_positive_int("max_length", max_length)
        self.stride = check_positive_int("stride", stride)
        self.paths = [Path(p) for p in paths]
        # vocab_size: as given (from_files: the manifest's), else the files' largest, so that
        # InputEmbedding(vocab_size=dataset.vocab_size, ...) fits the ids.
        self.vocab_size, self.dtype = vocab_size, dtype
        self.checksums = None if checksums is None else list(checksums)
        if not self.paths:
            raise ValueError("paths must name at least one token file")
        if self.checksums is not None and len(self.checksums) != len(self.paths):
            raise ValueError(f"{len(self.checksums)} checksums for {len(self.paths)} files")
        kwargs = {} if dtype is None else {"dtype": dtype}
        self._fds: list[int] = []
        self._dtypes: list[np.dtype] = []
        self._data_offsets: list[int] = []
        counts, vocabs = [], []
        for path in self.paths:
            ids, vocab = open_token_file(path, vocab_size, check_ids, **kwargs)
            vocabs.append(vocab)
            if ids.dtype == np.uint32 and vocab > 2**31:
                raise ValueError(f"{path}: vocab_size {vocab} > 2**31 ids do not fit int32")
            self._dtypes.append(ids.dtype)
            self._data_offsets.append(int(getattr(ids, "offset", 0)))
            counts.append(ids.shape[0])
            del ids
        self._fds = [os.open(p, os.O_RDONLY) for p in self.paths]
        info = zip(self._fds, self._dtypes, self._data_offsets, strict=True)
        self._file_info = [(fd, dt, dt.itemsize, off) for fd, dt, off in info]
        if self.vocab_size is None:
            self.vocab_size = max(vocabs)
        self._offsets = np.cumsum([0, *counts]).tolist()
        n = self._offsets[-1]
        if n < self.max_length + 1:
            raise ValueError(
                f"text too short: {n} tokens, but one window of max_length={self.max_length} "
                f"needs at least {self.max_length + 1} (inputs plus the shifted target)"
            )
        self._len = (n - self.max_length - 1) // self.stride + 1

    @property
    def num_tokens(self) -> int:
        return self._offsets[-1]

    def fingerprint(self) -> str:
        """What ``dataset_fingerprint`` gives: the window options and each file's content.

        A file's content is identified by its sha256 from the manifest, else by the
        CRC-32 its sidecar records, else by ``fingerprint.token_digest`` of its ids (all
        of them up to 16 Mi tokens, else 64 spread blocks). So a state saved over one
        corpus is refused over another of the same length, or with another
        ``max_length`` or ``stride``.
        """
        h = hashlib.blake2b(digest_size=8)
        h.update(f"files:{len(self)}:{self.max_length}:{self.stride}:{self.num_tokens}".encode())
        for i, path in enumerate(self.paths):
            count = self._offsets[i + 1] - self._offsets[i]
            meta = _read_json(sidecar_path(path)) if path.suffix == ".bin" else None
            if self.checksums is not None:
                identity = self.checksums[i]
            elif isinstance(meta, dict) and isinstance(meta.get("crc32"), int):
                identity = f"crc32:{meta['crc32']}"
            else:
                kwargs = {} if self.dtype is None else {"dtype": self.dtype}
                ids, _ = open_token_file(path, self.vocab_size, False, **kwargs)
                identity = token_digest(ids)
                del ids
            h.update(f"{count}:{identity};".encode())
        return h.hexdigest()

    def __len__(self) -> int:
        return self._len

    def _read(self, s: int, a: int, out: np.ndarray) -> None:
        """Reads ids ``[a, a + len(out))`` of file ``s`` into ``out``."""
        dtype = self._dtypes[s]
        nbytes = out.shape[0] * dtype.itemsize
        data = os.pread(self._fds[s], nbytes, self._data_offsets[s] + a * dtype.itemsize)
        if len(data) != nbytes:
            raise TokenFileError(f"{self.paths[s]}: truncated while reading (changed on disk?)")
        out[:] = np.frombuffer(data, dtype)

    def _fill(self, start: int, out_T1: np.ndarray) -> None:
        """Copies global tokens ``[start, start + len(out_T1))`` into ``out_T1``."""
        s = bisect.bisect_right(self._offsets, start) - 1
        filled, length = 0, out_T1.shape[0]
        while filled < length:
            a = start + filled - self._offsets[s]
            take = min(length - filled, self._offsets[s + 1] - self._offsets[s] - a)
            if take > 0:
                self._read(s, a, out_T1[filled : filled + take])
            filled += take
            s += 1

    def __getitem__(self, index: int) -> Batch:
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(f"window index must be an int, got {type(index).__name__}") from None
        if not -self._len <= i < self._len:
            raise IndexError(f"window index {i} out of range for {self._len} windows")
        window_T1 = np.empty(self.max_length + 1, np.int32)
        self._fill((i % self._len) * self.stride, window_T1)
        return window_T1[:-1], window_T1[1:]

    def gather(self, indices_B) -> Batch:
        """Reads the windows ``indices_B``: ``(inputs_BxT, targets_BxT)``, int32."""
        indices = np.asarray(indices_B, dtype=np.intp).tolist()
        length, offsets, n = self.max_length + 1, self._offsets, self._len
        windows_BxT1 = np.empty((len(indices), length), np.int32)
        files, pread, frombuffer = self._file_info, os.pread, np.frombuffer
        for b, i in enumerate(indices):
            if not -n <= i < n:
                raise IndexError(f"window index {i} out of range for {n} windows")
            start = (i % n) * self.stride
            s = bisect.bisect_right(offsets, start) - 1
            a = start - offsets[s]
            if a + length <= offsets[s + 1] - offsets[s]:
                fd, dtype, itemsize, data_offset = files[s]
                data = pread(fd, length * itemsize, data_offset + a * itemsize)
                if len(data) != length * itemsize:
                    raise TokenFileError(f"{self.paths[s]}: truncated while reading")
                windows_BxT1[b] = frombuffer(data, dtype)
            else:  # a window across a file boundary
                self._fill(start, windows_BxT1[b])
        return windows_BxT1[:, :-1], windows_BxT1[:, 1:]

    def close(self, _close=os.close, _suppress=contextlib.suppress) -> None:
        """Closes the files (also done when the dataset is garbage-collected)."""
        fds, self._fds = getattr(self, "_fds", []), []
        for fd in fds:
            with _suppress(OSError):
                _close(fd)

    def __del__(self) -> None:
        self.close()

    def __getstate__(self) -> dict:
        return {"paths": self.paths, "max_length": self.max_length, "stride": self.stride,
                "vocab_size": self.vocab_size, "dtype": self.dtype,
                "checksums": self.checksums}  # fmt: skip

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state, check_ids=False)  # checked when first opened

    def __repr__(self) -> str:
        return (f"ShardedTokenDataset(files={len(self.paths)}, num_tokens={self.num_tokens}, "
                f"max_length={self.max_length}, stride={self.stride}, "
                f"num_windows={len(self)})")  # fmt: skip


def open_shards(
    paths_or_manifest: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    max_length: int,
    stride: int,
    *,
    vocab_size: int | None = None,
    check_ids: bool = True,
    verify: bool = True,
    dtype: str | np.dtype | None = None,
) -> ShardedTokenDataset:
    """What ``SlidingWindowDataset.from_files`` does: see there."""
    checksums = None
    if not isinstance(paths_or_manifest, (str, os.PathLike)):
        paths = list(paths_or_manifest)
    elif (target := Path(paths_or_manifest)).is_dir() or target.suffix == ".json":
        manifest, folder = read_manifest(target)
        for entry in manifest["shards"]:
            verify_shard(folder, entry, checksum=verify)
        paths = [folder / entry["name"] for entry in manifest["shards"]]
        checksums = [entry["sha256"] for entry in manifest["shards"]]
        if not paths:
            raise ValueError(f"{target}: the manifest lists no shard (an empty corpus)")
        if vocab_size is None:
            vocab_size = manifest["vocab_size"]
    else:
        paths = [target]
    _check_one_tokenizer(paths)
    return ShardedTokenDataset(paths, max_length, stride, vocab_size=vocab_size,
                               check_ids=check_ids, dtype=dtype, checksums=checksums)  # fmt: skip


def _check_one_tokenizer(paths: Sequence[str | os.PathLike[str]]) -> None:
    """ValueError if the sidecars of ``paths`` record different tokenizers (``.npy``: none)."""
    first: tuple[dict, Path] | None = None
    for p in map(Path, paths):
        meta = _read_json(sidecar_path(p)) if p.suffix == ".bin" else None
        identity = manifest_tokenizer(meta) if isinstance(meta, dict) else None
        if identity is None:
            continue
        if first is None:
            first = identity, p
        elif not _same_tokenizer(first[0], identity):
            raise ValueError(
                f"{p}: tokenized with {_describe(identity)}, but {first[1]} with "
                f"{_describe(first[0])}; one dataset takes one tokenizer's ids"
            )
