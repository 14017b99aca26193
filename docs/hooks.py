"""MkDocs hooks: pages that show the code's own data, never a retyped copy.

* ``<!-- pinned-differences -->`` in a page becomes the table of
  ``parity.pinned.PINNED``, the outcomes the parity report checks (``pinned:`` rows).
* ``<!-- parity-report: results/parity.json -->`` becomes that JSON report
  (``python -m parity --json docs/results/parity.json``) as a table.
* ``<!-- benchmark-rows: SECTION... -->`` becomes the rows of those sections of the
  generated ``results/benchmarks.md`` (``python benchmarks/run.py --write-docs``), with
  their notes: a page quotes measured figures, it never retypes them.
* The notebook's figure (``notebooks/figures/``) is served as ``figures/...`` without
  keeping a copy under ``docs/``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path, PurePosixPath

from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[1]

PINNED_MARKER = "<!-- pinned-differences -->"
FIGURES = REPO / "notebooks" / "figures"
PARITY_MARKER = re.compile(r"<!-- parity-report: (?P<path>\S+) -->")
BENCHMARK_MARKER = re.compile(r"<!-- benchmark-rows: (?P<sections>[^>]+?) -->")
BENCHMARKS = "results/benchmarks.md"


def pinned_table() -> str:
    """``parity.pinned.PINNED`` as a Markdown table: one row per kind of ids."""
    # Loaded by path: this checkout's file, whichever ``parity`` is importable.
    spec = importlib.util.spec_from_file_location("_pinned", REPO / "parity" / "pinned.py")
    pinned = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pinned)
    FRAMEWORKS, OUTCOMES, PINNED = pinned.FRAMEWORKS, pinned.OUTCOMES, pinned.PINNED

    whos = [who for who in FRAMEWORKS if any(who in row for row in PINNED.values())]
    lines = [
        "| ids | " + " | ".join(FRAMEWORKS[who] for who in whos) + " |",
        "|---" * (len(whos) + 1) + "|",
    ]
    for kind, row in PINNED.items():
        cells = [
            f"`{row[who]}`"
            if row.get(who, "").endswith("Error")
            else OUTCOMES.get(row.get(who), "—")
            for who in whos
        ]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Generated from `parity/pinned.py` (last verified with {pinned.VERIFIED_WITH}); "
        "— marks a combination the report does not check.",
    ]
    return "\n".join(lines)


def _number(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "NaN"
    return "0" if x == 0 else f"{x:.3g}"


def parity_report(path: Path) -> str:
    """A ``python -m parity --json`` report as Markdown: the environment, then one row per check."""
    report = json.loads(path.read_text(encoding="utf-8"))
    env = report["environment"]
    devices = ", ".join(f"{b}: {kind}" for b, kind in env["devices"].items())
    lines = [
        f"{sum(r['passed'] for r in report['results'])}/{len(report['results'])} checks passed "
        f"in {report['seconds']:.0f} s; jax {env['jax']}, jaxlib {env['jaxlib']}, "
        f"flax {env['flax']}, optax {env['optax']}, torch {env['torch']}, numpy {env['numpy']}, "
        f"python {env['python']}; {env['machine']}; devices: {devices}; "
        f"`jax_default_matmul_precision={env['jax_default_matmul_precision']}`, "
        f"`jax_enable_x64={env['jax_enable_x64']}`; text: {env['text']}.",
        "",
        "| check | backend | dtype | shape | max \\|Δ\\| | bit-identical | tolerance | pass |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        if r["pinned"] is not None:
            diff, identical, tolerance = "-", "-", "pinned"
        else:
            diff = _number(r["max_abs_diff"])
            identical = "yes" if r["bit_identical"] else "no"
            tolerance = "0 (exact)" if r["tolerance"] == 0 else _number(r["tolerance"])
        cells = [
            r["check"].replace("|", "\\|"),
            f"{r['backend']} ({r['device_kind']})",
            r["dtype"],
            "x".join(map(str, r["shape"])) or "()",
            diff,
            identical,
            tolerance,
            "PASS" if r["passed"] else "**FAIL**",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def benchmark_rows(results: Path, sections: list[str], depth: int) -> str:
    """The rows of ``sections`` in the generated benchmark table, their notes below them."""
    text = results.read_text(encoding="utf-8")
    table = [line for line in text.splitlines() if line.startswith("| ")]
    header, rows = table[0], table[1:]
    picked = [row for row in rows if row.split(" | ")[1].strip() in sections]
    if not picked:
        raise ValueError(f"{results} has no rows of the sections {sections}")
    numbers = {row.split(" | ")[0].strip("| ") for row in picked}
    notes = [
        line for line in text.splitlines() if (m := re.match(r"(\d+)\. ", line)) and m[1] in numbers
    ]
    generated = re.search(r"on (\d{4}-\d\d-\d\d \d\d:\d\d UTC)", text)
    link = "../" * depth + BENCHMARKS  # relative to the page, ``depth`` folders below docs/
    when = f", generated on {generated[1]}" if generated else ""
    return "\n".join(
        [
            f"From [the benchmark results]({link}){when} (their machine, load and method "
            "are described there):",
            "",
            header,
            "|---" * (header.count("|") - 1) + "|",
            *picked,
            "",
            *(f"* **{note.split('. ', 1)[0]}.** {note.split('. ', 1)[1]}" for note in notes),
        ]
    )


def on_page_markdown(markdown: str, page, config, files) -> str:
    if PINNED_MARKER in markdown:
        markdown = markdown.replace(PINNED_MARKER, pinned_table())
    docs_dir = Path(config["docs_dir"])
    depth = len(PurePosixPath(page.file.src_uri).parent.parts)
    markdown = BENCHMARK_MARKER.sub(
        lambda m: benchmark_rows(docs_dir / BENCHMARKS, m["sections"].split(), depth),
        markdown,
    )
    return PARITY_MARKER.sub(lambda m: parity_report(docs_dir / m["path"]), markdown)


def on_files(files: Files, config) -> Files:
    for figure in sorted(FIGURES.glob("*.png")):
        files.append(File.generated(config, f"figures/{figure.name}", abs_src_path=str(figure)))
    return files
