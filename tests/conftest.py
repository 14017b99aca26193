"""Shared fixtures: the sample texts. (The tokenizer probe is in the repository's conftest.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

VERDICT = Path(__file__).resolve().parent / "data" / "the-verdict.txt"
"""The book's sample text, Edith Wharton's "The Verdict" (1908, public domain), byte for
byte the ``the-verdict.txt`` of the book's repository (rasbt/LLMs-from-scratch, ch02)."""


@pytest.fixture(scope="session")
def verdict_text() -> str:
    """The book's sample text, "The Verdict", bundled with the tests (20 KB)."""
    return VERDICT.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def sample_text() -> str:
    """The sample text bundled with the package (always present)."""
    import flax_embed

    return flax_embed.sample_text()
