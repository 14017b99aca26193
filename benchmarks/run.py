"""flax-embed benchmarks: one table of ratios, every pair measured side by side in one run.

    python benchmarks/run.py            # the full run (a few minutes on 2 cores)
    python benchmarks/run.py --quick    # tiny sizes, every row: checks the harness (CI)

Each section runs in a fresh interpreter (``benchmarks/<section>.py``; the forward
section twice: JAX's defaults, and ``--tuned``) and prints its rows; this script
describes the machine and prints them as one Markdown table. Ratios are measured
within one section's process, interleaved, so compare ratios, not absolute times.
Exit status 1 when a section failed to run (a missed target is not a failure).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, Row, machine, markdown_table, run_section

SIDE_BY_SIDE_ENV = {"OMP_WAIT_POLICY": "passive"}
"""torch's OpenMP threads sleep when idle instead of spinning: spinning, they hold the cores
after each torch call and slow whatever runs next (JAX's two threads by up to 45% at
(8, 1024, 768) here), while torch's own times do not change."""
TUNED_ENV = {**SIDE_BY_SIDE_ENV, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
"""Also lets glibc back large allocations with transparent huge pages (glibc >= 2.35;
ignored by older ones): fresh outputs then cost a fault per 2 MB instead of per 4 KB."""


def sections(quick: bool) -> list[tuple[str, str, list[str], dict[str, str]]]:
    """(name, script, args, extra environment) of each section, in order."""
    q = ["--quick"] if quick else []
    plan = [
        ("loader", "loader.py", q, {}),
        ("forward", "forward.py", q, SIDE_BY_SIDE_ENV),
        ("forward-tuned", "forward.py", [*q, "--tuned"], TUNED_ENV),
        ("tokenizer", "tokenizer.py", q, {}),
        ("pipeline", "pipeline.py", q, {}),
        ("prefetch", "prefetch_overlap.py", q, {}),
    ]
    if not quick and (REPO / "benchmarks" / "token_file_rss.py").is_file():
        plan.append(("token-file-rss", "token_file_rss.py", [], {}))
    return plan


def token_file_row(stdout: str) -> Row:
    """The row of ``token_file_rss.py``, which prints a report instead of rows."""
    ours = re.search(r"from_file grows peak RSS by ([\d,.]+) MB", stdout)
    plain = re.search(r"plain np.memmap.*peak RSS \+([\d,.]+) MB", stdout)
    size = re.search(r"wrote ([\d,.]+) MB", stdout)
    if not (ours and plain and size):
        return Row("token files", "token_file_rss.py", "failed", "", None, note=stdout[-160:])
    mb = {k: float(m.group(1).replace(",", "")) for k, m in
          (("ours", ours), ("plain", plain), ("size", size))}  # fmt: skip
    return Row(
        "token files",
        f"peak RSS growth iterating a {mb['size']:,.0f} MB token file (40,000 batches)",
        f"{mb['ours']:,.1f} MB",
        f"{mb['plain']:,.1f} MB plain np.memmap",
        mb["plain"] / max(mb["ours"], 0.1),
        ratio_label="x less",
        target="< 100 MB",
        met=mb["ours"] < 100,
        note="SlidingWindowDataset.from_file (ids checked) vs np.memmap keeping its pages",
    )


def render(rows: list[Row], info: dict[str, str], seconds: float, quick: bool) -> str:
    """The Markdown report: the machine, the table, then the notes it refers to."""
    lines = [
        f"flax-embed benchmarks ({'quick: tiny sizes, targets not judged' if quick else 'full'})",
        "",
        "; ".join(f"{k}: {v}" for k, v in info.items()),
        "",
        markdown_table(rows),
        "",
        f"Total time: {seconds:.0f} s.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness")
    parser.add_argument(
        "--only", action="append", metavar="SECTION",
        help="run only this section (repeatable): loader, forward, forward-tuned, tokenizer, "
        "pipeline, prefetch, token-file-rss",
    )  # fmt: skip
    args = parser.parse_args(argv)
    start = time.perf_counter()
    info = machine()
    rows: list[Row] = []
    failed = False
    for name, script, script_args, env in sections(args.quick):
        if args.only and name not in args.only:
            continue
        print(f"[{time.perf_counter() - start:5.0f} s] {name} ...", file=sys.stderr, flush=True)
        section_rows, stdout = run_section(
            script, script_args, env=env, timeout=300 if args.quick else 900
        )
        if name == "token-file-rss" and not section_rows:
            section_rows = [token_file_row(stdout)]
        failed |= any(r.ours == "failed" for r in section_rows)
        rows += section_rows
    print(render(rows, info, time.perf_counter() - start, args.quick))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
