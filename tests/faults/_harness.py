"""Runs writers in forked children and kills them at chosen points (the fault suite's engine).

Not a test module. ``python _harness.py`` reads a JSON list of scenarios on stdin
and prints a JSON list of results. Each scenario runs in a child forked from this
process (flax_embed is imported once, here, so a scenario costs a fork, not a
Python start), with stdout and stderr captured::

  {"cwd": dir, "argv": [...]}                    # flax-embed ARGV, or
  {"cwd": dir, "call": "save_params", "args": [path, rows, cols, fill]}
  {"cwd": dir, "call": "json", "args": [path]}   # parity's --json writer
  {"cwd": dir, "call": "truncate", "args": [path]}  # a token file truncated while mapped
  + "stdout": "broken-pipe" or "full" (a closed pipe, /dev/full)
  + "kill": {"at": "os.replace", "nth": 2, "signal": "SIGTERM", "when": "before"}

``kill`` sends ``signal`` to the child itself right before (``"when": "after"``:
right after) the ``nth`` call of ``at`` that touches ``cwd`` (for
``os.replace``/``os.mkdir``; every call for the others). The points are the
writers' steps, patched from the outside: production code has no test hook. ``at``
is one of ``os.replace``, ``os.fsync``, ``os.mkdir``, ``TokenFileWriter.write``,
``TokenFileWriter.__exit__`` (a signal "before" it lands where the ``with`` block has
ended and no line of ``__exit__`` has run), ``save_file`` (safetensors').
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

import flax_embed.cli
import flax_embed.convert
import flax_embed.tokenizer
from flax_embed.data import token_files


def _killer(real, spec, cwd, *, path_arg=True):
    calls = {"n": 0}
    after = spec.get("when") == "after"
    sig = getattr(signal, spec["signal"])

    def wrapper(*args, **kwargs):
        if path_arg and not any(str(a).startswith(cwd) for a in args[:2]):
            return real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == spec["nth"] and not after:
            os.kill(os.getpid(), sig)
        result = real(*args, **kwargs)
        if calls["n"] == spec["nth"] and after:
            os.kill(os.getpid(), sig)
        return result

    return wrapper


def _arm(spec, cwd):
    at = spec["at"]
    if at in ("os.replace", "os.mkdir"):
        name = at.split(".")[1]
        setattr(os, name, _killer(getattr(os, name), spec, cwd))
    elif at == "os.fsync":
        os.fsync = _killer(os.fsync, spec, cwd, path_arg=False)
    elif at.startswith("TokenFileWriter."):
        cls, name = token_files.TokenFileWriter, at.split(".")[1]
        setattr(cls, name, _killer(getattr(cls, name), spec, cwd, path_arg=False))
    elif at == "save_file":
        import safetensors.numpy

        safetensors.numpy.save_file = _killer(
            safetensors.numpy.save_file, spec, cwd, path_arg=False
        )
    else:
        raise ValueError(at)


def _truncated_while_mapped(path: str) -> int:
    """Maps a token file, truncates it behind the dataset's back, reads: an error, not SIGBUS."""
    from flax_embed.data import TokenFileDataset, TokenFileError, write_token_file

    write_token_file(path, np.arange(1 << 20) % 50257)
    dataset = TokenFileDataset(path, max_length=8, stride=8)
    dataset[0]
    os.truncate(path, 4096)
    try:
        dataset[len(dataset) - 1]
    except TokenFileError as e:
        print(e, file=sys.stderr)
        return 2
    return 0


def _redirect_stdout(kind: str) -> None:
    if kind == "broken-pipe":  # a reader that went away: writes get EPIPE
        read, write = os.pipe()
        os.close(read)
        os.dup2(write, 1)
        os.close(write)
    elif kind == "full":
        fd = os.open("/dev/full", os.O_WRONLY)
        os.dup2(fd, 1)
        os.close(fd)


def _run(scenario) -> int:
    os.chdir(scenario["cwd"])
    _redirect_stdout(scenario.get("stdout", ""))
    if scenario.get("call") == "truncate":
        return _truncated_while_mapped(scenario["args"][0])
    if "kill" in scenario:
        _arm(scenario["kill"], scenario["cwd"])
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as in any Python program
    # Ctrl-C raises KeyboardInterrupt, as in a Python program started from a shell: the
    # harness may have inherited SIGINT ignored or blocked from the test process.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    if "argv" in scenario:
        return flax_embed.cli.main(scenario["argv"])
    try:
        if scenario["call"] == "json":
            from parity.report import _write_json_atomic

            _write_json_atomic(Path(scenario["args"][0]), {"new": True})
            return 0
        path, rows, cols, fill = scenario["args"]
        table = np.full((rows, cols), fill, np.float32)
        params = {"tok_emb": {"embedding": table}, "pos_emb": {"embedding": table[:4]}}
        flax_embed.convert.save_params(path, params)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        print(e, file=sys.stderr)
        return 2
    return 0


def main() -> None:
    results = []
    scenarios = json.load(sys.stdin)
    # Loaded once, here, rather than in every child (they inherit them).
    flax_embed.tokenizer.gpt2_tokenizer()
    if any(s.get("call") == "json" or "embed" in s.get("argv", ()) for s in scenarios):
        import parity.report
        import parity.torch_reference  # noqa: F401
    for scenario in scenarios:
        out = tempfile.TemporaryFile()  # noqa: SIM115 (shared with the child)
        err = tempfile.TemporaryFile()  # noqa: SIM115
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 70
            try:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                code = _run(scenario)
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:
                traceback.print_exc()
                sys.stderr.flush()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        results.append(
            {
                "rc": code,
                "out": out.read().decode(),
                "err": err.read().decode(),
                "seconds": round(time.monotonic() - start, 2),
            }
        )
        out.close()
        err.close()
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
