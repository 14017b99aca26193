import contextlib
import itertools
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flax_embed.data import parallel_tokenize
from flax_embed.data.corpus import CorpusError, TextRange
from flax_embed.data.parallel_tokenize import (
    WorkerDiedError,
    chunk_boundaries,
    default_workers,
    encode_parallel,
    iter_encode_parallel,
)
from flax_embed.tokenizer import ENDOFTEXT, ENDOFTEXT_ID, encode, load_tokenizer

# Pieces that exercise every branch of GPT-2's pre-tokenizer regex and tiktoken's
# special-token split: whitespace runs of every kind (incl. Unicode White_Space and
# control characters that Python and the regex engine may classify differently),
# contractions, digits in several scripts, letters with combining marks, emoji with
# modifiers and joiners, and <|endoftext|> whole, doubled and in halves.
FRAGMENTS = [
    " ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n", "\n ", "\x0b", "\x0c",
    "\u00a0", "\u2028", "\u2029", "\u3000", "\u0085", "\u200b", "\u180e", "\x1c", "\x00",
    "'s", "'t", "'ll", "'ve", "'re", "'d", "'m", "'S", "'", "don't", "we'll", "''",
    "0", "123", "4.5", "١٢٣", "Ⅻ", "²",
    "a", "Hello", "héllo", "e\u0301", "\u0301", "ß", "日本語", "Ωμέγα", "İ",
    "😀", "👍🏽", "👩‍👩‍👧", "🇫🇷", "\ufe0f",
    ".", "...", ",", "--", "!?", "$", "_", "@@", "(", "}",
    ENDOFTEXT, ENDOFTEXT * 2, "<|endof", "text|>", "<|", "|>",
]  # fmt: skip

adversarial_text = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=40
).map("".join)
workers = st.integers(1, 4)
chunk_chars = st.integers(1, 12)


@pytest.mark.tokenizer
@settings(max_examples=1000, deadline=None)
@given(adversarial_text, workers, chunk_chars)
def test_parallel_ids_equal_serial_ids(text, workers, chunk_chars):
    np.testing.assert_array_equal(
        encode_parallel(text, workers=workers, chunk_chars=chunk_chars), encode(text)
    )


@pytest.mark.tokenizer
@settings(max_examples=500, deadline=None)
@given(adversarial_text)
def test_every_safe_boundary_keeps_the_ids(text):
    # chunk_chars=1 cuts at every safe boundary of the text at once.
    bounds = chunk_boundaries(text, 1)
    pieces = [encode(text[a:b]) for a, b in itertools.pairwise(bounds)]
    joined = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
    np.testing.assert_array_equal(joined, encode(text))


@pytest.mark.tokenizer
@settings(max_examples=300, deadline=None)
@given(adversarial_text, st.lists(st.integers(0, 200), max_size=6), workers, chunk_chars)
def test_streamed_pieces_cut_anywhere_equal_one_encode(text, cuts, workers, chunk_chars):
    # The stream's pieces are cut at arbitrary places, inside words and <|endoftext|> too.
    cuts = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    parts = list(iter_encode_parallel(pieces, workers=workers, chunk_chars=chunk_chars))
    joined = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    np.testing.assert_array_equal(joined, encode(text))


@pytest.mark.parametrize(
    "text",
    [
        "a\ud83d\ude00 b \ud83d\ude00\n c",  # a surrogate pair (one emoji as two code units)
        "x \ud800 y\udfff z",  # lone surrogates: tiktoken replaces them
        "trailing whitespace  \n\t ",
        f"{ENDOFTEXT} starts, {ENDOFTEXT}{ENDOFTEXT} middle, ends {ENDOFTEXT}",
    ],
)
@pytest.mark.tokenizer
@pytest.mark.parametrize("chunk", [1, 3])
def test_edge_texts(text, chunk):
    np.testing.assert_array_equal(encode_parallel(text, workers=3, chunk_chars=chunk), encode(text))


@pytest.mark.tokenizer
@pytest.mark.parametrize(("text", "cut"), [("a  b", 3), ("x \n\nfoo", 4)])
def test_a_cut_after_whitespace_would_change_the_ids(text, cut):
    # Why the boundary rule matters: a cut right after a whitespace run is not safe.
    split = np.concatenate([encode(text[:cut]), encode(text[cut:])])
    assert not np.array_equal(split, encode(text))
    assert cut not in chunk_boundaries(text, 1)


def test_boundaries_are_before_whitespace_after_visible_characters():
    text = "It's 42.  Hello\n\nworld\t!"
    assert chunk_boundaries(text, 1) == [0, 4, 8, 15, 22, len(text)]
    assert chunk_boundaries(text, 9) == [0, 15, len(text)]
    assert chunk_boundaries("", 1) == [0]
    assert chunk_boundaries("nowhitespace", 1) == [0, 12]


@pytest.mark.tokenizer
def test_long_text_uses_many_chunks_and_matches(verdict_text):
    text = (verdict_text + ENDOFTEXT) * 4
    assert len(chunk_boundaries(text, 10_000)) > 8
    ids = encode_parallel(text, workers=4, chunk_chars=10_000)
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, encode(text))
    assert (ids == ENDOFTEXT_ID).sum() == 4


@pytest.mark.tokenizer
def test_default_workers_is_the_core_count():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_workers() == cores
    text = "Hello, world. " * 50
    np.testing.assert_array_equal(encode_parallel(text, chunk_chars=16), encode(text))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"workers": 0}, ValueError), ({"chunk_chars": 0}, ValueError), ({"workers": 1.5}, TypeError)],
)
def test_bad_options(kwargs, error):
    with pytest.raises(error):
        encode_parallel("some text", **kwargs)


@pytest.mark.tokenizer
def test_non_str_input():
    with pytest.raises(TypeError, match="takes a str"):
        encode_parallel(b"bytes")
    with pytest.raises(TypeError, match="pieces must be str"):
        list(iter_encode_parallel(["ok", b"bytes"]))


# --- worker processes (processes=True: what flax-embed tokenize runs) ----------------------


@pytest.mark.tokenizer
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # JAX's, if another test loaded it
@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_worker_processes_give_the_same_ids(verdict_text, monkeypatch, method):
    # Both ways the workers start: forked (sharing the loaded tokenizer), or from a server.
    context = multiprocessing.get_context(method)
    monkeypatch.setattr(parallel_tokenize, "_process_context", lambda: context)
    text = (verdict_text + ENDOFTEXT) * 4
    ids = encode_parallel(text, workers=2, chunk_chars=10_000, processes=True)
    assert ids.dtype == np.uint16  # the token files' dtype: half the bytes through the pipe
    np.testing.assert_array_equal(ids, encode(text))
    assert not multiprocessing.active_children()


@pytest.mark.tokenizer
@pytest.mark.parametrize("workers", [1, 2])
def test_worker_processes_give_the_token_files_dtype_for_any_worker_count(workers):
    ids = encode_parallel("Hello, world. " * 50, workers=workers, chunk_chars=16, processes=True)
    assert ids.dtype == np.uint16
    assert encode_parallel("", workers=workers, processes=True).dtype == np.uint16


def test_workers_are_not_forked_beside_another_thread():
    # A fork copies one thread: a lock held by another one would stay held in the child.
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert parallel_tokenize._process_context().get_start_method() != "fork"
    finally:
        release.set()
        other.join()


@pytest.mark.tokenizer
def test_stopping_early_ends_the_worker_processes(verdict_text):
    stream = iter_encode_parallel([verdict_text * 4], workers=2, chunk_chars=1_000,
                                  processes=True)  # fmt: skip
    next(stream)
    assert multiprocessing.active_children()
    stream.close()
    assert not multiprocessing.active_children()


@pytest.mark.tokenizer
def test_a_killed_worker_is_one_clear_error(verdict_text):
    stream = iter_encode_parallel([verdict_text * 8], workers=2, chunk_chars=1_000,
                                  processes=True)  # fmt: skip
    next(stream)
    for child in multiprocessing.active_children():
        os.kill(child.pid, signal.SIGKILL)
    with pytest.raises(WorkerDiedError, match="worker process died"):
        list(stream)
    assert not multiprocessing.active_children()


# --- text files as byte ranges, read by the workers (corpus.TextRange pieces) -------------


@pytest.mark.tokenizer
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # JAX's, if another test loaded it
@pytest.mark.parametrize("processes", [False, True])
def test_text_ranges_among_text_pieces_give_the_ids_of_their_text(tmp_path, verdict_text,
                                                                  processes):  # fmt: skip
    path = tmp_path / "v.txt"
    path.write_bytes((verdict_text.replace("\n", "\r\n") + " é😀 ").encode() * 3)
    size = path.stat().st_size
    pieces = ["Before", ENDOFTEXT, TextRange(str(path), 0, size), ENDOFTEXT, "after"]
    reported = []
    parts = list(iter_encode_parallel(pieces, workers=2, chunk_chars=10_000,
                                      processes=processes, progress=reported.append))  # fmt: skip
    text = path.read_text(encoding="utf-8")  # universal newlines, as the workers read it
    np.testing.assert_array_equal(np.concatenate(parts),
                                  encode(f"Before{ENDOFTEXT}{text}{ENDOFTEXT}after"))  # fmt: skip
    assert sum(reported) == size and len([n for n in reported if n]) > 4  # per range
    assert not multiprocessing.active_children()


@pytest.mark.tokenizer
@pytest.mark.parametrize("processes", [False, True])
def test_an_earlier_ranges_error_comes_before_a_later_pieces(tmp_path, verdict_text,
                                                            processes):  # fmt: skip
    # A worker's error in an earlier range is reported, not the reader's in a later piece.
    path = tmp_path / "bad.txt"
    data = verdict_text.encode() * 3
    bad = len(data) - 200  # in the last range: still being read when the later piece fails
    path.write_bytes(data[:bad] + b"\xff" + data[bad:])

    def pieces():
        yield TextRange(str(path), 0, len(data) + 1)
        raise CorpusError("later.jsonl: line 1: not valid JSON")

    stream = iter_encode_parallel(pieces(), workers=2, chunk_chars=1_000, processes=processes)
    with pytest.raises(CorpusError, match=rf"bad\.txt: not UTF-8 text \(byte {bad}: invalid start"):
        list(stream)
    assert not multiprocessing.active_children()


def test_text_ranges_need_a_tokenizer_that_cuts_bytes(tmp_path, bpe_tokenizer_json):
    # A tokenizer.json may treat the text after a separator apart: its files are read as text.
    tokenizer = load_tokenizer(str(bpe_tokenizer_json))
    assert not parallel_tokenize.reads_text_ranges(tokenizer)
    (tmp_path / "t.txt").write_text("x")
    pieces = [TextRange(str(tmp_path / "t.txt"), 0, 1)]
    with pytest.raises(TypeError, match="takes str pieces, not TextRange"):
        list(iter_encode_parallel(pieces, tokenizer=tokenizer))


REPO = Path(__file__).resolve().parents[2]

_THREADS_AFTER_ONE_WORKER = """
import os, sys
from flax_embed.data.parallel_tokenize import iter_encode_parallel
from flax_embed.tokenizer import load_tokenizer
tokenizer = load_tokenizer(sys.argv[1])
text = "<|endoftext|>".join(f"document {k} of many, each its own." for k in range(5_000))
threads = len(os.listdir("/proc/self/task"))  # numpy's BLAS may have started some
ids = list(iter_encode_parallel([text], workers=1, chunk_chars=10_000, tokenizer=tokenizer))
assert len(ids) > 1, "one chunk"
print(len(os.listdir("/proc/self/task")) - threads, os.environ["TOKENIZERS_PARALLELISM"])
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_one_worker_is_one_core_for_a_tokenizer_json(bpe_tokenizer_json):
    # The tokenizers library encodes a batch on a pool of its own threads, one per core,
    # unless TOKENIZERS_PARALLELISM says otherwise: `--workers 1` starts none.
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "true", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _THREADS_AFTER_ONE_WORKER,
                           str(bpe_tokenizer_json)], capture_output=True, text=True, env=env,
                          check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "true"]  # no thread started; the caller's setting kept


_IDS_PAST_A_SLOT = """
import multiprocessing, sys
import numpy as np
from flax_embed.data import parallel_tokenize
from flax_embed.tokenizer import encode

method = sys.argv[1]
parallel_tokenize._process_context = lambda: multiprocessing.get_context(method)
in_slots = []  # the chunks whose ids came back in the shared memory
read = parallel_tokenize._IdSlots.ids
parallel_tokenize._IdSlots.ids = lambda self, slot, n: in_slots.append(n) or read(self, slot, n)
text = "".join(["Plain words, cut often. " * 40, "x" * 3_000, " Then: ", "\U0001f600" * 500,
                " and words again." * 40])
got = list(parallel_tokenize.iter_encode_parallel([text], workers=2, chunk_chars=200,
                                                  processes=True))
assert 0 < len(in_slots) < len(got), (len(in_slots), len(got))
np.testing.assert_array_equal(np.concatenate(got), encode(text))
assert not multiprocessing.active_children()
print("equal")
"""


@pytest.mark.tokenizer  # the subprocess loads GPT-2
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_ids_in_shared_memory_and_past_a_slot_are_the_serial_ids(method):
    # Workers write a chunk's ids to a slot of shared memory (2 ids per character of
    # chunk_chars), forked or not (a memfd passed to them as they start); a chunk with no
    # safe boundary for long, or of emoji (up to 4 ids each), has more and sends them in the
    # message. In a fresh process: one with JAX loaded or another thread does not fork.
    from tests.faults.conftest import child_env

    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    proc = subprocess.run([sys.executable, "-c", _IDS_PAST_A_SLOT, method], capture_output=True,
                          text=True, env=child_env(), check=False)  # fmt: skip
    assert (proc.returncode, proc.stdout) == (0, "equal\n"), proc.stderr[-3000:]


_ENCODE_ON_A_FORKSERVER = """
import errno, os, signal, sys, threading, time
from flax_embed.data.parallel_tokenize import iter_encode_parallel
from flax_embed.data.samples import sample_text

# Another thread: the workers are started by a forkserver, not forked; and no memory for
# the shared slots, so that they send their ids in the pool's messages.
threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()

def no_memory(*args):
    raise OSError(errno.ENOMEM, "Cannot allocate memory")

os.memfd_create = no_memory

def terminated(signum, frame):
    raise SystemExit(128 + signum)

signal.signal(signal.SIGTERM, terminated)
text = (sample_text() + "<|endoftext|>") * 500  # 2.3 MB
for ids in iter_encode_parallel([text], workers=2, processes=True):
    pass
"""


@contextlib.contextmanager
def _stopped_while_a_worker_sends():
    """A process encoding on forkserver workers, in its own session, stopped (SIGSTOP) at a
    moment when one of its workers is blocked writing its ids to the pool's full pipe, which
    nothing reads from then on: ``(process, that worker's pid)``. Whatever is left of the
    session is killed after."""
    from tests.faults.conftest import child_env, kill_session, session_processes, wchan

    proc = subprocess.Popen([sys.executable, "-c", _ENCODE_ON_A_FORKSERVER], env=child_env(),
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    sending: list[int] = []
    try:
        for _ in range(100):
            time.sleep(0.1)
            os.kill(proc.pid, signal.SIGSTOP)
            others = [pid for pid in session_processes(proc.pid) if pid != proc.pid]
            deadline = time.monotonic() + 1
            while time.monotonic() < deadline:
                if sending := [pid for pid in others if "pipe_write" in wchan(pid)]:
                    break
                time.sleep(0.01)
            if sending:
                break
            os.kill(proc.pid, signal.SIGCONT)  # not encoding yet (or between chunks)
        else:
            pytest.skip("no worker was seen writing to a pipe (/proc/PID/wchan)")
        yield proc, sending[0]
    finally:
        kill_session(proc)


def _session_ends(session: int, seconds: float) -> bool:
    from tests.faults.conftest import session_processes

    deadline = time.monotonic() + seconds
    while session_processes(session):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.harness  # 5 s each, of the fallback in which ids go in the messages
@pytest.mark.tokenizer  # the subprocess loads GPT-2
def test_a_term_to_the_group_while_a_worker_sends_its_ids_does_not_hang():
    # GNU timeout and Slurm send TERM to the whole process group. A worker it killed halfway
    # through writing its ids left half a message in the pool's pipe, and the caller waited
    # for the rest forever. A worker told to terminate finishes the message first.
    with _stopped_while_a_worker_sends() as (proc, _):
        os.killpg(proc.pid, signal.SIGTERM)
        os.kill(proc.pid, signal.SIGCONT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("hung after the TERM")
        assert proc.returncode == 128 + signal.SIGTERM, err.decode()[-3000:]
        assert _session_ends(proc.pid, 10), "a process outlived the TERM"


@pytest.mark.harness  # 5 s each, of the fallback in which ids go in the messages
@pytest.mark.tokenizer
def test_a_worker_whose_ids_cannot_go_out_still_ends_after_a_term():
    # ... but not forever: a broken pool stops reading, then sends TERM to its workers and
    # waits for them.
    from tests.faults.conftest import session_processes

    with _stopped_while_a_worker_sends() as (proc, worker):
        os.kill(worker, signal.SIGTERM)
        time.sleep(0.5)
        assert worker in session_processes(proc.pid), "killed halfway through its message"
        deadline = time.monotonic() + 10
        while worker in session_processes(proc.pid):
            assert time.monotonic() < deadline, "a worker outlived its TERM by 10 s"
            time.sleep(0.05)


_TOKENIZE_ON_A_FORKSERVER = """
import sys, threading, time
from flax_embed.data.parallel_tokenize import WorkerDiedError
from flax_embed.data.shards import tokenize_file

# Another thread, as in a JAX program: the workers are started by a forkserver, not forked.
threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
try:
    tokenize_file([sys.argv[1]], sys.argv[2])
except WorkerDiedError as e:
    print(e, file=sys.stderr)
    sys.exit(2)
"""


@pytest.mark.tokenizer  # the subprocess loads GPT-2
def test_a_forkserver_worker_killed_at_any_moment_is_an_error_not_a_hang(tmp_path):
    # Workers started by a forkserver get the shared slots too (their memfd): they send only
    # a number, so a SIGKILL (the out-of-memory killer) never cuts a message in the pool's
    # pipe, where the caller would wait for the rest forever. With the caller stopped, every
    # worker has sent all it encoded: none may be left writing to the pipe.
    from flax_embed.data.samples import sample_text
    from tests.faults.conftest import (
        child_env,
        kill_a_worker_of_a_stopped_caller,
        kill_session,
        parent_of,
        session_processes,
    )

    corpus = tmp_path / "big.txt"
    corpus.write_text(sample_text() * 13_200, encoding="utf-8")  # 60 MB
    proc = subprocess.Popen([sys.executable, "-c", _TOKENIZE_ON_A_FORKSERVER, str(corpus),
                             str(tmp_path / "tokens.bin")], env=child_env(),
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        # The workers are the forkserver's children: grandchildren of the caller.
        not_workers = (None, proc.pid, os.getpid())
        while len(workers := [p for p in session_processes(proc.pid)
                              if parent_of(p) not in not_workers]) < 2:  # fmt: skip
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no worker processes in 60 s"
            time.sleep(0.005)
        time.sleep(0.3)
        err = kill_a_worker_of_a_stopped_caller(proc, workers)
        assert proc.returncode == 2, err
        assert "a tokenizer worker process died" in err, err[-3000:]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]
    finally:
        kill_session(proc)
