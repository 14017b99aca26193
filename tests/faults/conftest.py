"""Helpers of the fault-injection suite: run writers in children, kill them, see what is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flax_embed._io import TEMP_MARK

REPO = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).with_name("_harness.py")


_JAX_CACHE: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def _shared_jax_cache(tmp_path_factory):
    """One JAX compilation cache for the suite's children: each embed compiles once, not 6 times."""
    _JAX_CACHE.append(str(tmp_path_factory.mktemp("jax-cache")))
    yield
    _JAX_CACHE.clear()


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("JAX_PLATFORMS", "cpu")
    if _JAX_CACHE:
        env.setdefault("JAX_COMPILATION_CACHE_DIR", _JAX_CACHE[0])
        env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        env.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    return env


def run_scenarios(scenarios: list[dict]) -> list[dict]:
    """Runs ``scenarios`` in forked children of one harness process (see ``_harness.py``)."""
    proc = subprocess.run(
        [sys.executable, str(HARNESS)],
        input=json.dumps(scenarios),
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def run_cli(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    """``python -m flax_embed ARGV`` in a fresh process."""
    kwargs.setdefault("capture_output", True)
    return subprocess.run(
        [sys.executable, "-m", "flax_embed", *argv],
        text=True,
        env=child_env(),
        timeout=120,
        **kwargs,
    )


def kill_session(proc: subprocess.Popen) -> None:
    """Kills ``proc`` (started with ``start_new_session``) and whatever is left of its session."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pid in session_processes(proc.pid):
        os.kill(pid, signal.SIGKILL)


def kill_a_worker_of_a_stopped_caller(proc: subprocess.Popen, workers: list[int]) -> str:
    """Stops ``proc`` for 1 s, so that its ``workers`` send all they have encoded; checks that
    none is left writing to a pipe; SIGKILLs the first and lets ``proc`` go on. Returns its
    stderr once it has ended; the test fails if it hangs for 60 s."""
    os.kill(proc.pid, signal.SIGSTOP)
    time.sleep(1)
    assert [pid for pid in workers if "pipe_write" in wchan(pid)] == []
    os.kill(workers[0], signal.SIGKILL)
    os.kill(proc.pid, signal.SIGCONT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the caller hung after a worker was killed")
    return err.decode()


def wchan(pid: int) -> str:
    """What the process waits in, from /proc (``pipe_write``, ``futex_do_wait``...; "" if gone)."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read()
    except OSError:
        return ""


def _stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command's name (state, ppid, pgrp, session,
    ...), or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def parent_of(pid: int) -> int | None:
    """The parent's pid (None if ``pid`` is gone)."""
    fields = _stat(pid)
    return None if fields is None else int(fields[1])


def session_processes(session: int) -> list[int]:
    """The live (not zombie) processes of ``session``, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        fields = _stat(entry) if entry.isdigit() else None
        if fields is not None and int(fields[3]) == session and fields[0] != "Z":
            found.append(int(entry))
    return found


def ours(folder: Path) -> list[str]:
    """The temporaries of ours in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if TEMP_MARK in p.name)


def assert_one_line(err: str) -> None:
    """Exactly one line on stderr, and no traceback."""
    assert err.count("\n") == 1 and err.endswith("\n") and "Traceback" not in err, err


@pytest.fixture
def corpus(tmp_path_factory) -> Path:
    """A small UTF-8 text file."""
    from flax_embed.data.samples import sample_text

    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(sample_text() * 4, encoding="utf-8")
    return path
