"""Readers while a file is replaced, a producer that never returns, a file truncated while
mapped, and signals from outside (a real SIGTERM to ``flax-embed tokenize``, a real SIGKILL
during ``save_params``)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from flax_embed.convert import save_params
from flax_embed.data import TokenFileDataset, read_token_file, write_token_file
from flax_embed.distributed.prefetch import DevicePrefetcher
from flax_embed.tokenizer import encode

from .conftest import (
    assert_one_line,
    child_env,
    kill_session,
    ours,
    run_scenarios,
    session_processes,
)

A = np.arange(3000) % 50257
B = (np.arange(5000) * 7 + 1) % 50257


@pytest.mark.parametrize("name", ["tokens.npy", "tokens.bin"])
def test_readers_see_the_old_or_the_new_file_while_it_is_replaced(tmp_path, name):
    target = tmp_path / name
    write_token_file(target, A)
    stop = threading.Event()
    writes = []

    def writer():
        while not stop.is_set():
            write_token_file(target, B if len(writes) % 2 == 0 else A)
            writes.append(1)

    thread = threading.Thread(target=writer)
    thread.start()
    reads = 0
    try:
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline or len(writes) < 5:
            ids = np.asarray(read_token_file(target))
            assert np.array_equal(ids, A) or np.array_equal(ids, B)
            windows = TokenFileDataset(target, max_length=8, stride=8, check_ids=False)
            first, _ = windows[len(windows) - 1]
            assert first.shape == (8,)
            reads += 1
    finally:
        stop.set()
        thread.join()
    assert reads > 5 and len(writes) >= 5
    assert ours(tmp_path) == []


def test_prefetch_close_returns_although_the_producer_blocks():
    release = threading.Event()

    def blocked():
        yield (np.zeros(2),)
        release.wait()  # a producer stuck on a socket, say
        yield (np.zeros(2),)

    prefetcher = DevicePrefetcher(blocked(), size=1)
    next(prefetcher)
    closer = threading.Thread(target=prefetcher.close)
    start = time.monotonic()
    closer.start()
    closer.join(timeout=DevicePrefetcher.CLOSE_TIMEOUT + 2)
    assert not closer.is_alive(), "close() did not return"
    assert time.monotonic() - start < DevicePrefetcher.CLOSE_TIMEOUT + 2
    assert prefetcher._thread.daemon  # it cannot keep the process alive
    with pytest.raises(StopIteration):
        next(prefetcher)
    release.set()
    prefetcher._thread.join(timeout=2)
    assert not prefetcher._thread.is_alive()


@pytest.mark.tokenizer
def test_token_file_truncated_while_mapped_is_an_error_not_sigbus(tmp_path):
    (result,) = run_scenarios(
        [{"cwd": str(tmp_path), "call": "truncate", "args": [str(tmp_path / "t.npy")]}]
    )
    assert result["rc"] == 2, result  # -7 (SIGBUS) without the size check
    assert_one_line(result["err"])
    assert "t.npy: truncated while in use" in result["err"]


def _wait_for_ours(folder, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not ours(folder):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.002)


def _tokenize_over_an_old_file(tmp_path):
    """A 3 MB corpus (no progress bar), ``out/t.bin`` holding ``A``, and the command that
    tokenizes the one into the other: ``(text, out, target, cmd)``."""
    from flax_embed.data.samples import sample_text

    text = sample_text() * 700
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    target = out / "t.bin"
    write_token_file(target, A)
    return text, out, target, [sys.executable, "-m", "flax_embed", "tokenize", str(corpus),
                               "-o", str(target)]  # fmt: skip


@pytest.mark.tokenizer
def test_a_real_sigterm_during_tokenize(tmp_path):
    _, out, target, cmd = _tokenize_over_an_old_file(tmp_path)
    for _ in range(5):  # a command that ended its encoding before it was stopped runs again
        proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
        try:
            # Stopped while its two workers live, the command is encoding (the pool is joined
            # before the file is committed): the TERM lands there, however slow this test is.
            while len(session_processes(proc.pid)) < 3 and proc.poll() is None:
                time.sleep(0.002)
            encoding = False
            if proc.poll() is None:  # not reaped: its group can be signalled
                os.killpg(proc.pid, signal.SIGSTOP)
                encoding = len(session_processes(proc.pid)) == 3
                if encoding:
                    proc.send_signal(signal.SIGTERM)
                os.killpg(proc.pid, signal.SIGCONT)
            _, stderr = proc.communicate(timeout=60)
        finally:
            kill_session(proc)
        if encoding:
            break
        write_token_file(target, A)
    else:
        pytest.fail("the command never stopped while encoding")
    assert proc.returncode == 143, stderr
    assert_one_line(stderr.decode())
    assert ours(out) == []
    np.testing.assert_array_equal(read_token_file(target), A)


@pytest.mark.harness
@pytest.mark.tokenizer
def test_a_sigterm_at_a_random_moment_leaves_the_old_file_or_the_whole_new_one(tmp_path):
    # A sample, not a proof: SIGTERMs at random moments of 40 runs. Each window the fault
    # suite pins (test_kills.py) was first found this way, one run in a few hundred.
    text, out, target, cmd = _tokenize_over_an_old_file(tmp_path)
    new = encode(text)
    rng = random.Random(0)
    for _ in range(40):
        write_token_file(target, A)
        proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)  # fmt: skip
        while not ours(out) and proc.poll() is None:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.25))
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert ours(out) == [], f"exit {proc.returncode} left a temporary"
        ids = read_token_file(target)  # a corrupt or half-written pair raises
        if proc.returncode == 143:
            assert_one_line(stderr.decode())
            assert np.array_equal(ids, A) or np.array_equal(ids, new)
        else:  # done before the TERM, or while Python exited (-15)
            assert proc.returncode in (0, -signal.SIGTERM), stderr
            np.testing.assert_array_equal(ids, new)


def test_a_real_sigkill_during_save_params_leaves_only_ours_and_the_next_save_cleans_up(
    tmp_path,
):
    target = tmp_path / "big.safetensors"
    script = (
        "import numpy as np; from flax_embed.convert import save_params; "
        "t = np.ones((8192, 2048), np.float32); "  # 64 MiB
        f"save_params({str(target)!r}, {{'tok_emb': {{'embedding': t}}, "
        "'pos_emb': {'embedding': t[:4]}})"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=child_env())
    _wait_for_ours(tmp_path, proc)
    proc.kill()
    proc.wait(timeout=30)
    left = ours(tmp_path)
    assert not target.exists() and len(left) == 1 and left[0].startswith(".big.safetensors.")
    table = np.ones((4, 4), np.float32)
    save_params(target, {"tok_emb": {"embedding": table}, "pos_emb": {"embedding": table}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.safetensors"]
