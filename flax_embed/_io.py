"""File plumbing, in one place: atomic writes and the wording of OS errors.

Atomic writes go to a temporary file beside the target, renamed into place: a
reader sees the old file or the whole new one, never half of one; a write that
fails or is interrupted leaves the target as it was and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_open", "atomic_path", "describe_os_error", "new_file_mode"]


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the process umask.

    Temporary files are created owner-only (0o600) and keep that mode through the
    rename; set this on them so that written files are as readable as any other.
    """
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yields a fresh temporary path beside ``path``; renames it onto ``path`` on success.

    For writers that take a file name (``safetensors.numpy.save_file``). On an
    exception the temporary file is deleted and ``path`` is untouched.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, new_file_mode())
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """``open(path, mode)`` for writing, atomically: flushed to disk, then renamed."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


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
