"""The Ray runner of ``shards.tokenize_corpus``: the same job, its units as Ray tasks.

``tokenize_corpus(inputs, out_dir, runner=RayRunner())`` (``flax-embed tokenize
... -o DIR/ --ray``) runs step 2 (one task per unit: a JSONL byte range, a run of
Parquet row groups, a file) and step 3 (one task per shard) of ``shards.py`` as Ray
tasks; the driver plans, records each finished task, and writes the manifest last,
atomically. Tasks run the same functions (``shards.run_unit``, ``shards.run_shard``)
as the local runner, and the shards are cut by global token count from the units'
counts, so the output is the local run's, byte for byte.

A task whose worker dies, or that fails with an ``OSError`` (a flaky disk), is
retried by Ray (``max_retries``); a malformed input fails the job at once
(``CorpusError``, no retry). A failed job writes no manifest.

On a cluster every node must see the inputs and ``out_dir`` at the same paths (a
shared filesystem) and have flax-embed installed::

    ray start --head --port 6379                 # on the head node
    ray start --address HEAD_IP:6379             # on each other node
    RAY_AUTH_MODE=token flax-embed tokenize /data/fw/ -o /data/tokens/ --ray-address HEAD_IP:6379

(``RAY_AUTH_MODE=token``: Ray 2.5x starts heads with token authentication on.)

``ray`` is imported here only, and only when a ``RayRunner`` is made (optional
``ray`` extra: ``pip install 'flax-embed[ray]'``).

An ``address`` is checked before Ray is asked to connect: it must be ``auto``,
``HOST:PORT`` or ``ray://HOST:PORT``, and its port must accept a TCP connection
within ``CONNECT_TIMEOUT`` seconds (Ray itself would retry a closed port for minutes).
Any failure is a ``RayConnectError`` whose one line names the address, and whatever
Ray started in this process is shut down.
"""

from __future__ import annotations

import logging
import re
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from flax_embed.data.corpus import CorpusError
from flax_embed.data.shards import RunnerError, ShardJob, UnitJob, run_shard, run_unit
from flax_embed.tokenizer import TokenizerError, TokenizerUnavailableError

__all__ = ["CONNECT_TIMEOUT", "RayConnectError", "RayRunner", "check_address"]

_Job = TypeVar("_Job", UnitJob, ShardJob)
CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a cluster's port to accept a connection."""
CANCEL_WAIT_S = 60.0
"""Seconds a failed job waits for its cancelled Ray tasks to end before cleaning up."""
_ADDRESS = re.compile(r"(ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):(\d{1,5})")


class RayConnectError(RunnerError):
    """A Ray cluster cannot be reached; the message is one line naming the address."""


def check_address(address: str, timeout: float | None = CONNECT_TIMEOUT) -> None:
    """Raises RayConnectError unless ``address`` is ``auto`` or a reachable ``[ray://]HOST:PORT``.

    ``timeout=None`` checks the form only, without connecting.
    """
    if address == "auto":
        return
    m = _ADDRESS.fullmatch(address)
    if not m or not 0 < int(m.group(3)) < 65536:
        raise RayConnectError(f"{address!r}: not a Ray address (HOST:PORT, ray://HOST:PORT "
                              "or auto)")  # fmt: skip
    if timeout is None:
        return
    host, port = m.group(2).strip("[]"), int(m.group(3))
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise RayConnectError(f"{address}: no Ray cluster answers there ({reason})") from None


def _import_ray():
    try:
        import ray
        import ray.exceptions
    except ImportError:
        raise ImportError("--ray needs Ray: pip install 'flax-embed[ray]'") from None
    return ray


def _unit_task(job: UnitJob) -> dict:
    return run_unit(job)


def _shard_task(job: ShardJob) -> dict:
    return run_shard(job)


class RayRunner:
    """Runs units and shards as Ray tasks (one CPU each), yielding results as they finish.

    Args:
      address: an existing cluster (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``);
        None starts a local Ray instance (unless Ray is already initialized in this
        process, which is then used as it is).
      num_cpus: CPUs of the local instance (default: all).
      max_retries: retries of a task whose worker dies or that raises ``OSError``.
    """

    workers: int = 1
    """Workers per task: 1, each task encodes on its own CPU (Ray runs one task per CPU)."""

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None,
                 max_retries: int = 3):  # fmt: skip
        self._ray = _import_ray()
        if address:
            check_address(address, timeout=None)  # the form only: no connection yet
        self._address, self._num_cpus = address, num_cpus
        self._owned = False
        self._started = False
        self.task_options = {"num_cpus": 1, "max_retries": max_retries,
                             "retry_exceptions": [OSError]}  # fmt: skip

    def start(self) -> None:
        """Starts or joins Ray, once: the job calls it after checking its inputs, so that a bad
        one is reported before Ray has started.

        Raises:
          RayConnectError: the cluster does not answer, or Ray cannot start (one line).
        """
        if self._started:
            return
        ray, address = self._ray, self._address
        if not ray.is_initialized():
            if address:
                check_address(address)
            handlers = _signal_handlers()
            try:
                # Ray's start-up notes (token authentication, "Started a local Ray instance")
                # are not the command's: only errors reach stderr.
                if address:
                    ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
                else:
                    ray.init(num_cpus=self._num_cpus, include_dashboard=False,
                             log_to_driver=False, logging_level=logging.ERROR)  # fmt: skip
            except Exception as e:  # ConnectionError, RuntimeError, ValueError, ...
                _shutdown(ray)
                where = address or "a local Ray instance"
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise RayConnectError(f"{where}: cannot start or join Ray ({reason})") from None
            except BaseException:  # interrupted while starting: stop what was started
                _shutdown(ray)
                raise
            finally:
                _restore_signal_handlers(handlers)
            self._owned = True
        self._unit = ray.remote(**self.task_options)(_unit_task)
        self._shard = ray.remote(**self.task_options)(_shard_task)
        self._started = True

    def _run(self, remote, jobs: Sequence[tuple[int, _Job]],
             done: Callable[[_Job], object]) -> Iterator[tuple[int, dict]]:  # fmt: skip
        ray = self._ray
        refs = {remote.remote(job): (i, job) for i, job in jobs}
        pending = list(refs)
        try:
            while pending:
                finished, pending = ray.wait(pending, num_returns=1)
                for ref in finished:
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as e:
                        cause = getattr(e, "cause", None)
                        if isinstance(cause, (CorpusError, OSError, TokenizerError,
                                              TokenizerUnavailableError)):  # fmt: skip
                            raise cause from None
                        raise
                    i, job = refs[ref]
                    done(job)
                    yield i, result
        except (KeyboardInterrupt, SystemExit):
            raise  # the command stops: close() shuts down the Ray it started, tasks included
        except BaseException:
            # A task failed (or the caller stopped reading) and this process goes on to clean
            # .work: a task still running must not write into it afterwards, so cancel the
            # rest and wait until each has ended.
            for ref in pending:
                ray.cancel(ref)
            if pending:
                ray.wait(pending, num_returns=len(pending), timeout=CANCEL_WAIT_S)
            raise

    def run_units(
        self, jobs: Sequence[tuple[int, UnitJob]], progress: Callable[[int], object]
    ) -> Iterator[tuple[int, dict]]:
        """Runs ``jobs`` as tasks; reports a unit's input bytes to ``progress`` when it ends."""
        if not jobs:
            return iter(())
        self.start()
        return self._run(self._unit, jobs,
                         lambda job: progress(sum(s.nbytes for s in job.segments)))  # fmt: skip

    def run_shards(self, jobs: Sequence[tuple[int, ShardJob]]) -> Iterator[tuple[int, dict]]:
        """Runs ``jobs`` as tasks."""
        if not jobs:
            return iter(())
        self.start()
        return self._run(self._shard, jobs, lambda job: None)

    def close(self) -> None:
        """Shuts down the Ray instance this runner started (not one it joined).

        Waits until the processes it started (GCS, raylet and their workers and agents) have
        exited, with SIGINT and SIGTERM held back meanwhile: a second Ctrl-C cannot leave
        them running; it is delivered once they are gone.
        """
        if self._owned:
            self._owned = False
            _shutdown(self._ray)


def _signal_handlers() -> dict[int, object] | None:
    """This process's SIGINT and SIGTERM handlers (None outside the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signal_handlers(handlers: dict[int, object] | None) -> None:
    """Puts back the handlers that ``ray.init`` replaced.

    ``ray.init`` makes SIGTERM ``sys.exit(15)`` (no cleanup, exit code 15, past the CLI's
    ``Terminated``), and Ray's C++ core installs its failure handler, which prints a stack
    dump ("*** SIGTERM received ***"): the command's own handling comes first.
    """
    for sig, handler in (handlers or {}).items():
        if handler is not None:
            signal.signal(sig, handler)  # type: ignore[arg-type]


def _shutdown(ray) -> None:
    """``ray.shutdown`` that waits for the processes it stops, with interrupts held back.

    A SIGINT or SIGTERM that arrives meanwhile is recorded, and raised again once the
    processes are gone (in the main thread; elsewhere signals are not ours to handle).
    """
    handlers = {sig: h for sig, h in (_signal_handlers() or {}).items() if h is not None}
    held: list[int] = []
    for sig in handlers:
        signal.signal(sig, lambda signum, frame: held.append(signum))
    try:
        ray.shutdown(wait_for_processes=True)
    finally:
        _restore_signal_handlers(handlers)
        if held:
            signal.raise_signal(held[0])
