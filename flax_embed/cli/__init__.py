"""The ``flax-embed`` command (also ``python -m flax_embed``): one module per subcommand.

Exit codes: 0 success; 1 a failed parity check (``parity``), or standard output
closed early (``flax-embed embed | head``: nothing more is printed, as Python's
documentation recommends for SIGPIPE); 2 a user or I/O error, printed as one line
on stderr; 130 interrupted (SIGINT, Ctrl-C); 143 terminated (SIGTERM). Interrupted
and terminated runs print one line and leave every output file as it was or
complete, with no temporary file (docs/guarantees.md).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from flax_embed._io import describe_os_error
from flax_embed.cli import embed, parity, tokenize
from flax_embed.cli._common import CLIError, Terminated, read_error, read_text

__all__ = ["CLIError", "build_parser", "main", "read_error", "read_text"]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``prog: error: message (see prog -h)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``flax-embed`` argument parser, with every subcommand."""
    parser = _Parser(
        prog="flax-embed",
        description="GPT-2's input-embedding stage in JAX/Flax, with exact PyTorch parity.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (embed, parity, tokenize):
        command.add_parser(commands)
    return parser


_received: list[int] = []
"""The interrupt signals (SIGINT, SIGTERM) that arrived during the run (see ``main``)."""
_in_hook = [False]
"""True while ``_redeliver`` runs: an interrupt raised there would be lost too."""
_timers: list[threading.Timer] = []


def _interrupt(signum: int, frame: object) -> None:
    """The run's SIGINT and SIGTERM handler: raises KeyboardInterrupt, or ``Terminated``."""
    _received.append(signum)
    if _in_hook[0]:
        _deliver_later(signum)
        return
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def _deliver_later(signum: int) -> None:
    """Sends ``signum`` to the main thread again, from another thread, a moment from now."""
    timer = threading.Timer(0.001, signal.pthread_kill, (threading.main_thread().ident, signum))
    timer.daemon = True
    _timers.append(timer)
    timer.start()


def _redeliver(unraisable) -> None:
    """``sys.unraisablehook``: delivers a swallowed interrupt to the main thread again.

    A signal's exception is raised wherever the main thread is, which may be a
    garbage-collector callback or a ``__del__`` (JAX and ``concurrent.futures`` have
    them): Python prints "Exception ignored" there and goes on, and the interrupt would
    be lost. The signal is sent again from another thread once this hook has returned
    (sent from this one, its handler would run, and raise, right here); its handler then
    runs at the next ordinary line.
    """
    exc_type = unraisable.exc_type
    if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
        _in_hook[0] = True
        try:
            _deliver_later(signal.SIGTERM if issubclass(exc_type, Terminated) else signal.SIGINT)
        finally:
            _in_hook[0] = False  # the last line: no signal is handled between it and the return
        return
    sys.__unraisablehook__(unraisable)


@contextlib.contextmanager
def _interrupts_raise():
    """While running: SIGINT raises KeyboardInterrupt and SIGTERM ``Terminated`` (a
    KeyboardInterrupt) in the main thread, and neither is lost in a finalizer."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled in the main thread: leave them alone
        return
    _received.clear()
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous_hook, sys.unraisablehook = sys.unraisablehook, _redeliver
    try:
        yield
    finally:
        for timer in _timers:
            timer.cancel()
        _timers.clear()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.unraisablehook = previous_hook


def _quiet_stdout() -> None:
    """Points stdout at /dev/null, so that exiting does not flush into a closed pipe again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _interrupted(prefix: str) -> int:
    """Reports the run's interrupt (SIGTERM if one came) as one line; returns its exit code."""
    if signal.SIGTERM in _received:
        print(f"{prefix}: terminated (SIGTERM); no output was left half-written", file=sys.stderr)
        return 128 + signal.SIGTERM
    print(f"{prefix}: interrupted (SIGINT); no output was left half-written", file=sys.stderr)
    return 128 + signal.SIGINT


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``flax-embed``; returns the exit code (see the module's docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a bad option (one line on stderr)
        return e.code if isinstance(e.code, int) else 2
    prefix = f"flax-embed {args.command}"
    try:
        with _interrupts_raise():
            code = args.run(args)
            sys.stdout.flush()  # a full disk or a closed pipe is reported here, not at exit
        return code
    except CLIError as e:
        if _received:  # what failed was stopped by the signal (its worker processes, say)
            return _interrupted(prefix)
        print(f"{prefix}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _quiet_stdout()
        return 1
    except KeyboardInterrupt:
        # Terminated, or what a library made of it: Ray's waits turn any exception raised
        # by a signal handler into a plain KeyboardInterrupt.
        return _interrupted(prefix)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG) or e.filename:
            raise
        # print() to stdout on a full disk (> /dev/full): no file name to give.
        _quiet_stdout()
        print(f"{prefix}: error: {describe_os_error('<stdout>', e, writing=True)}", file=sys.stderr)
        return 2
