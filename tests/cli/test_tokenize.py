import subprocess
import sys

import numpy as np
import pytest

from flax_embed import cli
from flax_embed.cli import read_text
from flax_embed.cli import tokenize as tokenize_command
from flax_embed.data.token_files import read_token_file, sidecar_path
from flax_embed.tokenizer import ENDOFTEXT, encode

DOCS = [
    "First document ends in half a word: Hel",
    "lo, the second starts with its end, über 42 emoji 😀\n\n",
    "  third: whitespace first\r\nCRLF line\rCR line 'll",
]


@pytest.fixture
def corpus(tmp_path):
    paths = []
    for i, doc in enumerate(DOCS):
        path = tmp_path / f"doc{i}.txt"
        path.write_bytes(doc.encode("utf-8"))
        paths.append(str(path))
    return paths


def texts(paths):
    return [read_text(p) for p in paths]


def run(capsys, *argv):
    code = cli.main(["tokenize", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["tokens.npy", "tokens.bin"])
def test_documents_are_joined_by_endoftext(tmp_path, corpus, capsys, name):
    code, out, _ = run(capsys, *corpus, "-o", tmp_path / name)
    expected = encode(ENDOFTEXT.join(texts(corpus)))
    assert code == 0
    np.testing.assert_array_equal(read_token_file(tmp_path / name), expected)
    assert out == f"wrote {tmp_path / name}: {len(expected)} tokens (uint16) from 3 files\n"
    assert sidecar_path(tmp_path / name).exists() == name.endswith(".bin")


@pytest.mark.tokenizer  # in-process CLI: its error goes to the captured stderr
def test_no_eot_concatenates(tmp_path, corpus, capsys):
    code, _, _ = run(capsys, *corpus, "-o", tmp_path / "t.npy", "--no-eot")
    assert code == 0
    joined = "".join(texts(corpus))
    np.testing.assert_array_equal(read_token_file(tmp_path / "t.npy"), encode(joined))
    # "Hel" + "lo" merge across the files: not the same as encoding them apart.
    apart = np.concatenate([encode(t) for t in texts(corpus)])
    assert len(apart) > len(encode(joined))


@pytest.mark.tokenizer  # in-process CLI: its error goes to the captured stderr
@pytest.mark.parametrize("block_bytes", [1, 2, 5, 64])
@pytest.mark.parametrize("workers", [1, 3])
def test_small_blocks_split_characters_and_crlf(
    tmp_path, corpus, capsys, monkeypatch, block_bytes, workers
):
    # Blocks cut multi-byte UTF-8 characters and \r\n pairs in half; nothing changes.
    monkeypatch.setattr(tokenize_command, "BLOCK_BYTES", block_bytes)
    out = tmp_path / "t.npy"
    assert run(capsys, *corpus, "-o", out, "--workers", workers)[0] == 0
    np.testing.assert_array_equal(read_token_file(out), encode(ENDOFTEXT.join(texts(corpus))))


@pytest.mark.tokenizer  # in-process CLI: its error goes to the captured stderr
def test_big_input_against_the_verdict(tmp_path, verdict_text, capsys, monkeypatch):
    monkeypatch.setattr(tokenize_command, "PROGRESS_MIN_BYTES", 1)  # show the bar
    src = tmp_path / "verdict.txt"
    src.write_text(verdict_text * 3, encoding="utf-8")
    code, _, err = run(capsys, src, src, "-o", tmp_path / "t.bin")
    assert code == 0
    expected = encode(ENDOFTEXT.join([read_text(src)] * 2))
    np.testing.assert_array_equal(read_token_file(tmp_path / "t.bin"), expected)
    assert "tokenize" in err and "100%" in err


def test_no_progress_bar_on_small_inputs(tmp_path, corpus, capsys):
    assert run(capsys, *corpus, "-o", tmp_path / "t.npy")[2] == ""


@pytest.mark.tokenizer  # in-process CLI: its error goes to the captured stderr
def test_empty_files(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("")
    code, out, _ = run(capsys, tmp_path / "empty.txt", "-o", tmp_path / "t.npy")
    assert code == 0 and "0 tokens" in out
    assert read_token_file(tmp_path / "t.npy").shape == (0,)


def bad_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9 ok ".encode() * 3 + b"caf\xe9 then more")
    return path


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda d: d / "absent.txt", "absent.txt: no such file"),
        (lambda d: d, "is a directory, not a file"),
        (bad_utf8, "latin1.txt: not UTF-8 text (byte 30: invalid continuation byte)"),
    ],
)
@pytest.mark.parametrize("block_bytes", [4, 1 << 20])
def test_unreadable_input_is_one_line_exit_2_and_no_output(
    tmp_path, corpus, capsys, monkeypatch, make_input, message, block_bytes
):
    monkeypatch.setattr(tokenize_command, "BLOCK_BYTES", block_bytes)
    out = tmp_path / "out" / "t.npy"
    out.parent.mkdir()
    code, stdout, err = run(capsys, corpus[0], make_input(tmp_path), "-o", out)
    assert code == 2
    assert stdout == ""
    assert err.startswith("flax-embed tokenize: error: ") and message in err
    assert err.count("\n") == 1
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize("block_bytes", [1, 3, 31, 1 << 20])
def test_decoding_errors_are_worded_as_read_text_words_them(tmp_path, capsys, monkeypatch,
                                                            block_bytes):  # fmt: skip
    monkeypatch.setattr(tokenize_command, "BLOCK_BYTES", block_bytes)
    truncated = tmp_path / "truncated.txt"
    truncated.write_bytes("ends in half an emoji 😀".encode()[:-2])
    for path in (bad_utf8(tmp_path), truncated):
        with pytest.raises(cli.CLIError) as expected:
            read_text(path)
        code, _, err = run(capsys, path, "-o", tmp_path / "t.npy")
        assert code == 2 and err == f"flax-embed tokenize: error: {expected.value}\n"


@pytest.mark.tokenizer  # in-process CLI: its error goes to the captured stderr
def test_a_failed_run_keeps_the_old_output(tmp_path, corpus, capsys):
    out = tmp_path / "t.npy"
    assert run(capsys, corpus[0], "-o", out)[0] == 0
    before = out.read_bytes()
    assert run(capsys, corpus[1], bad_utf8(tmp_path), "-o", out)[0] == 2
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-o", "tokens.txt"], "must end in .npy or .bin"),
        (["-o", "no/such/dir/t.npy"], "cannot write"),
        (["-o", "t.npy", "--workers", "0"], "argument --workers: must be at least 1"),
    ],
)
def test_bad_options(tmp_path, corpus, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, corpus[0], *extra)
    assert code == 2 and message in err and err.count("\n") == 1


def test_the_installed_command(tmp_path, corpus):
    result = subprocess.run(
        [sys.executable, "-m", "flax_embed", "tokenize", *corpus, "-o", str(tmp_path / "t.npy")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(
        np.load(tmp_path / "t.npy"), encode(ENDOFTEXT.join(texts(corpus)))
    )
