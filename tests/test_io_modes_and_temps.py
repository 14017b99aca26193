"""One mode rule for every writer, recognisable temporaries, errors naming the target
(issue 12, cases 3, 4 and 9)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from flax_embed._io import (
    TEMP_MARK,
    AtomicFile,
    atomic_open,
    atomic_path,
    new_file_mode,
    remove_stale_temps,
    temp_path,
)
from flax_embed.cli import main
from flax_embed.convert import save_params
from flax_embed.data import write_token_file
from flax_embed.data.token_files import sidecar_path


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _params() -> dict:
    table = np.ones((8, 4), np.float32)
    return {"tok_emb": {"embedding": table}, "pos_emb": {"embedding": table[:4]}}


def _json_report(path) -> None:
    from parity.report import _write_json_atomic

    _write_json_atomic(path, {"passed": True})


WRITERS = {
    "tokens.npy": lambda p: write_token_file(p, np.arange(5)),
    "tokens.bin": lambda p: write_token_file(p, np.arange(5)),
    "params.safetensors": lambda p: save_params(p, _params()),
    "out.npy": lambda p: main(["embed", "--features", "4", "--out", str(p)]),
    "report.json": _json_report,
}


def _open(path) -> None:
    with atomic_open(path) as f:
        f.write(b"x")


WRITERS["atomic_open"] = _open


@pytest.mark.tokenizer  # out.npy: flax-embed embed tokenizes the sample
@pytest.mark.parametrize("name", list(WRITERS))
def test_every_writer_gives_new_files_the_umask_mode_and_keeps_an_existing_mode(
    tmp_path, umask_022, name, capsys
):
    if name == "report.json":
        pytest.importorskip("torch")
    target = tmp_path / name
    WRITERS[name](target)
    assert _mode(target) == new_file_mode() == 0o644
    if target.suffix == ".bin":
        assert _mode(sidecar_path(target)) == 0o644
    for mode in (0o600, 0o640, 0o664):
        os.chmod(target, mode)
        WRITERS[name](target)
        assert _mode(target) == mode, oct(_mode(target))
    assert [p.name for p in tmp_path.iterdir() if TEMP_MARK in p.name] == []


def test_temporaries_are_named_after_the_target_and_the_pid(tmp_path):
    tmp = temp_path(tmp_path / "out.bin")
    assert tmp.parent == tmp_path
    assert tmp.name.startswith(f".out.bin{TEMP_MARK}{os.getpid()}-") and tmp.name.endswith(".tmp")


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(proc.stdout)


def test_the_next_write_removes_temporaries_of_dead_writers_only(tmp_path):
    target = tmp_path / "out.bin"
    dead, alive = _dead_pid(), os.getppid()
    stale_file = tmp_path / f".out.bin{TEMP_MARK}{dead}-abcd.tmp"
    stale_dir = tmp_path / f".out.bin{TEMP_MARK}{dead}-ef01.tmp"
    live = tmp_path / f".out.bin{TEMP_MARK}{alive}-1234.tmp"
    other = tmp_path / f".other.bin{TEMP_MARK}{dead}-abcd.tmp"
    foreign = tmp_path / ".out.bin.abcd.tmp"  # not ours: never touched
    for path in (stale_file, live, other, foreign):
        path.write_bytes(b"x")
    stale_dir.mkdir()
    (stale_dir / ".tmpXYZ").write_bytes(b"x")  # what safetensors leaves inside
    _open(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out.bin", live.name, other.name, foreign.name]
    )
    assert remove_stale_temps(tmp_path / "other.bin") == [other]


def test_errors_name_the_target_not_the_temporary(tmp_path):
    target = tmp_path / "missing" / "out.bin"
    for opener in (atomic_open, atomic_path):
        with pytest.raises(FileNotFoundError) as raised, opener(target):
            pass
        assert raised.value.filename == str(target)
        assert TEMP_MARK not in str(raised.value)
    with pytest.raises(FileNotFoundError) as raised:
        AtomicFile(target)
    assert raised.value.filename == str(target)


@pytest.mark.tokenizer
def test_a_sidecar_that_is_a_directory_is_reported_against_the_sidecar(tmp_path, capsys):
    target = tmp_path / "t.bin"
    sidecar_path(target).mkdir()
    with pytest.raises(IsADirectoryError) as raised:
        write_token_file(target, np.arange(3))
    assert raised.value.filename == str(sidecar_path(target))
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world")
    assert main(["tokenize", str(corpus), "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"{sidecar_path(target)}: cannot write" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt", "t.bin.json"]


def test_json_writer_output_is_valid(tmp_path):
    pytest.importorskip("torch")
    _json_report(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == {"passed": True}
