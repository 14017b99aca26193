"""MkDocs hooks: pages that show the code's own data, never a retyped copy.

* ``<!-- pinned-differences -->`` in a page becomes the table of
  ``parity.pinned.PINNED``, the outcomes the parity report checks (``pinned:`` rows).
* The notebook's figure (``notebooks/figures/``) is served as ``figures/...`` without
  keeping a copy under ``docs/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PINNED_MARKER = "<!-- pinned-differences -->"
FIGURES = REPO / "notebooks" / "figures"


def pinned_table() -> str:
    """``parity.pinned.PINNED`` as a Markdown table: one row per kind of ids."""
    from parity.pinned import FRAMEWORKS, OUTCOMES, PINNED, VERIFIED_WITH

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
        f"Generated from `parity/pinned.py` (last verified with {VERIFIED_WITH}); "
        "— marks a combination the report does not check.",
    ]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if PINNED_MARKER in markdown:
        markdown = markdown.replace(PINNED_MARKER, pinned_table())
    return markdown


def on_files(files: Files, config) -> Files:
    for figure in sorted(FIGURES.glob("*.png")):
        files.append(File.generated(config, f"figures/{figure.name}", abs_src_path=str(figure)))
    return files
