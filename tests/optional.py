"""Per-test skips for the optional dependencies: mark the tests that need one, not the module."""

from __future__ import annotations

import importlib

import pytest


def importable(name: str) -> bool:
    """Whether ``import name`` works here."""
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def requires(*names: str, extra: str) -> pytest.MarkDecorator:
    """Skips the marked test unless every module of ``names`` imports; the reason says how to
    install them (``pip install "flax-embed[<extra>]"``)."""
    missing = [name for name in names if not importable(name)]
    return pytest.mark.skipif(
        bool(missing),
        reason=f"needs {', '.join(missing)}: pip install 'flax-embed[{extra}]'",
    )
