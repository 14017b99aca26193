"""The parity report: every check group on every backend, as a table or JSON.

Run it as ``python -m parity`` or ``flax-embed parity``. A check group is a callable
``(backend: str) -> list[CheckResult]``; add one by appending it to
``CHECK_GROUPS`` (one line), and it shows up in the report and in the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import shutil
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax

from flax_embed._io import atomic_write_json, describe_os_error
from parity.behaviour import behaviour_checks
from parity.common import available_backends, device_kind
from parity.conversion_checks import conversion_checks
from parity.forward import forward_checks
from parity.gradients import gradient_checks
from parity.linen_nnx import linen_nnx_checks
from parity.options import add_arguments
from parity.packing import packing_checks
from parity.positions import positions_checks
from parity.result import CheckResult
from parity.rope_matrix import family_checks
from parity.training import training_checks

__all__ = ["CHECK_GROUPS", "Report", "environment", "format_table", "main", "run", "run_report"]

CheckGroup = Callable[[str], list[CheckResult]]

CHECK_GROUPS: list[CheckGroup] = [
    forward_checks,
    conversion_checks,
    gradient_checks,
    training_checks,
    behaviour_checks,
    linen_nnx_checks,
    positions_checks,
    packing_checks,
    family_checks,
]
"""The groups of rows of the report, in order; each runs once per backend."""


@dataclasses.dataclass(frozen=True)
class Report:
    """The environment, the rows and how long they took."""

    environment: dict
    results: list[CheckResult]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def to_json(self) -> dict:
        rows = []
        for r in self.results:
            row = r.to_json()
            # JSON has no NaN: a NaN difference (a NaN output) is written as null.
            if isinstance(row["max_abs_diff"], float) and math.isnan(row["max_abs_diff"]):
                row["max_abs_diff"] = None
            rows.append(row)
        return {
            "environment": self.environment,
            "passed": self.passed,
            "seconds": round(self.seconds, 2),
            "results": rows,
        }


def environment(backends: Sequence[str]) -> dict:
    """Versions, devices and numerics settings the results depend on."""
    import flax
    import jaxlib
    import numpy
    import optax
    import torch

    from parity.common import sample_text

    return {
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "devices": {b: device_kind(b) for b in backends},
        "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision),
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
        "text": sample_text()[0],
    }


def run_report(
    backends: Sequence[str] | None = None, groups: Sequence[CheckGroup] | None = None
) -> Report:
    """Runs ``groups`` (default: ``CHECK_GROUPS``) on each of ``backends`` (default: all)."""
    backends = list(backends or available_backends())
    start = time.perf_counter()
    groups = list(groups or CHECK_GROUPS)
    results = [row for b in backends for group in groups for row in _run_group(group, b)]
    return Report(environment(backends), results, time.perf_counter() - start)


def _run_group(group: CheckGroup, backend: str) -> list[CheckResult]:
    """The group's rows; a group that raises becomes one failing row naming the error."""
    try:
        return group(backend)
    except Exception as e:
        return [
            CheckResult(
                check=f"{group.__name__} raised",
                backend=backend,
                device_kind=device_kind(backend),
                dtype="-",
                shape=(),
                max_abs_diff=float("nan"),
                tolerance=0.0,
                bit_identical=False,
                note=f"{type(e).__name__}: {e}",
                pinned=False,
            )
        ]


def _format_float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    return "0" if x == 0 else f"{x:.3g}"


def format_table(report: Report, width: int | None = None) -> str:
    """The report as a plain-text table with a header of versions and settings.

    Args:
      report: the report.
      width: the line length to fit in (the terminal's columns); ``None``: no limit.
        A table wider than ``width`` wraps its check names; if even that is too wide,
        each row's values go on an indented line below its check name.
    """
    env = report.environment
    lines = [
        "flax-embed parity report",
        "  " + ", ".join(f"{k} {env[k]}" for k in ("jax", "jaxlib", "flax", "optax", "torch")),
        f"  numpy {env['numpy']}, python {env['python']}, {env['machine']}",
        "  devices: " + ", ".join(f"{b}: {kind}" for b, kind in env["devices"].items()),
        f"  jax_default_matmul_precision={env['jax_default_matmul_precision']}, "
        f"jax_enable_x64={env['jax_enable_x64']}, text: {env['text']}",
    ]
    lines = [*_wrap(lines, width, indent="    "), ""]
    header = ("check", "backend", "dtype", "shape", "max |Δ|", "bit-identical", "tolerance", "pass")
    rows = []
    for r in report.results:
        if r.pinned is not None:
            diff, identical, tol = "-", "-", "pinned"
        else:
            diff = _format_float(r.max_abs_diff)
            identical = "yes" if r.bit_identical else "no"
            tol = "0 (exact)" if r.tolerance == 0 else _format_float(r.tolerance)
        rows.append(
            (
                r.check,
                f"{r.backend} ({r.device_kind})",
                r.dtype,
                "x".join(map(str, r.shape)) or "()",
                diff,
                identical,
                tol,
                "PASS" if r.passed else "FAIL",
            )
        )
    lines.extend(_columns(header, rows, width))
    failed = [r for r in report.results if not r.passed]
    lines.append("")
    notes = [f"  {r.check}: {r.note}" for r in report.results if r.note]
    if notes:
        lines.append("notes:")
        lines.extend(_wrap(notes, width, indent="      "))
        lines.append("")
    lines.append(
        f"{len(report.results) - len(failed)}/{len(report.results)} checks passed "
        f"in {report.seconds:.1f} s" + ("" if not failed else f"; FAILED: {len(failed)}")
    )
    return "\n".join(lines)


MIN_CHECK_WIDTH = 24
"""The narrowest the check column is wrapped to before rows go on two lines."""


def _wrap(lines: Sequence[str], width: int | None, indent: str) -> list[str]:
    """``lines`` wrapped to ``width`` (continuation lines start with ``indent``)."""
    if width is None:
        return list(lines)
    wrapped = []
    for line in lines:
        # The first line keeps its own indentation; textwrap drops trailing spaces.
        wrapped.extend(
            textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False) or [""]
        )
    return wrapped


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]], width: int | None) -> list[str]:
    """``rows`` under ``header`` in aligned columns, the first (the check) fitted to ``width``."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    rest = sum(widths[1:]) + 2 * (len(widths) - 1)
    if width is None or widths[0] + rest <= width:
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        return [
            fmt.format(*header),
            fmt.format(*("-" * w for w in widths)),
            *(fmt.format(*row) for row in rows),
        ]
    fmt_rest = "  ".join(f"{{:<{w}}}" for w in widths[1:])
    if width - rest >= MIN_CHECK_WIDTH:  # the check names wrap in their column
        check_width = width - rest
        fmt = f"{{:<{check_width}}}  {fmt_rest}"
        out = [fmt.format(*header), fmt.format(*("-" * w for w in [check_width, *widths[1:]]))]
        for row in rows:
            first, *more = textwrap.wrap(row[0], check_width, break_on_hyphens=False) or [""]
            out.append(fmt.format(first, *row[1:]))
            out.extend(more)
        return [line.rstrip() for line in out]
    # Too narrow for one line per row: the check name, then its values indented below it.
    out = [header[0], "  " + fmt_rest.format(*header[1:]), "-" * min(width, rest + 2)]
    for row in rows:
        out.extend(textwrap.wrap(row[0], width, subsequent_indent="    ", break_on_hyphens=False))
        out.append("  " + fmt_rest.format(*row[1:]))
    return [line.rstrip() for line in out]


def run(args: argparse.Namespace) -> int:
    """Runs the report for parsed ``args``; 0 when every check passed, else 1.

    Raises:
      ValueError: a requested backend is not present.
    """
    present = available_backends()
    for backend in args.backend or ():
        if backend not in present:
            raise ValueError(f"JAX backend {backend!r} is not present (present: {present})")
    report = run_report(args.backend or present)
    print(format_table(report, width=shutil.get_terminal_size().columns))
    if args.json:
        _write_json_atomic(Path(args.json), report.to_json())
        print(f"wrote {args.json}")
    return 0 if report.passed else 1


def _write_json_atomic(path: Path, data: dict) -> None:
    try:
        atomic_write_json(path, data, indent=2)
    except OSError as e:
        raise OSError(describe_os_error(path, e, writing=True)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m parity",
        description="Compares flax-embed with the PyTorch reference on every JAX backend.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as e:
        print(f"parity: error: {e}", file=sys.stderr)
        return 2
