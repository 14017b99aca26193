"""docs/positions.md shows figures that exist (its code blocks run in tests/test_docs.py)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "positions.md"


def test_the_figures_it_shows_exist():
    names = re.findall(r"\]\((figures/[^)]+\.png)\)", DOC.read_text(encoding="utf-8"))
    assert names
    for name in names:
        assert (DOC.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
