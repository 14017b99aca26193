"""Every Python code block of docs/positions.md runs on its own, and its figure exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "positions.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_the_page_has_code_blocks():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("source", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_block_runs_standalone(source):
    exec(compile(source, str(DOC), "exec"), {"__name__": "__docs__"})


def test_the_figures_it_shows_exist():
    for name in re.findall(r"\]\((figures/[^)]+\.png)\)", DOC.read_text(encoding="utf-8")):
        assert (DOC.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
