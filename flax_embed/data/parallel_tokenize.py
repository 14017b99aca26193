"""GPT-2 tokenization on every core, with ids identical to one ``encode`` call.

The text is cut into chunks at *safe boundaries* and the chunks are encoded on a
thread pool (tiktoken's Rust encoder releases the GIL) or, as ``flax-embed tokenize``
does, on worker processes (``processes=True``). A boundary ``p`` is safe when

    ``text[p]`` is one of ``' '``, ``'\\t'``, ``'\\n'``, ``'\\r'``, and
    ``text[p - 1]`` is a letter, mark, number, punctuation or symbol
    (Unicode category ``L*``, ``M*``, ``N*``, ``P*`` or ``S*``),

i.e. right before a whitespace run that follows a visible character.

Why the ids cannot change. tiktoken first splits the text at ``<|endoftext|>``
(which contains no whitespace, so no safe boundary falls inside it) and runs GPT-2's
pre-tokenizer regex ``'(?:[sdmt]|ll|ve|re)| ?\\p{L}++| ?\\p{N}++| ?[^\\s\\p{L}\\p{N}]++|
\\s++$|\\s+(?!\\S)|\\s`` on each piece between them; BPE then works on each regex match
alone. So it suffices that the matches of ``s`` are the matches of ``s[:p]`` followed
by those of ``s[p:]``. Write ``ws`` for the regex's ``\\s`` (Unicode White_Space: all
of its characters are in categories Zs, Zl, Zp or Cc, so ``s[p-1]`` is not ``ws``,
whichever Unicode version the engine has, while the four ASCII characters are).

1. A match of ``s`` ends at ``p``. The match containing ``s[p-1]`` (not ``ws``) is a
   contraction, a letter, number or other-symbol run, each of which is an optional
   leading space followed by non-``ws`` characters only; it cannot contain the
   ``ws`` character ``s[p]``, so it ends at ``p``. The next match starts at ``p``.
2. The matches of ``s`` after ``p`` are those of ``s[p:]``: the pattern has no
   look-behind and no ``^``, and ``$`` is the same end of text for both.
3. The matches of ``s`` before ``p`` are those of ``s[:p]``: matching at ``q < p``
   inspects at most position ``p``, where ``s`` has a ``ws`` character and
   ``s[:p]`` has its end. Every alternative reacts to both alike: the contraction
   letters, ``\\p{L}``, ``\\p{N}`` and ``[^\\s\\p{L}\\p{N}]`` reject both, so the same runs
   stop at ``p``; the ``\\s`` runs starting before ``p`` stop at the non-``ws``
   ``s[p-1]`` at the latest, so ``\\s++$``, ``\\s+(?!\\S)`` and ``\\s`` never look at
   ``p`` (nor can ``$`` match at a non-``ws`` character, even in engines where it
   matches before a final newline).

A plain text file may also come as a ``corpus.TextRange`` (where ``reads_text_ranges``):
its cuts are found in its bytes by the same rule (``_next_safe_byte``), and each worker
reads and decodes its own part, so that the calling process neither decodes the text
nor sends it.

tiktoken's fix-up of surrogate pairs (Python strings that are not valid UTF-8)
acts on pairs of surrogates, which are never ``s[p-1]`` or ``s[p]``, so it too is
the same per chunk. ``tests/data/test_parallel_tokenize.py`` checks all of this with
property tests, and that the boundaries right *after* a whitespace run are not safe.
"""

from __future__ import annotations

import collections
import concurrent.futures.process
import contextlib
import functools
import itertools
import mmap
import multiprocessing
import multiprocessing.context
import multiprocessing.queues
import multiprocessing.reduction
import os
import re
import signal
import sys
import threading
import time
import traceback
import types
import unicodedata
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from flax_embed._io import interrupts_held
from flax_embed._validation import check_positive_int
from flax_embed.data.corpus import TextRange
from flax_embed.tokenizer import (
    ENDOFTEXT,
    GPT2_VOCAB_SIZE,
    Tokenizer,
    encode,
    gpt2_tokenizer,
    id_dtype,
)

__all__ = [
    "DEFAULT_CHUNK_CHARS",
    "WorkerDiedError",
    "chunk_boundaries",
    "default_workers",
    "encode_parallel",
    "iter_encode_parallel",
    "reads_text_ranges",
]

IN_FLIGHT_PER_WORKER = 3
"""Chunks queued per thread by ``iter_encode_parallel``: memory O(workers x chunk)."""
DEFAULT_CHUNK_CHARS = 1 << 20
"""Characters per chunk (about 250k tokens of English): many chunks per core on big texts."""

# Candidates for a safe boundary: an ASCII whitespace character after a non-whitespace one
# (Python's \S); _is_visible then applies the exact rule.
_CANDIDATE = re.compile(r"(?<=\S)[ \t\n\r]")
_VISIBLE_CATEGORIES = frozenset("LMNPS")


def _is_visible(char: str) -> bool:
    return unicodedata.category(char)[0] in _VISIBLE_CATEGORIES


def default_workers() -> int:
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _next_safe_boundary(text: str, start: int) -> int | None:
    """The first safe boundary ``p >= start`` (``0 < p < len(text)``), or None."""
    pos = max(start, 1)
    while (m := _CANDIDATE.search(text, pos)) is not None:
        if _is_visible(text[m.start() - 1]):
            return m.start()
        pos = m.start() + 1
    return None


_CANDIDATE_BYTE = re.compile(rb"(?<=\S)[ \t\n\r]")


def _next_safe_byte(data: bytes, start: int) -> int | None:
    """``_next_safe_boundary`` for UTF-8 bytes: the first ``p >= start`` (``0 < p <
    len(data)``) where ``data[p]`` is one of the four whitespace bytes and ``data[:p]`` ends
    with the UTF-8 bytes of a visible character, or None.

    Both are then true of the text too, wherever ``data`` was taken from a valid UTF-8
    file: a character's encoding is not part of another's, and the newlines translated on
    reading (``TextRange.read``) keep ``text[p]`` whitespace and the character before it.
    """
    pos = max(start, 1)
    while (m := _CANDIDATE_BYTE.search(data, pos)) is not None:
        p = m.start()
        lead = p - 1  # back over continuation bytes to the character's first byte
        while lead > 0 and p - lead < 4 and 0x80 <= data[lead] < 0xC0:
            lead -= 1
        try:
            char = data[lead:p].decode("utf-8")
        except UnicodeDecodeError:
            char = ""
        if len(char) == 1 and _is_visible(char):
            return p
        pos = p + 1
    return None


def reads_text_ranges(tokenizer: Tokenizer | None) -> bool:
    """Whether ``iter_encode_parallel`` takes ``TextRange`` pieces for ``tokenizer``: GPT-2's
    pattern, whose cuts ``_next_safe_byte`` finds in the bytes, and tiktoken's splitting
    out of the separator, which makes a range's edges (next to a separator, or the text's
    own) safe cuts too."""
    return tokenizer is None or tokenizer.cut_at_whitespace


def _next_separator(separator: str) -> Callable[[str, int], int | None]:
    """The first ``p >= start`` (``0 < p < len(text)``) where ``separator`` starts, or None."""

    def find(text: str, start: int) -> int | None:
        p = text.find(separator, max(start, 1))
        return None if p < 0 else p

    return find


def _no_boundary(text: str, start: int) -> None:
    return None


def _boundary_rule(tokenizer: Tokenizer | None) -> Callable[[str, int], int | None]:
    """How a tokenizer's text may be cut (``Tokenizer.cut_at_whitespace`` and co)."""
    if tokenizer is None or tokenizer.cut_at_whitespace:
        return _next_safe_boundary
    if tokenizer.cut_before_separator:
        return _next_separator(tokenizer.separator)
    return _no_boundary


def chunk_boundaries(
    text: str, chunk_chars: int = DEFAULT_CHUNK_CHARS, *, tokenizer: Tokenizer | None = None
) -> list[int]:
    """Where ``encode_parallel`` cuts ``text``: ``[0, p1, ..., len(text)]``.

    Each inner ``p`` is the first safe boundary (see the module docstring) at least
    ``chunk_chars`` characters after the previous one, so chunks are at least
    ``chunk_chars`` long (the last one may be shorter) and
    ``concat(encode(text[a:b]) for a, b in pairs) == encode(text)``.

    For a ``tokenizer`` whose pre-tokenizer is not GPT-2's (``cl100k_base``, most
    ``tokenizer.json`` files), a safe boundary is right before its separator instead: the
    library splits the separator out of the text before anything else, so the pieces
    around it are encoded alone either way (and the piece after a cut starts with the
    separator, never at the start of the text, which some pre-tokenizers treat apart).
    A tokenizer that allows neither (``Tokenizer.cut_before_separator`` false) is not cut.
    """
    chunk_chars = check_positive_int("chunk_chars", chunk_chars)
    return _cut(text, chunk_chars, _boundary_rule(tokenizer))


def _encoder(bpe_dir) -> Callable[[str], np.ndarray]:
    tokenizer = gpt2_tokenizer(bpe_dir)
    allowed = {ENDOFTEXT}
    if not hasattr(tokenizer, "encode_to_numpy"):  # tiktoken < 0.8
        return functools.partial(encode, bpe_dir=bpe_dir)

    def encode_chunk(chunk: str) -> np.ndarray:
        try:  # the Rust encoder fills a buffer without the GIL and without a Python list
            return tokenizer.encode_to_numpy(chunk, allowed_special=allowed).astype(np.int32)
        except UnicodeEncodeError:  # surrogates: encode() has tiktoken's fix-up
            return encode(chunk, bpe_dir=bpe_dir)

    return encode_chunk


class WorkerDiedError(RuntimeError):
    """A worker process of ``iter_encode_parallel(processes=True)`` ended without its result."""


def iter_encode_parallel(
    pieces: Iterable[str | TextRange],
    *,
    workers: int | None = None,
    bpe_dir: str | os.PathLike[str] | None = None,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
    tokenizer: Tokenizer | None = None,
    processes: bool = False,
    progress: Callable[[int], object] | None = None,
) -> Iterator[np.ndarray]:
    """Encodes the concatenation of ``pieces`` as it streams in, on ``workers`` threads.

    ``np.concatenate(list(iter_encode_parallel(pieces)))`` equals
    ``encode("".join(pieces))``, but the pieces need not fit in memory together: a
    piece's text up to its last safe boundary is encoded, the rest is carried over
    to the next piece. Use it to tokenize a corpus read in blocks.

    Args:
      pieces: text, and (where ``reads_text_ranges(tokenizer)``) ``corpus.TextRange``
        pieces, which stand for their text and are read and decoded by the workers.
      workers: threads or processes (default: the cores); 1 encodes in the calling thread
        and starts none, not even the tokenizers library's own (``TOKENIZERS_PARALLELISM``
        is ``false`` during each call).
      tokenizer: a ``load_tokenizer`` tokenizer (then ``bpe_dir`` is not used); the ids
        equal its ``encode("".join(pieces))``. Default: GPT-2 (``gpt2_tokenizer(bpe_dir)``).
      processes: encode on ``workers`` processes instead of threads (``flax-embed
        tokenize`` does). tiktoken's encoder releases the GIL, yet two of its threads in one
        process contend and cost far more CPU than one call (benchmarks/tokenize_e2e.py);
        two processes do not. The processes are forked where that is safe (Linux, no other
        Python thread, JAX not loaded), else started by ``forkserver`` or ``spawn``; they
        write the ids to memory shared with the caller (``_IdSlots``: on Linux whichever
        way they started, elsewhere if forked), ignore SIGINT (the caller's Ctrl-C stops
        them) and end with the iteration. A text of one chunk is encoded here, without
        starting any.
      progress: called with the bytes of each part of a ``TextRange`` as its ids are
        yielded (a text piece's bytes are its reader's to report).

    Yields:
      int32 id arrays, in order (int64 for a vocabulary past 2**31 ids); with
      ``processes``, arrays of the token files' dtype (``id_dtype``: ``uint16`` for GPT-2).
    """
    workers = default_workers() if workers is None else check_positive_int("workers", workers)
    chunk_chars = check_positive_int("chunk_chars", chunk_chars)
    encode_chunk = _chunk_encoder(
        tokenizer, bpe_dir, _worker_dtype(tokenizer) if processes else None
    )
    next_byte = _next_safe_byte if reads_text_ranges(tokenizer) else None
    chunks = _chunks(pieces, chunk_chars, _boundary_rule(tokenizer), next_byte)
    report = progress or (lambda n: None)
    head = list(itertools.islice(chunks, 2))
    if workers == 1 or len(head) < 2:  # one worker, or one chunk: no pool to start
        for chunk in itertools.chain(head, chunks):
            with _one_core() if workers == 1 else contextlib.nullcontext():
                ids = encode_chunk(chunk)
            report(_range_bytes(chunk))
            yield ids
        return
    # Chunks are submitted as soon as they are cut, across piece boundaries, with up to
    # IN_FLIGHT_PER_WORKER chunks per worker queued: the workers keep encoding while
    # this thread reads and cuts the next piece and the caller writes the ids, instead
    # of idling at the end of every piece (see benchmarks/corpora.py).
    in_flight: collections.deque[tuple[int, int | None, Future]] = collections.deque()
    limit = IN_FLIGHT_PER_WORKER * workers
    slots = None
    if processes:
        context = _process_context()
        if _IdSlots.SHAREABLE or context.get_start_method() == "fork":
            # Two ids per character: more than any text but runs of emoji needs.
            with contextlib.suppress(OSError):  # no memory to reserve: ids in the messages
                slots = _IdSlots(limit, 2 * chunk_chars, _worker_dtype(tokenizer))
        folder = None if bpe_dir is None else os.fspath(bpe_dir)
        pool: Executor = ProcessPoolExecutor(workers, mp_context=context,
                                             initializer=_start_worker,
                                             initargs=(tokenizer, folder, slots))  # fmt: skip
    else:
        pool = ThreadPoolExecutor(workers)

    def submit(chunk: str | TextRange) -> tuple[int, int | None, Future]:
        if not processes:
            return _range_bytes(chunk), None, pool.submit(encode_chunk, chunk)
        slot = slots.free.popleft() if slots is not None else None  # one free per chunk
        with interrupts_held():  # the workers are started in the first submits
            return _range_bytes(chunk), slot, pool.submit(_encode_in_worker, chunk, slot)

    def result() -> np.ndarray:
        nbytes, slot, future = in_flight.popleft()
        ids = future.result()
        if slot is not None:
            assert slots is not None
            if isinstance(ids, int):  # the ids are in the slot
                ids = slots.ids(slot, ids).copy()
            slots.free.append(slot)
        report(nbytes)
        return ids

    try:
        try:
            for chunk in itertools.chain(head, chunks):
                in_flight.append(submit(chunk))
                while len(in_flight) >= limit or (in_flight and in_flight[0][2].done()):
                    yield result()
        except Exception:  # reading a later piece failed: an earlier chunk's error is first
            for _, _, future in in_flight:
                if (earlier := future.exception()) is not None:
                    raise earlier from None
            raise
        while in_flight:
            yield result()
    except BrokenProcessPool:
        raise WorkerDiedError(
            "a tokenizer worker process died (killed, or out of memory?); run again, with "
            "fewer workers if memory is short"
        ) from None
    finally:
        for _, _, future in in_flight:
            future.cancel()
        if not processes:
            pool.shutdown(wait=True)
        else:
            # After an error, an interrupt or a consumer that stopped, the chunks not started
            # are cancelled and each worker finishes its own (a fraction of a second), then
            # exits; the queues are closed (no semaphore left to multiprocessing's tracker).
            # Not killed: a worker killed while it sends a result through the pool's pipe
            # leaves half a message, and the pool's thread waits for the rest forever.
            with interrupts_held():  # a second Ctrl-C must not leave a worker running
                pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _one_core() -> Iterator[None]:
    """``workers=1`` is one core: the tokenizers library's batch encoder, which reads
    ``TOKENIZERS_PARALLELISM`` at each call, runs on the calling thread, not its own pool."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if before is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def _range_bytes(chunk: str | TextRange) -> int:
    return chunk.nbytes if isinstance(chunk, TextRange) else 0


def _process_context() -> multiprocessing.context.BaseContext:
    """``fork`` where it is safe and cheap (the workers share the loaded tokenizer), else
    ``forkserver`` (POSIX) or ``spawn``.

    A fork copies one thread: one holding a lock in another Python thread, or a JAX
    process (JAX warns), is not forked.
    """
    methods = multiprocessing.get_all_start_methods()
    if (
        sys.platform == "linux"
        and "fork" in methods
        and threading.active_count() == 1
        and "jax" not in sys.modules
    ):
        return multiprocessing.get_context("fork")
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # Workers forked from a server that has this module (and tiktoken) loaded start faster;
    # this only adds to what a server not started yet loads.
    context.set_forkserver_preload([__name__])
    return context


class _IdSlots:
    """Memory shared with the workers: ``count`` slots of ``size`` ids each, where a worker
    writes a chunk's ids and returns only their number.

    The pool sends every result over one pipe that all workers write to. A worker killed
    (SIGKILL: the kernel's out-of-memory killer) while it writes a large result leaves half
    a message there; the pool's thread then waits for the rest forever, and the command with
    it, deaf to Ctrl-C. A result of one integer is written in one atomic write (under
    ``PIPE_BUF``), which no kill can cut. A chunk with more ids than a slot holds (one far
    past ``chunk_chars`` for want of a safe boundary, or runs of emoji) still sends them in
    the message.

    The memory is a ``memfd`` where the OS has them (Linux, ``SHAREABLE``): a worker started
    by a forkserver or spawn gets its file descriptor with its start-up arguments (pickled,
    ``multiprocessing.reduction.DupFd``). Elsewhere it is anonymous memory, which only forked
    workers share. No page is resident until ids are written to it.
    """

    SHAREABLE = hasattr(os, "memfd_create")

    def __init__(self, count: int, size: int, dtype: np.dtype, fd: int | None = None):
        self.count, self.size, self.dtype = count, size, np.dtype(dtype)
        self.free = collections.deque(range(count))
        nbytes = count * size * self.dtype.itemsize
        if fd is None and self.SHAREABLE:
            fd = os.memfd_create("flax-embed-ids", os.MFD_CLOEXEC)
            try:
                os.ftruncate(fd, nbytes)
            except BaseException:
                os.close(fd)
                raise
        self._fd = fd
        if fd is not None:
            weakref.finalize(self, os.close, fd)
        self._memory = mmap.mmap(-1 if fd is None else fd, nbytes)

    def __reduce__(self):
        # Pickled for a worker that is not forked: the fd is duplicated into it as it starts.
        if self._fd is None:
            raise TypeError("anonymous memory is shared with forked processes only")
        fd = multiprocessing.reduction.DupFd(self._fd)
        return _attach_slots, (fd, self.count, self.size, self.dtype.str)

    def ids(self, slot: int, n: int) -> np.ndarray:
        """The first ``n`` ids of ``slot``, a view of the shared memory."""
        return np.frombuffer(self._memory, self.dtype, n, slot * self.size * self.dtype.itemsize)


def _attach_slots(fd, count: int, size: int, dtype: str) -> _IdSlots:
    """The slots in a worker started by a forkserver or spawn, from their fd passed to it."""
    return _IdSlots(count, size, np.dtype(dtype), fd=fd.detach())


_worker_encode: Callable[[str | TextRange], np.ndarray] | None = None
"""A worker process's encoder (``_start_worker``)."""
_worker_slots: _IdSlots | None = None
"""The slots a worker writes its ids to (``_start_worker``)."""


def _start_worker(tokenizer: Tokenizer | None, bpe_dir: str | None,
                  slots: _IdSlots | None = None) -> None:  # fmt: skip
    global _worker_encode, _worker_slots
    _worker_slots = slots
    # Ctrl-C reaches the whole process group: the parent stops the workers, which must not
    # die on it first (each would print a traceback).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "setitimer"):  # POSIX: a TERM does not cut a message in two
        signal.signal(signal.SIGTERM, _terminate_worker)
        signal.signal(signal.SIGALRM, _terminate_worker)
    else:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # One core per worker: the tokenizers library's own threads would oversubscribe them.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _worker_encode = _chunk_encoder(tokenizer, bpe_dir, _worker_dtype(tokenizer))


# The code of a worker sending its result (or the ack of its end) to the pool: a message
# over the pipe all workers share, under their shared lock.
_SENDING = frozenset(
    code
    for code in (
        getattr(getattr(concurrent.futures.process, "_sendback_result", None), "__code__", None),
        getattr(getattr(multiprocessing.queues.SimpleQueue, "put", None), "__code__", None),
    )
    if code is not None
)
_TERMINATE_GRACE_S = 2.0
"""How long a worker told to terminate may take to finish the message it sends."""
_terminated_at: float | None = None


def _terminate_worker(signum: int, frame: types.FrameType | None) -> None:
    """A worker's SIGTERM handler: it exits at once, but not in the middle of a message.

    Killed while it writes its ids to the pipe all workers share, a worker would leave half a
    message there, and the pool's thread in the calling process would wait for the rest
    forever (a ``timeout`` or Slurm's TERM to the whole process group did hang the command);
    holding the pipe's lock, it would block the other workers. So a worker caught sending
    checks again every 10 ms (SIGALRM) and exits once the message is out, or after
    ``_TERMINATE_GRACE_S``: by then the pool has stopped reading (it stops a broken pool with
    this same signal), and half a message harms no one.
    """
    global _terminated_at
    now = time.monotonic()
    if _terminated_at is None:
        _terminated_at = now
    sending = any(f.f_code in _SENDING for f, _ in traceback.walk_stack(frame))
    if sending and now - _terminated_at < _TERMINATE_GRACE_S:
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        return
    os._exit(128 + signal.SIGTERM)


def _chunk_encoder(tokenizer: Tokenizer | None, bpe_dir: str | os.PathLike[str] | None,
                   dtype: np.dtype | None) -> Callable[[str | TextRange], np.ndarray]:  # fmt: skip
    """The tokenizer's encoder (default: GPT-2's) of a chunk, text or ``TextRange``; with
    ``dtype``, its ids cast to it."""
    encode = _encoder(bpe_dir) if tokenizer is None else tokenizer.encode

    def encode_chunk(chunk: str | TextRange) -> np.ndarray:
        ids = encode(chunk.read() if isinstance(chunk, TextRange) else chunk)
        return ids if dtype is None else ids.astype(dtype)

    return encode_chunk


def _worker_dtype(tokenizer: Tokenizer | None) -> np.dtype:
    """The ids travel back from the workers in the token files' dtype: half the bytes of int32
    for GPT-2."""
    return id_dtype(GPT2_VOCAB_SIZE if tokenizer is None else tokenizer.n_vocab)


def _encode_in_worker(chunk: str | TextRange, slot: int | None) -> np.ndarray | int:
    """A chunk's ids, or their number once written to ``slot`` of the shared slots."""
    assert _worker_encode is not None, "not a worker process"
    ids = _worker_encode(chunk)
    if slot is None or _worker_slots is None or len(ids) > _worker_slots.size:
        return ids
    _worker_slots.ids(slot, len(ids))[:] = ids
    return len(ids)


def _chunks(
    pieces: Iterable[str | TextRange],
    chunk_chars: int,
    next_boundary: Callable[[str, int], int | None],
    next_byte: Callable[[bytes, int], int | None] | None,
) -> Iterator[str | TextRange]:
    """The chunks of ``"".join(pieces)`` cut at safe boundaries, as the pieces stream in.

    A ``TextRange`` piece is cut into ranges at ``next_byte``'s boundaries, ``chunk_chars``
    bytes apart; the text before it ends at its start, a safe cut (``reads_text_ranges``).
    """
    pending: list[str] = []  # the carried-over text, then pieces not cut yet
    pending_chars = 0
    enough = 2 * chunk_chars  # pending text worth searching for a boundary
    pieces = iter(pieces)
    piece = next(pieces, None)
    while piece is not None:
        if isinstance(piece, TextRange):
            if next_byte is None:
                raise TypeError("this tokenizer takes str pieces, not TextRange "
                                "(parallel_tokenize.reads_text_ranges)")  # fmt: skip
            yield from piece.split(chunk_chars, next_byte)
            piece = next(pieces, None)
            continue
        if not isinstance(piece, str):
            raise TypeError(f"pieces must be str, got {type(piece).__name__}")
        following = next(pieces, None)
        last = following is None or isinstance(following, TextRange)  # the text ends here
        pending.append(piece)
        pending_chars += len(piece)
        if not last and pending_chars < enough:
            piece = following  # too little text for a chunk yet: join it later, once
            continue
        text = "".join(pending)
        bounds = _cut(text, chunk_chars, next_boundary)
        if last:
            pending, pending_chars, enough = [], 0, 2 * chunk_chars
        else:  # the text after the last boundary may continue
            carry = text[bounds[-2] :] if len(bounds) > 1 else ""
            bounds = bounds[:-1]
            pending, pending_chars = [carry], len(carry)
            # No boundary found: search again only once the text has doubled (a long
            # run without one is joined O(n log n), not O(n^2), times).
            enough = 2 * chunk_chars if len(bounds) > 1 else 2 * pending_chars
        for a, b in itertools.pairwise(bounds):
            yield text[a:b]
        piece = following


def _cut(text: str, chunk_chars: int, next_boundary: Callable[[str, int], int | None]) -> list[int]:
    bounds = [0]
    while (p := next_boundary(text, bounds[-1] + chunk_chars)) is not None:
        bounds.append(p)
    if len(text) > 0:
        bounds.append(len(text))
    return bounds


def encode_parallel(
    text: str,
    *,
    workers: int | None = None,
    bpe_dir: str | os.PathLike[str] | None = None,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
    tokenizer: Tokenizer | None = None,
    processes: bool = False,
) -> np.ndarray:
    """``encode(text)`` on ``workers`` threads: the same ids, faster on long texts.

    Example::

      >>> import numpy as np
      >>> text = "It's 2024 -- hello,   world!\\n\\n<|endoftext|>Bye.  " * 3
      >>> bool(np.array_equal(encode_parallel(text, chunk_chars=4), encode(text)))
      True

    Args:
      text: the text; ``<|endoftext|>`` in it becomes id 50256, as in ``encode``.
      workers: threads (default: the number of cores, ``default_workers()``).
      bpe_dir: as in ``gpt2_tokenizer``.
      chunk_chars: the least characters per chunk (see ``chunk_boundaries``); texts
        shorter than two chunks are encoded in one call.
      tokenizer: as in ``iter_encode_parallel`` (default: GPT-2).
      processes: as in ``iter_encode_parallel``: worker processes instead of threads.

    Returns:
      The token ids, an int32 array of shape ``(N,)`` (with ``processes``: the token
      files' dtype, ``uint16`` for GPT-2).
    """
    if not isinstance(text, str):
        raise TypeError(f"encode_parallel() takes a str, got {type(text).__name__}")
    parts = list(iter_encode_parallel([text], workers=workers, bpe_dir=bpe_dir,
                                      chunk_chars=chunk_chars, tokenizer=tokenizer,
                                      processes=processes))  # fmt: skip
    if parts:
        return np.concatenate(parts)
    return np.zeros(0, _worker_dtype(tokenizer) if processes else np.int32)
