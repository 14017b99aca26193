"""Runs each notebook in notebooks/ top to bottom in a real Jupyter kernel.

The kernel is this interpreter (``sys.executable``), through a kernel spec written to a
temporary ``JUPYTER_PATH``, so a notebook sees the same environment as the tests. It runs
in a temporary directory, where it writes its figures.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")
pytest.importorskip("torch")  # the parity cell of the first notebook

REPO = Path(__file__).resolve().parents[1]
TIKTOKEN_CACHE = REPO.parent / "shared" / "tiktoken_cache"
KERNEL_NAME = "flax-embed-tests"
CELL_TIMEOUT_S = 300


@dataclasses.dataclass(frozen=True)
class Notebook:
    name: str
    prints: tuple[str, ...]
    """Lines the executed notebook must print (its own claims, asserted here too)."""
    figures: tuple[str, ...]
    """The figures it writes into ``folder``, beside the notebook."""
    folder: str = "figures"
    """``figures`` (tracked, shown in the docs) or ``output`` (ignored by git)."""


NOTEBOOKS = {
    nb.name: nb
    for nb in [
        Notebook(
            "positional_embeddings",
            prints=(
                "Inputs shape:\n (8, 4)",
                "\n(8, 4, 256)\n",  # token embeddings of the real batch
                "\n(4, 256)\n",  # position embeddings of arange(4)
                "max |Δ| between JAX and PyTorch: 0.0\n",
                "ValueError: token_ids[3, 1] = 50300 is outside [0, 50257)",
                "distance moved, positions 8-15:  [0. 0. 0. 0. 0. 0. 0. 0.]",
            ),
            figures=("position_similarity.png",),
        ),
        Notebook(
            "positional_encodings",
            prints=(
                "batch: (8, 64)",
                "learned: ValueError: positions[0] = 64 is outside [0, 64)",
                "sinusoidal, 128 tokens: (1, 128, 64) finite: True",
                "RoPE at positions 0-127: (1, 128, 1, 64) norm preserved: True",
                "ALiBi bias for 128 keys: (8, 1, 128)",
                "RoPE score ratio at distance 0: 1.0",
            ),
            figures=("similarity_by_distance.png", "rope_scaling_wavelengths.png"),
            folder="output",
        ),
    ]
}


def _path(name: str) -> Path:
    return REPO / "notebooks" / f"{name}.ipynb"


def _code_cells(nb) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def _stream_text(nb) -> str:
    return "".join(
        output.get("text", "")
        for cell in _code_cells(nb)
        for output in cell.outputs
        if output.output_type == "stream"
    )


# Each notebook runs end to end in a Jupyter kernel (half a minute of the 2-core VM): with
# the benchmark harness, in `python -m pytest -m harness`, which CI runs after the default run.
pytestmark = pytest.mark.harness


@pytest.fixture(scope="module", params=sorted(NOTEBOOKS))
def executed(request, tmp_path_factory):
    """``(Notebook, executed notebook, workdir)``; any failing cell fails the tests."""
    root = tmp_path_factory.mktemp(request.param)
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
        env.setenv("JUPYTER_PATH", str(root / "jupyter"))
        env.setenv("JUPYTER_RUNTIME_DIR", str(root / "runtime"))
        env.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        nb = nbformat.read(_path(request.param), as_version=4)
        client = nbclient.NotebookClient(
            nb,
            kernel_name=KERNEL_NAME,
            timeout=CELL_TIMEOUT_S,
            resources={"metadata": {"path": str(workdir)}},
        )
        client.execute()  # raises CellExecutionError naming the cell that failed
    return NOTEBOOKS[request.param], nb, workdir


@pytest.mark.tokenizer  # the notebooks tokenize
def test_every_cell_runs_without_error(executed):
    _, nb, _ = executed
    cells = _code_cells(nb)
    assert cells
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    errors = [o for cell in cells for o in cell.outputs if o.output_type == "error"]
    assert errors == []


@pytest.mark.tokenizer  # the notebooks tokenize
def test_prints_its_claims(executed):
    notebook, nb, _ = executed
    text = _stream_text(nb)
    assert [line for line in notebook.prints if line not in text] == []


@pytest.mark.tokenizer  # the notebooks tokenize
def test_writes_its_figures(executed):
    notebook, _, workdir = executed
    for name in notebook.figures:
        figure = workdir / notebook.folder / name
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert not list((workdir / notebook.folder).glob(".*.tmp"))


@pytest.mark.parametrize("notebook", NOTEBOOKS.values(), ids=lambda nb: nb.name)
def test_its_figures_are_tracked_or_ignored_by_git(notebook):
    """Running a notebook in notebooks/ leaves no untracked file for the docs build to copy."""
    folder = REPO / "notebooks" / notebook.folder
    for name in notebook.figures:
        if notebook.folder == "figures":  # tracked, and shown in the docs
            git = ["git", "ls-files", "--error-unmatch", str(folder / name)]
        else:
            git = ["git", "check-ignore", "-q", str(folder / name)]
        assert subprocess.run(git, cwd=REPO, capture_output=True).returncode == 0, git


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_stored_notebook_has_no_outputs(name):
    """The docs promise the committed notebooks are stored with their outputs cleared."""
    nb = nbformat.read(_path(name), as_version=4)
    nbformat.validate(nb)
    stored = [(cell.execution_count, cell.outputs) for cell in _code_cells(nb)]
    assert stored == [(None, [])] * len(stored)


def test_every_notebook_is_run():
    assert {p.stem for p in (REPO / "notebooks").glob("*.ipynb")} == set(NOTEBOOKS)
