"""Smoke test of the benchmark harness: ``benchmarks/run.py --quick`` runs every row.

No timing is asserted (speed is judged from the table's ratios, never in tests);
what is checked is that each section ran and that the correctness facts the rows
report hold: outputs bit-identical to torch, parallel ids identical to one call.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# A subprocess that tokenizes (skip up front offline); the harness, run by `-m harness`.
pytestmark = [pytest.mark.tokenizer, pytest.mark.harness]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def docs_page(tmp_path_factory) -> Path:
    """Where ``--write-docs`` writes the page (the report fixture runs it)."""
    return tmp_path_factory.mktemp("docs") / "benchmarks.md"


@pytest.fixture(scope="module")
def report(docs_page) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--write-docs", docs_page],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def table_rows(report: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in report.splitlines()
        if re.match(r"\| \d+ \|", line)
    ]


def test_describes_the_machine(report):
    for field in ("date:", "cpu:", "cores:", "jax:", "torch:", "numpy:"):
        assert field in report


@pytest.mark.parametrize(
    ("section", "what"),
    [
        ("loader", "shuffled window indices per batch, 1,000,000 windows"),
        ("loader", "build + 1 epoch, 20,000 tokens, stride 128"),
        ("loader", "build + 1 epoch, 2,000 tokens, stride 1"),
        ("loader", "peak RSS growth, 2,000 tokens, stride 1"),
        ("forward", "(8, 4, 256) jit vs torch eager [JAX defaults]"),
        ("forward", "(8, 4, 256) jit vs torch eager [tuned]"),
        ("forward", "jit vs memcpy of the output [tuned]"),
        ("forward", "first call (trace + compile) [JAX defaults]"),
        ("tokenizer", "encode_parallel (threads) vs one tiktoken encode"),
        ("tokenizer", "encode_parallel (processes) vs one tiktoken encode"),
        ("corpora", "tokenize command end to end"),
        ("corpora", "jsonl vs .txt throughput"),
        ("corpora", "parquet vs .txt throughput"),
        ("corpora", "Ray runner (local instance"),
        ("corpora", "from_files over 8 shards vs from_file"),
        ("pipeline", "with prefetch (size 2)"),
        ("positions", "RoPE.apply jit on q and k (2, 64, 4, 64) vs HF eager"),
        ("positions", "RoPE.apply jit on q and k (2, 64, 4, 64) vs memcpy of q and k"),
        ("positions", "sinusoidal_table(4096, 256) jit vs M2M100"),
        ("positions", "alibi_bias(4, 128, 128) jit vs torch"),
        ("packing", "first_fit plan + epoch of batches, 1,000 docs, T=128"),
        ("tokenize-e2e", "start-up: flax-embed tokenize --help"),
        ("tokenize-e2e", "GPT-2: flax-embed tokenize, 0.3 MB .txt, vs one call"),
        ("tokenize-e2e", "GPT-2: CPU time of the command vs one call"),
        ("tokenize-e2e", "GPT-2: split by hand, one call on each half of the text"),
        ("tokenize-e2e", "tokenizer.json (tokenizer.json, 2774 ids): flax-embed tokenize"),
        ("tokenize-e2e", "GPT-2: flax-embed tokenize vs nanoGPT prepare.py"),
    ],
)
def test_has_the_row_with_a_measurement(report, section, what):
    rows = [r for r in table_rows(report) if r[1] == section and what in r[2]]
    assert rows, f"no {section} row {what!r} in:\n{report}"
    assert all(r[3] and r[3] not in ("failed", "not available") for r in rows), rows


def test_every_forward_output_equals_torch_bit_for_bit(report):
    deltas = re.findall(r"max\|Δ\| vs torch = (\S+?);", report)
    assert len(deltas) >= 6 and set(deltas) == {"0"}, deltas


def test_parallel_ids_are_identical(report):
    """Every variant of every tokenizing row (tokenizer, corpora, tokenize-e2e) gave the ids
    of one call."""
    assert report.count("ids identical: True") >= 8
    assert "ids identical: False" not in report


def test_writes_the_dated_docs_page(report, docs_page):
    page = docs_page.read_text(encoding="utf-8")
    assert page.startswith("# Benchmark results\n")
    assert re.search(r"on \d{4}-\d\d-\d\d \d\d:\d\d UTC", page)
    assert "* load average at start:" in page and "* cpu:" in page
    assert table_rows(page) == table_rows(report)
