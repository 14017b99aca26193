"""docs/packing.md shows a figure that exists and its padding table is the code's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "packing.md"


def test_the_figures_it_shows_exist():
    names = re.findall(r"\]\((figures/[^)]+\.png)\)", DOC.read_text(encoding="utf-8"))
    assert names
    for name in names:
        assert (DOC.parent / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


@pytest.mark.tokenizer
def test_the_padding_table_matches_packed_dataset():
    from flax_embed.data import PackedDataset
    from parity.packing import packing_corpus

    text = DOC.read_text(encoding="utf-8")
    row = re.search(r"^\| 128 \| (.+) \|$", text, re.M)
    assert row, "the T = 128 row of the padding table"
    shown = re.findall(r"[\d.]+%", row.group(1))
    docs = packing_corpus()
    actual = [f"{PackedDataset(docs, 128, method=m, num_packing_bins=b).padding_fraction:.2%}"
              for m in ("first_fit", "best_fit") for b in (4, 16, 64)]  # fmt: skip
    actual.append(f"{PackedDataset(docs, 128, method='concat_split').padding_fraction:.2%}")
    assert shown == actual
