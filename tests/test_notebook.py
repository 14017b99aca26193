"""Runs notebooks/positional_embeddings.ipynb top to bottom in a real Jupyter kernel.

The kernel is this interpreter (``sys.executable``), through a kernel spec written to a
temporary ``JUPYTER_PATH``, so the notebook sees the same environment as the tests. It runs
in a temporary directory, where it writes its figure.
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
pytest.importorskip("torch")  # the parity cell

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "positional_embeddings.ipynb"
TIKTOKEN_CACHE = REPO.parent / "shared" / "tiktoken_cache"
KERNEL_NAME = "flax-embed-tests"
CELL_TIMEOUT_S = 300


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
        nb = nbformat.read(NOTEBOOK, as_version=4)
        client = nbclient.NotebookClient(
            nb,
            kernel_name=KERNEL_NAME,
            timeout=CELL_TIMEOUT_S,
            resources={"metadata": {"path": str(workdir)}},
        )
        client.execute()  # raises CellExecutionError naming the cell that failed
    return nb, workdir


def test_every_cell_runs_without_error(executed):
    nb, _ = executed
    cells = _code_cells(nb)
    assert cells
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    errors = [o for cell in cells for o in cell.outputs if o.output_type == "error"]
    assert errors == []


@pytest.mark.parametrize(
    "line",
    [
        "Inputs shape:\n (8, 4)",
        "\n(8, 4, 256)\n",  # token embeddings of the real batch
        "\n(4, 256)\n",  # position embeddings of arange(4)
        "max |Δ| between JAX and PyTorch: 0.0\n",
        "ValueError: token_ids[3, 1] = 50300 is outside [0, 50257)",
        "distance moved, positions 8-15:  [0. 0. 0. 0. 0. 0. 0. 0.]",
    ],
)
def test_prints(executed, line):
    nb, _ = executed
    assert line in _stream_text(nb)


def test_writes_the_figure(executed):
    _, workdir = executed
    figure = workdir / "figures" / "position_similarity.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(figure.parent.glob(".*.tmp"))


def test_stored_notebook_has_no_outputs():
    """The docs promise the committed notebook is stored with its outputs cleared."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    stored = [(cell.execution_count, cell.outputs) for cell in _code_cells(nb)]
    assert stored == [(None, [])] * len(stored)
