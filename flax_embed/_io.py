"""File plumbing, in one place: atomic writes, the wording of OS errors, and holding interrupts
during the steps that an exception must not cut in two.

Every file flax-embed writes (token files and their sidecars, ``embed --out``,
``save_params``, the parity report's ``--json``) goes through this module:

* **Atomic.** The bytes go to a temporary file beside the target, are flushed to
  disk and renamed into place: a reader sees the old file or the whole new one,
  never half of one. A write that fails, or is interrupted by an exception
  (``KeyboardInterrupt`` included, and SIGTERM in the CLI, which turns it into one),
  leaves the target as it was and no temporary file behind.
* **One mode rule.** A new file gets the mode ``open()`` would give it (0o666 less
  the umask, ``new_file_mode``); a file that is replaced keeps its mode
  (``target_mode``).
* **Recognisable leftovers.** A process killed outright (SIGKILL, a power cut)
  cannot clean up. Its temporary is named ``.{target name}.flax-embed-{pid}-{random}.tmp``
  (a file, or a folder for writers that take a path), and the next write to the same
  target deletes every such temporary whose process is gone (``remove_stale_temps``).
* **Errors name the target**, never the temporary: an ``OSError`` from a write has
  ``filename`` set to the target.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import stat
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "AtomicFile",
    "atomic_open",
    "atomic_path",
    "atomic_write_json",
    "describe_os_error",
    "file_sha256",
    "interrupts_held",
    "new_file_mode",
    "remove_stale_temps",
    "resolves_inside",
    "target_mode",
    "temp_path",
]

TEMP_MARK = ".flax-embed-"
"""What the names of flax-embed's temporary files contain, before the writer's pid."""


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the process umask.

    Temporary files are created owner-only (0o600) and keep that mode through the
    rename; set this on them so that written files are as readable as any other.
    """
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def target_mode(path: str | os.PathLike[str]) -> int:
    """The mode a write gives ``path``: its current mode if it exists, else ``new_file_mode()``."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return new_file_mode()


def temp_path(path: str | os.PathLike[str]) -> Path:
    """A fresh temporary name beside ``path``: ``.{name}.flax-embed-{pid}-{hex}.tmp``."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}.tmp")


_INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Defers SIGINT and SIGTERM to the end of the block, where the handlers in place before
    it run as if the signals had arrived then (raising ``KeyboardInterrupt``, say).

    For steps that an exception must not cut in two: a pool forking a worker (raised inside
    the fork, it would leave that worker out of the pool's list, alive after the command),
    the deletion of a temporary. Blocking the signals would not do: one that arrived just
    before is run by Python at its next line, inside the block; so its handlers are
    swapped for ones that note the signal.
    """
    # Signals are handled in the main thread only; a handler set outside Python is kept.
    outside = any(signal.getsignal(sig) is None for sig in _INTERRUPTS)
    if threading.current_thread() is not threading.main_thread() or outside:
        yield
        return
    arrived: list[signal.Signals] = []

    def note(signum: int, frame: object) -> None:
        arrived.append(signal.Signals(signum))

    previous = {sig: signal.signal(sig, note) for sig in _INTERRUPTS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in arrived:
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """``"sha256:<hex>"`` of a file's bytes, read in 8 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def _pid_is_gone(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: someone else's live process
        return False
    return False


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Deletes the temporaries of earlier writes to ``path`` whose process is gone; returns them.

    Only names made by ``temp_path`` for this very target are considered, and only
    when no process has their pid (a pid reused since is taken as alive: that
    temporary waits for a later write). Errors (a read-only folder, a race with
    another cleaner) are ignored: cleaning up is best effort.
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}{re.escape(TEMP_MARK)}(\d+)-[0-9a-f]+\.tmp")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or not _pid_is_gone(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def _name_target(error: OSError, path: Path, *temps: Path) -> OSError:
    """``error`` with the target as its file name when it named one of our temporaries."""
    names = {str(t) for t in temps}
    if error.filename is None or str(error.filename) in names or TEMP_MARK in str(error.filename):
        error.filename = str(path)
        error.filename2 = None
    return error


def _fsync_dir(folder: Path) -> None:
    """Makes a rename in ``folder`` durable; best effort (not every filesystem allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class AtomicFile:
    """A binary file being written atomically to ``path``: ``commit()`` or ``abort()`` it.

    For streaming writers that cannot live inside one ``with`` block
    (``TokenFileWriter``); ``atomic_open`` is the context-manager form. Creating
    one removes the stale temporaries of ``path`` (``remove_stale_temps``).

    Attributes:
      path: the target. tmp: the temporary beside it. file: the open temporary (``wb``).
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.mode = target_mode(self.path)
        remove_stale_temps(self.path)
        self.tmp = temp_path(self.path)
        try:
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            made = os.fstat(fd)
            self._identity = (made.st_dev, made.st_ino)
            self.file: IO[bytes] = os.fdopen(fd, "wb")
            # Deletes the temporary if this object is dropped unfinished: an interrupt can
            # land between a ``with`` block's end and its ``__exit__``'s first line, where
            # no code of the writer runs (``abort`` is this call; ``rename`` detaches it).
            self._discard = weakref.finalize(self, _discard, self.file, self.tmp, os.getpid())
        except OSError as e:
            raise _name_target(e, self.path, self.tmp) from None
        except BaseException:  # an interrupt right after the file was made
            self.tmp.unlink(missing_ok=True)
            raise

    def finish(self) -> None:
        """Flushes the temporary to disk and gives it the target's mode; ``rename`` remains."""
        try:
            self.file.flush()
            os.fchmod(self.file.fileno(), self.mode)
            os.fsync(self.file.fileno())
            self.file.close()
        except OSError as e:
            raise _name_target(e, self.path, self.tmp) from None

    def rename(self) -> Path:
        """Renames the finished temporary onto ``path``; returns ``path``."""
        try:
            os.replace(self.tmp, self.path)
        except OSError as e:
            raise _name_target(e, self.path, self.tmp) from None
        self._discard.detach()
        _fsync_dir(self.path.parent)
        return self.path

    def in_place(self) -> bool:
        """Whether ``path`` is now this temporary, renamed: by the file's identity, not by a
        flag that an interrupt raised right after the rename would leave unset."""
        try:
            found = os.stat(self.path)
        except OSError:
            return False
        return (found.st_dev, found.st_ino) == self._identity

    def commit(self) -> Path:
        """``finish()`` then ``rename()``; on any error, ``abort()`` and raise."""
        try:
            self.finish()
            return self.rename()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Deletes the temporary; ``path`` is left as it was (a no-op once renamed)."""
        self._discard()


def _discard(file: IO[bytes], tmp: Path, pid: int) -> None:
    """Closes and deletes an ``AtomicFile``'s temporary, in the process that made it (a forked
    child's copy of the writer neither flushes into the file nor deletes it)."""
    if os.getpid() != pid:
        return
    with interrupts_held():  # an interrupt between the two would leave the temporary
        with contextlib.suppress(OSError):
            file.close()
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a fresh path to write ``path``'s new content to; renames it onto ``path`` on success.

    For writers that take a file name (``safetensors.numpy.save_file``). The path
    lies in a temporary folder of ours beside ``path``, so that a writer's own
    temporary files (safetensors makes one beside the name it is given) are ours
    too: removed on failure, and recognisable after a kill. On an exception the
    folder is deleted and ``path`` is untouched.
    """
    path = Path(path)
    mode = target_mode(path)
    remove_stale_temps(path)
    folder = temp_path(path)
    try:
        folder.mkdir(mode=0o700)
    except OSError as e:
        raise _name_target(e, path, folder) from None
    tmp = folder / path.name
    try:
        yield tmp
        try:
            os.chmod(tmp, mode)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as e:
            raise _name_target(e, path, tmp, folder) from None
        _fsync_dir(path.parent)
    finally:
        with interrupts_held():  # not cut short, half the folder left
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """``open(path, mode)`` for writing (``"wb"`` or ``"w"``, UTF-8), atomically.

    The content is flushed to disk and renamed onto ``path`` when the block ends
    normally; on an exception ``path`` is left as it was and the temporary deleted.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    target = AtomicFile(path)
    try:
        if mode == "w":
            text = io.TextIOWrapper(target.file, encoding="utf-8")
            try:
                yield text
                text.flush()
            finally:
                text.detach()
        else:
            yield target.file
    except BaseException:
        target.abort()
        raise
    target.commit()


def resolves_inside(folder: str | os.PathLike[str], name: str | os.PathLike[str]) -> bool:
    """Whether ``folder/name`` lies strictly inside ``folder`` once symlinks are resolved.

    An absolute ``name``, ``..`` parts and symlinks that lead out all give False.

    >>> resolves_inside("/data/set", "train/part-0.arrow"), resolves_inside("/data/set", "../x")
    (True, False)
    """
    root = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(root, name))
    return target.startswith(root.rstrip(os.sep) + os.sep)


def atomic_write_json(path: str | os.PathLike[str], value, *, indent: int = 1) -> None:
    """Writes ``value`` as JSON (UTF-8, a final newline) to ``path``, atomically (``atomic_open``).

    The one JSON writer of flax-embed: sidecars, manifests, work records, reports.
    """
    with atomic_open(path, "w") as f:
        f.write(json.dumps(value, indent=indent) + "\n")


def describe_os_error(
    path: str | os.PathLike[str], error: OSError, *, writing: bool = False
) -> str:
    """The one-line wording of a failed read or write of ``path``, used everywhere.

    >>> describe_os_error("corpus.txt", FileNotFoundError(2, "No such file or directory"))
    'corpus.txt: no such file'
    >>> describe_os_error("out.npy", OSError(28, "No space left on device"), writing=True)
    'out.npy: cannot write (No space left on device)'
    """
    if not writing:
        if isinstance(error, FileNotFoundError):
            return f"{path}: no such file"
        if isinstance(error, IsADirectoryError):
            return f"{path}: is a directory, not a file"
        if isinstance(error, PermissionError):
            return f"{path}: permission denied"
    return f"{path}: cannot {'write' if writing else 'read'} ({error.strerror or error})"
