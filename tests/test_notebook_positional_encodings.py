"""Runs notebooks/positional_encodings.ipynb top to bottom in a real Jupyter kernel.

As tests/test_notebook.py does for the first notebook: the kernel is this interpreter,
the notebook runs in a temporary directory and writes its figures there.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "positional_encodings.ipynb"
TIKTOKEN_CACHE = REPO.parent / "shared" / "tiktoken_cache"
KERNEL_NAME = "flax-embed-tests"
FIGURES = ("similarity_by_distance.png", "rope_scaling_wavelengths.png")


def _code_cells(nb) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def _stream_text(nb) -> str:
    return "".join(
        output.get("text", "")
        for cell in _code_cells(nb)
        for output in cell.outputs
        if output.output_type == "stream"
    )


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """``(notebook, workdir)`` after running every cell; any failing cell fails the tests."""
    from flax_embed import TokenizerUnavailableError, gpt2_tokenizer

    root = tmp_path_factory.mktemp("notebook")
    spec_dir = root / "jupyter" / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "flax-embed tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    workdir = root / "run"
    workdir.mkdir()
    with pytest.MonkeyPatch.context() as env:
        if "TIKTOKEN_CACHE_DIR" not in os.environ and TIKTOKEN_CACHE.is_dir():
            env.setenv("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))
        try:
            gpt2_tokenizer()
        except TokenizerUnavailableError as e:
            pytest.skip(f"GPT-2 BPE files unavailable offline: {e}")
        env.setenv("JUPYTER_PATH", str(root / "jupyter"))
        env.setenv("JUPYTER_RUNTIME_DIR", str(root / "runtime"))
        env.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        nb = nbformat.read(NOTEBOOK, as_version=4)
        client = nbclient.NotebookClient(
            nb, kernel_name=KERNEL_NAME, timeout=120, resources={"metadata": {"path": str(workdir)}}
        )
        client.execute()
    return nb, workdir


def test_every_cell_runs_without_error(executed):
    nb, _ = executed
    cells = _code_cells(nb)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    assert [o for cell in cells for o in cell.outputs if o.output_type == "error"] == []


@pytest.mark.parametrize(
    "line",
    [
        "batch: (8, 64)",
        "learned: ValueError: positions[0] = 64 is outside [0, 64)",
        "sinusoidal, 128 tokens: (1, 128, 64) finite: True",
        "RoPE at positions 0-127: (1, 128, 1, 64) norm preserved: True",
        "ALiBi bias for 128 keys: (8, 1, 128)",
        "RoPE score ratio at distance 0: 1.0",
    ],
)
def test_prints(executed, line):
    nb, _ = executed
    assert line in _stream_text(nb)


@pytest.mark.parametrize("name", FIGURES)
def test_writes_the_figures(executed, name):
    _, workdir = executed
    assert (workdir / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stored_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert [(c.execution_count, c.outputs) for c in _code_cells(nb)] == [(None, [])] * len(
        _code_cells(nb)
    )
