"""What every ``flax-embed`` subcommand shares: the user-error type, reading text, options."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from flax_embed._io import describe_os_error
from flax_embed._validation import available_memory, check_positive_int
from flax_embed._validation import check_memory as _check_memory
from flax_embed.data.samples import sample_text

__all__ = [
    "INT32_MAX",
    "SAMPLE_TEXT",
    "CLIError",
    "Terminated",
    "available_memory",
    "check_memory",
    "int_option",
    "read_error",
    "read_text",
    "write_error",
]

INT32_MAX = 2**31 - 1
"""The largest size an option takes: JAX indexes arrays with int32."""

SAMPLE_TEXT = "sample.txt"
"""How the bundled sample text is named in messages."""


class CLIError(Exception):
    """A user error: printed as one line, exit code 2, no traceback."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like SIGINT's KeyboardInterrupt (so writes clean up)."""


def int_option(minimum: int, maximum: int) -> Callable[[str], int]:
    """An argparse ``type=``: a decimal int in ``[minimum, maximum]``, else a one-line error."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        try:
            return check_positive_int("it", value, minimum=minimum, maximum=maximum)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix("it ")) from None

    parse.__name__ = "int"
    return parse


def check_memory(what: str, nbytes: int) -> None:
    """CLIError if ``nbytes`` (for ``what``) exceed the available memory, before allocating."""
    try:
        _check_memory(what, nbytes)
    except ValueError as e:
        raise CLIError(str(e)) from None


def read_error(path: str | os.PathLike[str], error: OSError) -> CLIError:
    """The one-line error for a file that cannot be read."""
    return CLIError(describe_os_error(path, error))


def write_error(path: str | os.PathLike[str], error: OSError) -> CLIError:
    """The one-line error for a file that cannot be written.

    Names the file the error names when there is one (a ``.bin``'s sidecar, say),
    else ``path``; ``_io`` makes errors name targets, never temporaries.
    """
    return CLIError(describe_os_error(error.filename or path, error, writing=True))


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
