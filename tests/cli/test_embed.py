import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flax_embed.cli import main


def run(*argv, check=True):
    """``flax-embed ARGV`` as a user runs it: the installed console script."""
    script = Path(sys.executable).with_name("flax-embed")
    result = subprocess.run([script, *argv], capture_output=True, text=True, env=os.environ)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_console_script_help():
    out = run("--help").stdout
    assert "usage: flax-embed" in out and "embed" in out
    # Says which notebook `embed` runs, in words a newcomer can look up.
    words = " ".join(out.split())  # argparse wraps to the terminal's width
    assert "'Positional Embeddings' of Build a Large Language Model" in words
    assert "seed" not in words


def test_module_entry_point_help():
    result = subprocess.run(
        [sys.executable, "-m", "flax_embed", "embed", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for option in ["--batch-size", "--max-length", "--stride", "--features", "--out", "--json"]:
        assert option in result.stdout


@pytest.mark.tokenizer
def test_embed_runs_the_seed_on_the_bundled_sample():
    out = run("embed").stdout
    assert "Inputs shape: (8, 4)" in out
    assert "Input embeddings shape: (8, 4, 256)" in out
    assert "max |JAX - PyTorch| with the same weights: 0.0" in out


@pytest.mark.tokenizer  # in-process CLI: its error goes to the captured stderr
def test_embed_json_on_a_file(verdict_text, tmp_path, capsys):
    path = tmp_path / "verdict.txt"
    path.write_text(verdict_text, encoding="utf-8")
    assert main(["embed", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_tokens"] == 5145
    assert report["token_ids"][:2] == [[40, 367, 2885, 1464], [1807, 3619, 402, 271]]
    assert report["embeddings_shape"] == [8, 4, 256]
    assert report["torch_max_abs_diff"] == 0.0


@pytest.mark.tokenizer  # in-process CLI: its error goes to the captured stderr
def test_embed_options_and_out_file(tmp_path, capsys):
    out = tmp_path / "emb.npy"
    argv = ["embed", "--batch-size", "2", "--max-length", "6", "--stride", "3"]
    argv += ["--features", "16", "--context-length", "10", "--seed", "3", "--out", str(out)]
    assert main(argv) == 0
    assert "Input embeddings shape: (2, 6, 16)" in capsys.readouterr().out
    embeddings = np.load(out)
    assert embeddings.shape == (2, 6, 16) and embeddings.dtype == np.float32


@pytest.mark.tokenizer  # in-process CLI: its error goes to the captured stderr
def test_same_seed_same_embeddings(tmp_path, capsys):
    paths = [tmp_path / "a.npy", tmp_path / "b.npy", tmp_path / "c.npy"]
    for path, seed in zip(paths, ["1", "1", "2"], strict=True):
        assert main(["embed", "--features", "8", "--seed", seed, "--out", str(path)]) == 0
    a, b, c = (np.load(p) for p in paths)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.txt", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: (d / "latin1.txt", (d / "latin1.txt").write_bytes(b"caf\xe9"))[0], "not UTF-8"),
        (lambda d: (d / "short.txt", (d / "short.txt").write_text("Hi"))[0], "text too short"),
    ],
    ids=["missing", "directory", "not-utf8", "too-short"],
)
@pytest.mark.tokenizer
def test_bad_file_is_one_line_and_exit_code_2(tmp_path, make, message, capsys):
    assert main(["embed", str(make(tmp_path))]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_bad_file_from_the_console_script_has_no_traceback(tmp_path):
    result = run("embed", str(tmp_path / "missing.txt"), check=False)
    assert result.returncode == 2
    assert result.stderr == f"flax-embed embed: error: {tmp_path / 'missing.txt'}: no such file\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file(tmp_path, capsys):
    path = tmp_path / "secret.txt"
    path.write_text("text")
    path.chmod(0)
    assert main(["embed", str(path)]) == 2
    assert "permission denied" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option", ["--batch-size", "--max-length", "--stride", "--features", "--context-length"]
)
def test_option_below_one_is_one_line_error(option, capsys):
    assert main(["embed", option, "0"]) == 2
    assert f"argument {option}: must be at least 1, got 0" in capsys.readouterr().err


@pytest.mark.tokenizer
def test_save_into_a_missing_folder_is_one_line(tmp_path, capsys):
    target = tmp_path / "no-such-dir" / "emb.npy"
    assert main(["embed", "--features", "8", "--out", str(target)]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert not target.parent.exists()


@pytest.mark.tokenizer
def test_a_save_that_fails_halfway_keeps_the_old_file(tmp_path, capsys, monkeypatch):
    target = tmp_path / "emb.npy"
    target.write_bytes(b"old")

    def save_half_then_fail(f, array):  # the disk fills up in the middle of the write
        f.write(b"\x93NUMPY half a header")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", save_half_then_fail)
    assert main(["embed", "--features", "8", "--out", str(target)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["emb.npy"]
