"""What every benchmark section shares: timing, memory, rows, the machine, sample ids.

Timing protocol: every variant of a comparison is warmed up, then timed in
*interleaved* rounds (A, B, C, then B, C, A, then C, A, B, ...), so that load from
other processes falls on all of them alike and none always runs first; a round
times ``number`` calls, and the result is the median over rounds of the time per
call. Compare the ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VERDICT = REPO / "tests" / "data" / "the-verdict.txt"
# A checkout beside shared/ works offline without TIKTOKEN_CACHE_DIR, as in tests/conftest.py.
if (REPO.parent / "shared" / "tiktoken_cache").is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(REPO.parent / "shared" / "tiktoken_cache"))
ROW_PREFIX = "BENCH-ROW "
"""Sections run as subprocesses print each row as this prefix plus one JSON line."""


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the results table.

    ``ratio`` is ``reference / ours`` for times (higher is better: "x faster") unless
    ``ratio_label`` says otherwise; ``met`` is None when the row has no target.
    """

    section: str
    what: str
    ours: str
    reference: str
    ratio: float | None
    ratio_label: str = "x faster"
    target: str = ""
    met: bool | None = None
    note: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, line: str) -> Row:
        return cls(**json.loads(line))


def emit(row: Row) -> None:
    """Prints ``row`` for ``run.py`` to collect (when this section runs as a subprocess)."""
    print(ROW_PREFIX + row.to_json(), flush=True)


def section_main(
    bench: Callable[[bool], None], doc: str, quick_help: str = "tiny sizes: checks the harness"
) -> int:
    """The command line of a section script: ``--quick`` or the full sizes."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    bench(parser.parse_args().quick)
    return 0


def interleaved(
    variants: dict[str, Callable[[], object]], *, rounds: int, number: int = 1, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per call of each variant, timed in interleaved rounds."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        # Each round starts with the next variant: whatever runs first after another
        # variant (cold caches, sleeping thread pools) is not always the same one.
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = variants[name]
            start = time.perf_counter()
            for _ in range(number):
                fn()
            samples[name].append((time.perf_counter() - start) / number)
    return {name: statistics.median(times) for name, times in samples.items()}


def fmt_time(seconds: float) -> str:
    """``12.3 µs``, ``4.56 ms`` or ``1.23 s``."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n: float) -> str:
    """``512 KB``, ``12.3 MB`` (powers of 1000: what ``ps`` users expect is close enough)."""
    if n < 1e6:
        return f"{n / 1e3:.0f} KB"
    if n < 1e9:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e9:.2f} GB"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(rows: Sequence[Row]) -> str:
    """``rows`` as a numbered Markdown table, then the numbered notes it refers to."""
    lines = [
        "| # | section | what | flax-embed | reference | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for i, row in enumerate(rows, 1):
        ratio = "" if row.ratio is None else f"{row.ratio:,.2f}{row.ratio_label}"
        met = {True: "yes", False: "**no**", None: ""}[row.met]
        cells = [str(i), row.section, row.what, row.ours, row.reference, ratio, row.target, met]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        if row.note:
            notes.append(f"{i}. {row.note}")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


# --- memory --------------------------------------------------------------------------------


def status_kb(field: str, pid: int | str = "self") -> int:
    """A ``/proc/PID/status`` field in kB (``VmRSS``, ``VmHWM``); OSError once the process is
    gone, RuntimeError if it has no such field (a zombie)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def reset_peak_rss() -> int:
    """Resets this process's peak RSS (Linux ``clear_refs``); returns the current RSS in bytes."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")
    return status_kb("VmRSS") * 1024


def peak_rss() -> int:
    """This process's peak RSS in bytes since start or the last ``reset_peak_rss``."""
    return status_kb("VmHWM") * 1024


def measure_in_fork(
    fn: Callable[..., object], *args: object, warmup: Sequence[object] | None = None
) -> dict:
    """Runs ``fn(*args)`` in a forked child; returns its peak RSS growth and time.

    The child starts with this process's imports and data (copy-on-write), runs
    ``fn(*warmup)`` (small arguments: it copies the pages of the code and objects the
    run touches, which would otherwise count as growth), resets its peak RSS, runs
    ``fn(*args)`` once and reports ``{"growth": bytes, "seconds": s, "result":
    repr}``; variants measured this way never share an allocator, so peaks do not mix.
    Call it before any JAX computation (forking a process that runs XLA threads is unsafe).
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        try:
            if warmup is not None:
                fn(*warmup)
            gc.collect()
            base = reset_peak_rss()
            start = time.perf_counter()
            result = fn(*args)
            seconds = time.perf_counter() - start
            payload = {"growth": peak_rss() - base, "seconds": seconds, "result": repr(result)}
        except BaseException as e:  # reported to the parent, which raises
            payload = {"error": f"{type(e).__name__}: {e}"}
        os.write(write_fd, json.dumps(payload).encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    payload = json.loads(data or b'{"error": "the child died without a report"}')
    if "error" in payload:
        raise RuntimeError(f"{getattr(fn, '__name__', fn)} failed in the child: {payload['error']}")
    return payload


def peak_rss_supported() -> bool:
    try:
        reset_peak_rss()
        peak_rss()
    except (OSError, RuntimeError):
        return False
    return True


# --- sample data ---------------------------------------------------------------------------


def sample_text() -> str:
    """The book's "The Verdict" (bundled with the tests), else the package's sample text."""
    if VERDICT.is_file():
        return VERDICT.read_text(encoding="utf-8")
    from flax_embed.cli import read_text

    return read_text(None)


def sample_documents(min_chars: int) -> list[str]:
    """The sample text cut at paragraph ends into ~4 KB documents, repeated to ``min_chars``."""
    text = sample_text()
    docs, start = [], 0
    while start < len(text):
        end = text.find("\n\n", start + 4000)
        end = len(text) if end < 0 else end + 2
        docs.append(text[start:end])
        start = end
    return docs * -(-min_chars // sum(map(len, docs)))


def corpus_ids(num_tokens: int) -> np.ndarray:
    """``num_tokens`` real GPT-2 ids: the sample text's ids, repeated (int32)."""
    from flax_embed.tokenizer import encode

    ids = encode(sample_text())
    return np.resize(ids, num_tokens).astype(np.int32)


def corpus_text(min_chars: int) -> str:
    """The sample text repeated to at least ``min_chars`` characters."""
    text = sample_text()
    return text * -(-min_chars // len(text))


# --- machine and subprocesses --------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    """The machine and software versions a table was measured with."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "jax": _version("jax"),
        "jaxlib": _version("jaxlib"),
        "flax": _version("flax"),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "tiktoken": _version("tiktoken"),
        "load average at start": " ".join(f"{x:.1f}" for x in load),
    }


def run_section(
    script: str, args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 600
) -> tuple[list[Row], str]:
    """Runs ``benchmarks/<script>`` in a fresh interpreter; returns its rows and its stdout."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "benchmarks"), str(REPO), full_env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    try:
        proc = subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / script), *args],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        name = script.removesuffix(".py")
        note = f"timed out after {timeout:.0f} s"
        return [Row(name, f"{script} {' '.join(args)}", "failed", "", None, note=note)], ""
    rows = [
        Row.from_json(line[len(ROW_PREFIX) :])
        for line in proc.stdout.splitlines()
        if line.startswith(ROW_PREFIX)
    ]
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        rows.append(
            Row(
                script.removesuffix(".py"),
                f"{script} {' '.join(args)}",
                "failed",
                "",
                None,
                note=f"exit {proc.returncode}: {tail[0][:160]}",
            )
        )
    return rows, proc.stdout
