"""Shared fixtures: the offline tokenizer cache and the sample texts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
VERDICT = SHARED / "data" / "the-verdict.txt"

# CI sets TIKTOKEN_CACHE_DIR; a developer's checkout beside shared/ works without it.
if (SHARED / "tiktoken_cache").is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken_cache"))


@pytest.fixture(scope="session")
def verdict_text() -> str:
    """The book's sample text, "The Verdict"; skips when shared/ is absent."""
    if not VERDICT.is_file():
        pytest.skip(f"{VERDICT} not present")
    return VERDICT.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def sample_text() -> str:
    """The sample text bundled with the package (always present)."""
    import flax_embed

    return flax_embed.sample_text()
