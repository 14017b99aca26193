"""Sharded token files: a corpus in, ``tokens-00000.bin``, ... and ``manifest.json`` out.

``tokenize_corpus(inputs, out_dir, shard_tokens=N)`` writes the ids
``encode("<|endoftext|>".join(documents))`` of the corpus (``corpus.py``) as shards of
exactly ``N`` tokens each (the last one shorter): shard ``k`` holds the global ids
``[k*N, (k+1)*N)``. Each shard is a ``.bin`` token file with its sidecar; the manifest
lists the shards (name, token count, sha256 of the ``.bin``), the dtype, the vocabulary
and the inputs with their sizes.

How a job runs (the same steps on one machine and on Ray, ``ray_tokenize.py``):

1. **Plan.** The inputs are cut into document-aligned ``Segment``\\ s (``plan_segments``);
   each segment is a *unit* (with ``eot=False`` all of them form one unit, since
   documents joined by nothing cannot be tokenized apart).
2. **Tokenize units.** Each unit's ids, ``encode("<|endoftext|>".join(its documents))``,
   go to ``OUT/.work/part-XXXXX.bin``. Units are independent: tiktoken splits at
   ``<|endoftext|>`` before anything else, so the global ids are the units' ids joined
   by 50256 (units with no document contribute nothing).
3. **Cut shards.** From the unit token counts, shard ``k``'s span of the global stream
   is known exactly; it is copied from the part files into ``tokens-0000k.bin``.
4. **Publish.** The manifest is written last, atomically, and ``.work`` is deleted.

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
import hashlib
import json
import operator
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from flax_embed._io import atomic_open, describe_os_error
from flax_embed._validation import check_positive_int
from flax_embed.data.corpus import (
    DEFAULT_FIELD,
    CorpusError,
    DocumentCount,
    Segment,
    corpus_pieces,
    expand_inputs,
    input_size,
    plan_segments,
)
from flax_embed.data.parallel_tokenize import default_workers, iter_encode_parallel
from flax_embed.data.token_files import (
    TokenFileError,
    TokenFileWriter,
    open_token_file,
    sidecar_path,
    token_dtype,
)
from flax_embed.tokenizer import (
    ENDOFTEXT_ID,
    GPT2_IDENTITY,
    GPT2_VOCAB_SIZE,
    Tokenizer,
    load_tokenizer,
)

__all__ = [
    "DEFAULT_SHARD_TOKENS",
    "MANIFEST",
    "MANIFEST_FORMAT",
    "ShardedTokenDataset",
    "file_sha256",
    "manifest_tokenizer",
    "read_manifest",
    "shard_name",
    "tokenize_corpus",
]

Batch = tuple[np.ndarray, np.ndarray]
"""``(inputs_BxT, targets_BxT)``, as ``sources.Batch`` (not imported: sources imports this)."""

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "flax-embed token shards"
DEFAULT_SHARD_TOKENS = 100_000_000
"""Tokens per shard by default: 200 MB uint16 files, as nanoGPT's FineWeb shards."""
DEFAULT_SEGMENT_BYTES = 64 << 20
"""Input bytes per unit of work (JSONL byte ranges, Parquet row groups)."""
WORK_DIR = ".work"
_COPY_TOKENS = 1 << 22
_SHARD_NAME = re.compile(r"tokens-(\d{5,})\.bin")


def shard_name(index: int) -> str:
    """``tokens-00000.bin``, ``tokens-00001.bin``, ..."""
    return f"tokens-{index:05d}.bin"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """``"sha256:<hex>"`` of a file's bytes, read in 8 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


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


def run_unit(job: UnitJob, progress: Callable[[int], object] | None = None) -> dict:
    """Writes a unit's ids to ``job.part``; returns ``{"tokens", "documents", "sha256"}``."""
    counter = DocumentCount()
    tok = job.tokenizer
    pieces = corpus_pieces(job.segments, job.field, eot=job.eot, counter=counter,
                           progress=progress or (lambda n: None),
                           **({} if tok is None else {"separator": tok.separator}))  # fmt: skip
    with TokenFileWriter(job.part, vocab_size=job.vocab_size) as writer:
        for ids_N in iter_encode_parallel(pieces, workers=job.workers, tokenizer=tok):
            writer.write(ids_N)
    return {"tokens": writer.count, "documents": counter.documents,
            "sha256": file_sha256(job.part)}  # fmt: skip


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
            "sha256": file_sha256(job.path)}  # fmt: skip


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


class Runner(Protocol):
    """What ``tokenize_corpus`` runs its units and shards on (``LocalRunner``, ``RayRunner``)."""

    progress_unit: str
    """``"B"``: ``run_units`` reports input bytes to the bar; else the driver counts tasks."""

    def run_units(self, jobs: Sequence[tuple[int, UnitJob]], bar) -> Iterator[tuple[int, dict]]:
        """Runs ``jobs``; yields ``(index, run_unit's result)`` as each finishes."""
        ...

    def run_shards(self, jobs: Sequence[tuple[int, ShardJob]], bar) -> Iterator[tuple[int, dict]]:
        """Runs ``jobs``; yields ``(index, run_shard's result)`` as each finishes."""
        ...


class LocalRunner:
    """Runs the units one after the other in this process, each on ``workers`` threads."""

    progress_unit = "B"

    def __init__(self, workers: int | None = None):
        self.workers = default_workers() if workers is None else check_positive_int(
            "workers", workers)  # fmt: skip

    def run_units(self, jobs: Sequence[tuple[int, UnitJob]], bar) -> Iterator[tuple[int, dict]]:
        for i, job in jobs:
            yield i, run_unit(job, bar.update)

    def run_shards(self, jobs: Sequence[tuple[int, ShardJob]], bar) -> Iterator[tuple[int, dict]]:
        for i, job in jobs:
            yield i, run_shard(job)


# --- the manifest -------------------------------------------------------------------------


def _atomic_json(path: Path, value) -> None:
    with atomic_open(path, "w") as f:
        f.write(json.dumps(value, indent=1) + "\n")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_manifest(path: str | os.PathLike[str]) -> tuple[dict, Path]:
    """``(manifest, folder)`` from ``manifest.json`` or the folder holding it, checked.

    Raises:
      TokenFileError: not a manifest, or one with missing or ill-typed fields.
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
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise TokenFileError(f"{path}: not a token-shard manifest (no format {MANIFEST_FORMAT!r})")
    shards = manifest.get("shards")
    ok = isinstance(shards, list) and all(
        isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("sha256"), str)
        and isinstance(s.get("tokens"), int) and not isinstance(s.get("tokens"), bool)
        and Path(s["name"]).name == s["name"]
        for s in shards
    )  # fmt: skip
    if not ok or not isinstance(manifest.get("vocab_size"), int):
        raise TokenFileError(f"{path}: a malformed manifest (shards or vocab_size)")
    return manifest, path.parent


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
    """Raises TokenFileError naming the shard if its size or checksum disagrees with ``entry``."""
    path = folder / entry["name"]
    meta = _read_json(sidecar_path(path))
    if not path.is_file() or not isinstance(meta, dict):
        raise TokenFileError(f"{path}: shard missing (or its sidecar), listed in the manifest")
    itemsize = np.dtype(meta.get("dtype", "uint16")).itemsize
    size = path.stat().st_size
    if meta.get("count") != entry["tokens"] or size != entry["tokens"] * itemsize:
        raise TokenFileError(
            f"{path}: size disagrees with the manifest: {size} bytes, sidecar count "
            f"{meta.get('count')}, manifest {entry['tokens']} tokens"
        )
    if checksum and file_sha256(path) != entry["sha256"]:
        raise TokenFileError(f"{path}: checksum disagrees with the manifest (a corrupt or "
                             "replaced shard)")  # fmt: skip


def _valid(path: Path, record: dict | None) -> bool:
    """Whether ``path`` exists with the sha256 that ``record`` (a work record) gives."""
    if not isinstance(record, dict) or not path.is_file():
        return False
    try:
        return file_sha256(path) == record.get("sha256")
    except OSError:
        return False


def _progress_bar(total: int, unit: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, unit_scale=unit == "B", desc="tokenize",
                file=sys.stderr, disable=not enabled)  # fmt: skip


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
    progress: bool = False,
    tokenizer: Tokenizer | str | None = None,
) -> dict:
    """Tokenizes a corpus into ``out_dir/tokens-XXXXX.bin`` shards and ``manifest.json``.

    Args:
      inputs: files, folders or globs (see ``corpus.expand_inputs``).
      out_dir: the output folder (created if needed).
      shard_tokens: tokens per shard (the last one may hold fewer).
      field: the JSON / Parquet / Arrow field that holds each document's text.
      eot: join documents with ``<|endoftext|>`` (else with nothing: one unit of work).
      workers: threads per unit (local runner).
      runner: ``LocalRunner(workers)`` by default, or ``ray_tokenize.RayRunner(...)``.
      segment_bytes: input bytes per unit of work.
      progress: show a tqdm bar on stderr (bytes locally, units and shards on Ray).
      tokenizer: a ``load_tokenizer`` tokenizer or spec (default ``"gpt2"``); documents are
        joined by its separator, the manifest records its identity (``"tokenizer"``), and a
        folder holding another tokenizer's shards is refused. A tokenizer whose documents
        are not independent (``Tokenizer.independent_documents``) runs as one unit.

    Returns:
      The manifest (also written to ``out_dir/manifest.json``).

    Raises:
      CorpusError: a missing or malformed input (then neither a manifest nor a shard
        nor ``.work`` is left behind).
      OSError: the output cannot be written (``.work`` is kept: re-run to resume).
    """
    shard_tokens = check_positive_int("shard_tokens", shard_tokens)
    segment_bytes = check_positive_int("segment_bytes", segment_bytes)
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else load_tokenizer(tokenizer or "gpt2")
    runner = LocalRunner(workers) if runner is None else runner
    unit_workers = getattr(runner, "workers", 1)
    out = Path(out_dir)
    paths = expand_inputs(inputs)
    sizes = [input_size(p) for p in paths]
    segments = plan_segments(paths, target_bytes=segment_bytes)
    split = eot and tok.independent_documents
    units = [(s,) for s in segments] if split else [tuple(segments)]
    vocab = tok.n_vocab
    meta = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "dtype": token_dtype(vocab).name,
        "vocab_size": vocab,
        "shard_tokens": shard_tokens,
        "field": field,
        "eot": eot,
        "inputs": [{"path": p, "bytes": n} for p, n in zip(paths, sizes, strict=True)],
        "tokenizer": tok.identity,
    }
    _refuse_other_tokenizer(out, tok.identity)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    old = _read_json(manifest_path)
    if isinstance(old, dict) and {k: old.get(k) for k in meta} == meta:
        try:
            for entry in old["shards"]:
                verify_shard(out, entry)
            return old  # already complete and valid
        except (TokenFileError, OSError, KeyError, TypeError):
            pass
    manifest_path.unlink(missing_ok=True)  # from here on, nothing looks complete
    work = out / WORK_DIR
    mtimes = [os.stat(p).st_mtime_ns for p in paths]
    plan = {"meta": meta, "mtimes": mtimes, "segment_bytes": segment_bytes,
            "units": [[dataclasses.asdict(s) for s in u] for u in units]}  # fmt: skip
    if _read_json(work / "plan.json") != json.loads(json.dumps(plan)):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        _atomic_json(work / "plan.json", plan)
    try:
        manifest = _run(runner, out, work, units, meta, shard_tokens, field, eot, unit_workers,
                        sum(sizes), progress, tok)  # fmt: skip
    except CorpusError:
        shutil.rmtree(work, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if empty
        raise
    shutil.rmtree(work, ignore_errors=True)
    return manifest


def _run(runner, out, work, units, meta, shard_tokens, field, eot, unit_workers, total_bytes,
         progress, tok: Tokenizer) -> dict:  # fmt: skip
    # GPT-2's shards record no tokenizer in their sidecars: the same bytes as before it could
    # be chosen (readers take a sidecar without one for GPT-2's, manifest_tokenizer).
    recorded = tok.recorded_identity
    parts = [str(work / f"part-{i:05d}.bin") for i in range(len(units))]
    results: list[dict | None] = [None] * len(units)
    todo = []
    for i, unit in enumerate(units):
        record = _read_json(work / f"part-{i:05d}.done.json")
        if _valid(Path(parts[i]), record):
            results[i] = record
        else:
            todo.append((i, UnitJob(unit, parts[i], field, eot, unit_workers, tok.n_vocab, tok)))
    by_bytes = runner.progress_unit == "B"
    done_bytes = sum(s.nbytes for i, u in enumerate(units) if results[i] for s in u)
    with _progress_bar(total_bytes if by_bytes else len(todo), runner.progress_unit,
                       progress) as bar:  # fmt: skip
        if by_bytes:
            bar.update(done_bytes)
        for i, result in runner.run_units(todo, bar):
            _atomic_json(work / f"part-{i:05d}.done.json", result)
            results[i] = result
            if not by_bytes:
                bar.update(1)
    finished = [r for r in results if r is not None]
    assert len(finished) == len(results), "a runner skipped a unit"
    spans = cut_shards(finished, parts, shard_tokens, eot)
    names = [shard_name(k) for k in range(len(spans))]
    shards: list[dict | None] = [None] * len(spans)
    todo_shards = []
    for k, shard_spans in enumerate(spans):
        record = _read_json(work / f"shard-{k:05d}.done.json")
        if (
            isinstance(record, dict)
            and _valid(out / names[k], record)
            and record.get("tokens") == sum(b - a for _, a, b in shard_spans)
        ):
            shards[k] = record
        else:
            todo_shards.append((k, ShardJob(str(out / names[k]), shard_spans, tok.n_vocab,
                                            tok.separator_id, recorded)))  # fmt: skip
    with _progress_bar(len(todo_shards), "shard", progress and not by_bytes) as bar:
        for k, result in runner.run_shards(todo_shards, bar):
            _atomic_json(work / f"shard-{k:05d}.done.json", result)
            shards[k] = result
            bar.update(1)
    for stale in out.iterdir():  # shards of an earlier, longer run
        m = _SHARD_NAME.fullmatch(stale.name.removesuffix(".json"))
        if m and int(m.group(1)) >= len(spans):
            stale.unlink(missing_ok=True)
    written = [s for s in shards if s is not None]
    assert len(written) == len(shards), "a runner skipped a shard"
    manifest = {**meta, "tokens": sum(s["tokens"] for s in written), "shards": written}
    _atomic_json(out / MANIFEST, manifest)
    return manifest


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
    ):
        self.max_length = check_positive_int("max_length", max_length)
        self.stride = check_positive_int("stride", stride)
        self.paths = [Path(p) for p in paths]
        # vocab_size: as given (from_files: the manifest's), else the files' largest, so that
        # InputEmbedding(vocab_size=dataset.vocab_size, ...) fits the ids.
        self.vocab_size, self.dtype = vocab_size, dtype
        if not self.paths:
            raise ValueError("paths must name at least one token file")
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
                "vocab_size": self.vocab_size, "dtype": self.dtype}  # fmt: skip

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
    if not isinstance(paths_or_manifest, (str, os.PathLike)):
        paths = list(paths_or_manifest)
    elif (target := Path(paths_or_manifest)).is_dir() or target.suffix == ".json":
        manifest, folder = read_manifest(target)
        for entry in manifest["shards"]:
            verify_shard(folder, entry, checksum=verify)
        paths = [folder / entry["name"] for entry in manifest["shards"]]
        if not paths:
            raise ValueError(f"{target}: the manifest lists no shard (an empty corpus)")
        if vocab_size is None:
            vocab_size = manifest["vocab_size"]
    else:
        paths = [target]
    _check_one_tokenizer(paths)
    return ShardedTokenDataset(paths, max_length, stride, vocab_size=vocab_size,
                               check_ids=check_ids, dtype=dtype)  # fmt: skip


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
