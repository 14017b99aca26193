"""Repository-wide pytest setup: the GPT-2 BPE files, probed once.

Tests, docstring examples (``--doctest-modules`` over ``flax_embed``) and the
documentation's examples (``tests/test_docs.py``) need GPT-2's BPE files for
anything that tokenizes. Each of them carries the ``tokenizer`` marker: a test its
own ``@pytest.mark.tokenizer``, a doctest its name in ``TOKENIZER_DOCTESTS`` below, a
documentation block its ``<!-- test: tokenizer -->`` comment. The files are probed once per
session; when they cannot be loaded (offline, no ``TIKTOKEN_CACHE_DIR``), the marked
tests are skipped up front, with a reason that says how to provide the files. A test
is never turned into a skip after it ran: a failure is a failure.
"""

from __future__ import annotations

import compileall
import functools
import os
import tempfile
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
SHARED_TIKTOKEN_CACHE = REPO.parent / "shared" / "tiktoken_cache"
PROBE_TIMEOUT_S = 30

# Run as a script by tests/distributed/test_multiprocess.py; importing it (as
# --doctest-modules would) sets XLA_FLAGS for this process and its children.
collect_ignore = [
    "tests/distributed/worker.py",
    # Run by tests/distributed/test_sharding.py in a process with 8 forced CPU devices.
    "tests/distributed/eight_devices",
]

# CI sets TIKTOKEN_CACHE_DIR; a developer's checkout beside shared/ works without it.
if SHARED_TIKTOKEN_CACHE.is_dir():
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED_TIKTOKEN_CACHE))

# The Ray tests start local clusters; Ray would otherwise report usage statistics over the
# network when a cluster starts. Tests talk to this machine only.
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"


@functools.cache
def tokenizer_missing() -> str | None:
    """``None`` when GPT-2's BPE files load; else why not and how to provide them.

    A download that neither finishes nor fails within ``PROBE_TIMEOUT_S`` (a network
    that drops packets) counts as missing, and ``FLAX_EMBED_BPE_DIR`` is then pointed
    at an empty folder so that later attempts fail at once instead of hanging.
    """
    from flax_embed.tokenizer import BPE_DIR_ENV, TokenizerUnavailableError, gpt2_tokenizer

    outcome: list[str | None] = []

    def load() -> None:
        try:
            gpt2_tokenizer()
            outcome.append(None)
        except TokenizerUnavailableError as e:
            outcome.append(str(e))

    probe = threading.Thread(target=load, daemon=True)
    probe.start()
    probe.join(PROBE_TIMEOUT_S)
    if outcome:
        return outcome[0]
    os.environ[BPE_DIR_ENV] = tempfile.mkdtemp(prefix="no-gpt2-bpe-")
    return (
        f"tiktoken's download of GPT-2's BPE files did not finish in {PROBE_TIMEOUT_S} s; "
        "set TIKTOKEN_CACHE_DIR to a tiktoken cache holding them, or FLAX_EMBED_BPE_DIR to "
        "a folder holding encoder.json and vocab.bpe"
    )


def pytest_configure(config) -> None:
    """Compiles the packages to bytecode once, in the controlling process.

    The many Python processes the tests start (the command, its workers, Ray's workers)
    then import them as from an installed package, where ``PYTHONDONTWRITEBYTECODE`` would
    have each compile their sources again (70 ms per process).
    """
    if not hasattr(config, "workerinput"):  # not in a pytest-xdist worker
        for package in ("flax_embed", "parity"):
            compileall.compile_dir(REPO / package, quiet=2)  # read-only: nothing said


def pytest_report_header(config) -> str:
    missing = tokenizer_missing()
    if missing is None:
        return "GPT-2 BPE files: found"
    return f"GPT-2 BPE files: NOT FOUND; tests that need them are skipped. {missing}"


# Docstring examples that tokenize (a doctest cannot carry a marker); tests carry
# ``@pytest.mark.tokenizer`` themselves.
TOKENIZER_DOCTESTS = {
    "flax_embed.data.packing.Documents.from_files",
    "flax_embed.data.parallel_tokenize.encode_parallel",
    "flax_embed.tokenizer.load_tokenizer",
}


def pytest_collection_modifyitems(config, items) -> None:
    """``@pytest.mark.tokenizer`` tests (and ``TOKENIZER_DOCTESTS``) are skipped up front offline.

    A test that needs GPT-2's BPE files is marked, and skipped before it runs when they
    cannot be loaded; a test never becomes a skip after it ran.
    """
    for item in items:
        if item.name in TOKENIZER_DOCTESTS:
            item.add_marker(pytest.mark.tokenizer)
    if not any(item.get_closest_marker("tokenizer") for item in items):
        return
    missing = tokenizer_missing()
    if missing is None:
        return
    skip = pytest.mark.skip(reason=f"needs GPT-2's BPE files: {missing}")
    for item in items:
        if item.get_closest_marker("tokenizer"):
            item.add_marker(skip)
