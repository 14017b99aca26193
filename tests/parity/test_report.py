"""The report around the checks: table, JSON, exit codes, ``python -m parity``, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from flax_embed import cli
from parity import report
from parity.behaviour import behaviour_checks
from parity.common import compare


def failing_group(backend: str):
    ones, zeros = np.ones(2, np.float32), np.zeros(2, np.float32)
    return [compare("deliberately different", backend, ones, zeros)]


def raising_group(backend: str):
    raise RuntimeError("boom")


LONG_NAME = "a check whose name is as long as the longest of the report's rows, sixty-six"


def long_names_group(backend: str):
    """Rows as wide as the report's widest (145 characters), with a long note."""
    x = np.arange(1024 * 768, dtype=np.float32).reshape(1, 1024, 768)
    return [
        compare(f"{LONG_NAME} {i}", backend, x, x, note="why the tolerance is what it is " * 8)
        for i in range(3)
    ]


@pytest.fixture
def fast_groups(monkeypatch):
    """Runs the report with the (quick) pinned-behaviour group only."""
    monkeypatch.setattr(report, "CHECK_GROUPS", [behaviour_checks])


@pytest.mark.tokenizer
def test_table_has_the_header_and_a_row_per_check(fast_groups):
    result = report.run_report(["cpu"])
    table = report.format_table(result)
    import flax
    import jax
    import numpy
    import optax
    import torch

    for name, module in [("jax", jax), ("flax", flax), ("optax", optax), ("torch", torch)]:
        assert f"{name} {module.__version__}" in table
    assert f"numpy {numpy.__version__}" in table and "devices: cpu: cpu" in table
    assert "jax_default_matmul_precision=" in table and "jax_enable_x64=False" in table
    assert table.count("PASS") == len(result.results) == len(report.CHECK_GROUPS[0]("cpu"))
    assert result.passed


@pytest.mark.parametrize("width", [None, 200, 120, 100, 80])
def test_the_table_fits_in_width_and_keeps_every_word(width):
    result = report.run_report(["cpu"], groups=[long_names_group])
    table = report.format_table(result, width)
    lines = table.splitlines()
    if width is None:
        assert max(map(len, lines)) > 140  # one line per row, however long
    else:
        assert max(map(len, lines)) <= width
    words = " ".join(table.split())
    for row in result.results:
        assert " ".join(row.check.split()) in words
        assert " ".join(f"{row.check}: {row.note}".split()) in words
    assert words.count("PASS") == 3 and "checks passed" in table


def test_the_cli_fits_the_table_to_the_terminal(monkeypatch, capsys):
    monkeypatch.setattr(report, "CHECK_GROUPS", [long_names_group])
    monkeypatch.setenv("COLUMNS", "80")  # what shutil.get_terminal_size reads first
    assert cli.main(["parity", "--backend", "cpu"]) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 80
    assert out.count("PASS") == 3


@pytest.mark.tokenizer  # the report tokenizes the sample; offline its rows fail (exit 1)
@pytest.mark.parametrize(
    "entry",
    [lambda argv: report.main(argv), lambda argv: cli.main(["parity", *argv])],
    ids=["python-m-parity", "flax-embed-parity"],
)
def test_json_and_exit_code_zero(fast_groups, tmp_path, capsys, entry):
    assert entry(["--backend", "cpu", "--json", str(tmp_path / "r.json")]) == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["passed"] is True
    assert set(data["environment"]) >= {"jax", "jaxlib", "flax", "optax", "torch", "numpy"}
    assert data["environment"]["devices"] == {"cpu": "cpu"}
    rows = data["results"]
    assert rows and all(r["passed"] and r["max_abs_diff"] is None for r in rows)  # pinned rows
    assert "checks passed" in capsys.readouterr().out


@pytest.mark.parametrize("group", [failing_group, raising_group])
def test_a_failure_gives_exit_code_one(monkeypatch, tmp_path, capsys, group):
    monkeypatch.setattr(report, "CHECK_GROUPS", [group])
    assert report.main(["--json", str(tmp_path / "r.json")]) == 1
    data = json.loads((tmp_path / "r.json").read_text(), parse_constant=pytest.fail)
    assert data["passed"] is False
    out = capsys.readouterr().out
    assert "FAIL" in out
    if group is raising_group:
        assert "RuntimeError: boom" in out


@pytest.mark.parametrize(
    "entry",
    [lambda argv: report.main(argv), lambda argv: cli.main(["parity", *argv])],
    ids=["python-m-parity", "flax-embed-parity"],
)
def test_absent_backend_is_a_usage_error(capsys, entry):
    assert entry(["--backend", "tpu"]) == 2
    assert "JAX backend 'tpu' is not present" in capsys.readouterr().err


def test_unwritable_json_is_a_usage_error(fast_groups, tmp_path, capsys):
    assert report.main(["--json", str(tmp_path / "missing" / "r.json")]) == 2
    assert "r.json" in capsys.readouterr().err


def test_python_m_parity_runs_as_a_module():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "parity", "--backend", "tpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "parity: error: JAX backend 'tpu' is not present" in done.stderr
