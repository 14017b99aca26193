"""The dry run of ``benchmarks/device_check.py``: every code path on the CPU, tiny sizes.

No timing is asserted (a GPU run judges its targets in its table); what is checked
is that every stage ran and left its rows, that both files are written and parse,
that the parity report passed, and that a machine which cannot run the check is
told so in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "device_check.py"
SHAPES = ("(8, 4, 256)", "(2, 32, 64)")
DTYPES = ("float32", "bfloat16")
# The dry run tokenizes, and checks the BPE files before the GPU: offline, skip up front.
needs_bpe = pytest.mark.tokenizer
pytestmark = pytest.mark.harness  # run by `python -m pytest -m harness` (CI)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    outdir = tmp_path_factory.mktemp("device_check") / "out"
    proc = run(str(outdir), "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, outdir


@pytest.fixture(scope="module")
def results(dry_run) -> dict:
    return json.loads((dry_run[1] / "device_check.json").read_text(encoding="utf-8"))


def rows(results: dict, section: str, what: str) -> list[dict]:
    return [r for r in results["rows"] if r["section"] == section and what in r["what"]]


@needs_bpe
def test_the_json_describes_the_run(results):
    assert results["mode"] == "dry-run" and results["finished"]
    assert set(results["stage_seconds"]) == {"parity", "forward", "pipeline"}
    for word in ("UTC", "cpu", "jax ", "torch "):
        assert word in results["header"]
    assert set(results["numerics"]) == {
        "jax_default_matmul_precision",
        "torch.backends.cuda.matmul.allow_tf32",
        "torch.backends.cudnn.allow_tf32",
        "torch.get_float32_matmul_precision()",
    }
    assert all(r["ours"] != "failed" for r in results["rows"]), results["rows"]


@needs_bpe
def test_the_parity_report_ran_and_passed(results):
    assert results["parity"]["passed"]
    checks = {r["check"] for r in results["parity"]["results"]}
    assert any(c.startswith("forward") for c in checks)
    assert any(c.startswith("gradient") for c in checks)
    assert any(c.startswith("adamw") for c in checks)
    assert any(c.startswith("linen≡nnx") for c in checks)
    (row,) = rows(results, "parity", "the parity report's forward_checks, gradient_checks")
    assert row["met"] is True
    assert rows(results, "parity", "numerics settings")


@pytest.mark.parametrize("dtype", DTYPES)
@needs_bpe
@pytest.mark.parametrize("shape", SHAPES)
def test_every_forward_row_is_measured(results, shape, dtype):
    for versus in ("torch eager", "device copy of the output"):
        (row,) = rows(results, "forward", f"{shape} {dtype}: jit vs {versus}")
        assert row["ratio"] is not None and row["ratio"] > 0
        assert row["met"] is None  # a dry run judges no speed
    (row,) = rows(results, "forward", f"{shape} {dtype}: jit vs torch.compile")
    assert row["ratio"] is not None or row["reference"].startswith("skipped: ")
    # The stand-in for the target shapes carries their targets.
    (eager,) = rows(results, "forward", f"{shape} {dtype}: jit vs torch eager")
    assert (eager["target"] == "≥ 2x") == (shape == "(2, 32, 64)")


@needs_bpe
def test_outputs_equal_torch(results):
    (row,) = rows(results, "forward", "float32 outputs vs torch eager")
    assert row["met"] is True and row["ours"] == "bit-identical at 2/2"
    (row,) = rows(results, "forward", "bfloat16 outputs vs torch eager")
    assert row["met"] is True
    assert all(m["bit_identical"] for m in results["forward"] if m["dtype"] == "float32")


@needs_bpe
def test_compile_and_pipeline_rows(results):
    (row,) = rows(results, "compile", "first call (trace + compile)")
    assert row["ours"].endswith(" jit")
    (row,) = rows(results, "pipeline", "with prefetch")
    assert row["ours"].endswith("batches/s") and row["reference"].endswith("batches/s without")


@needs_bpe
def test_the_markdown_file_has_the_table_and_the_parity_report(dry_run, results):
    proc, outdir = dry_run
    md = (outdir / "device_check.md").read_text(encoding="utf-8")
    assert md.startswith("# " + results["header"])
    assert "| # | section | what | flax-embed | reference | ratio | target | met |" in md
    assert md.count("\n| ") == len(results["rows"]) + 1  # header + one line per row
    assert "## Parity report" in md and "checks passed" in md
    assert md.rstrip() in proc.stdout


def test_missing_bpe_files_fail_early_in_one_line(tmp_path):
    proc = run(str(tmp_path / "out"), "--dry-run", env={"FLAX_EMBED_BPE_DIR": str(tmp_path)})
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("device_check: error: ") and "vocab.bpe" in line
    assert not (tmp_path / "out" / "device_check.json").exists()


def test_an_incomplete_tiktoken_cache_fails_early_in_one_line(tmp_path):
    env = {"FLAX_EMBED_BPE_DIR": "", "TIKTOKEN_CACHE_DIR": str(tmp_path)}
    proc = run(str(tmp_path / "out"), "--dry-run", env=env)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("device_check: error: TIKTOKEN_CACHE_DIR=")
    assert "vocab.bpe and encoder.json" in line


@needs_bpe
def test_no_gpu_fails_early_in_one_line(tmp_path):
    jax = pytest.importorskip("jax")
    try:
        jax.devices("gpu")
        pytest.skip("this machine has a GPU")
    except RuntimeError:
        pass
    proc = run(str(tmp_path), "--quick")
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("device_check: error: JAX has no gpu backend")
