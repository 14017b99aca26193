"""Shared fixtures: the sample texts. (The tokenizer probe is in the repository's conftest.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
VERDICT = SHARED / "data" / "the-verdict.txt"


@pytest.fixture(scope="session")
def verdict_text() -> str:
    """The book's sample text, "The Verdict"; skips when shared/ is absent."""
    if not VERDICT.is_file():
        pytest.skip(
            f"needs {VERDICT} (the book's the-verdict.txt), which is outside the repository"
        )
    return VERDICT.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def sample_text() -> str:
    """The sample text bundled with the package (always present)."""
    import flax_embed

    return flax_embed.sample_text()
