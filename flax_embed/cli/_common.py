"""What every ``flax-embed`` subcommand shares: the user-error type and reading text."""

from __future__ import annotations

import os
from pathlib import Path

from flax_embed._io import describe_os_error
from flax_embed.data.samples import sample_text

__all__ = ["SAMPLE_TEXT", "CLIError", "read_error", "read_text", "write_error"]

SAMPLE_TEXT = "sample.txt"
"""How the bundled sample text is named in messages."""


class CLIError(Exception):
    """A user error: printed as one line, exit code 2, no traceback."""


def read_error(path: str | os.PathLike[str], error: OSError) -> CLIError:
    """The one-line error for a file that cannot be read."""
    return CLIError(describe_os_error(path, error))


def write_error(path: str | os.PathLike[str], error: OSError) -> CLIError:
    """The one-line error for a file that cannot be written."""
    return CLIError(describe_os_error(path, error, writing=True))


def read_text(path: str | os.PathLike[str] | None) -> str:
    """The UTF-8 text of ``path``, or the bundled sample text when ``path`` is None."""
    if path is None:
        return sample_text()
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CLIError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except OSError as e:
        raise read_error(path, e) from None
