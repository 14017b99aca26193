import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from flax_embed import cli
from flax_embed.cli import read_text
from flax_embed.cli import tokenize as tokenize_command
from flax_embed.data import corpus as corpus_module
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


@pytest.mark.tokenizer
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
    monkeypatch.setattr(corpus_module, "BLOCK_BYTES", block_bytes)
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


@pytest.mark.tokenizer
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
        (lambda d: d / "empty", "empty: a folder with no .txt, .jsonl, .json or .parquet file"),
        (lambda d: d / "*.jsonl", "*.jsonl: no file matches this pattern"),
        (bad_utf8, "latin1.txt: not UTF-8 text (byte 30: invalid continuation byte)"),
    ],
)
@pytest.mark.tokenizer
@pytest.mark.parametrize("block_bytes", [4, 1 << 20])
def test_unreadable_input_is_one_line_exit_2_and_no_output(
    tmp_path, corpus, capsys, monkeypatch, make_input, message, block_bytes
):
    monkeypatch.setattr(corpus_module, "BLOCK_BYTES", block_bytes)
    out = tmp_path / "out" / "t.npy"
    out.parent.mkdir()
    (tmp_path / "empty").mkdir()
    code, stdout, err = run(capsys, corpus[0], make_input(tmp_path), "-o", out)
    assert code == 2
    assert stdout == ""
    assert err.startswith("flax-embed tokenize: error: ") and message in err
    assert err.count("\n") == 1
    assert list(out.parent.iterdir()) == []


@pytest.mark.tokenizer
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # JAX's, if another test loaded it
def test_a_bad_byte_found_by_a_worker_is_one_line_exit_2(tmp_path, verdict_text, capsys):
    # Past two chunks (2 MB) a text file is read by the worker processes, in byte ranges.
    data = verdict_text.encode() * 120
    bad = len(data) * 3 // 4
    (tmp_path / "big.txt").write_bytes(data[:bad] + b"\x80" + data[bad:])
    out = tmp_path / "out" / "t.bin"
    out.parent.mkdir()
    code, stdout, err = run(capsys, tmp_path / "big.txt", "-o", out)
    assert (code, stdout) == (2, "")
    assert err == (f"flax-embed tokenize: error: {tmp_path / 'big.txt'}: not UTF-8 text "
                   f"(byte {bad}: invalid start byte)\n")  # fmt: skip
    assert list(out.parent.iterdir()) == []
    assert not multiprocessing.active_children()


@pytest.mark.tokenizer
@pytest.mark.parametrize("block_bytes", [1, 3, 31, 1 << 20])
def test_decoding_errors_are_worded_as_read_text_words_them(tmp_path, capsys, monkeypatch,
                                                            block_bytes):  # fmt: skip
    monkeypatch.setattr(corpus_module, "BLOCK_BYTES", block_bytes)
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


@pytest.mark.tokenizer
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


@pytest.mark.tokenizer
def test_the_installed_command(tmp_path, corpus):
    result = subprocess.run(
        [sys.executable, "-m", "flax_embed", "tokenize", *corpus, "-o", str(tmp_path / "t.npy")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(
        np.load(tmp_path / "t.npy"), encode(ENDOFTEXT.join(texts(corpus)))
    )


# --- corpora: JSON Lines, Parquet, folders; shards --------------------------------------

from tests.data.corpus_files import DOCS as CORPUS_DOCS  # noqa: E402
from tests.data.corpus_files import write_jsonl, write_parquet  # noqa: E402


@pytest.fixture
def corpora(tmp_path):
    pytest.importorskip("pyarrow")
    pytest.importorskip("zstandard")
    src = tmp_path / "src"
    src.mkdir()
    write_jsonl(src / "a.jsonl.zst", CORPUS_DOCS, field="body", compression="zst")
    write_parquet(src / "b.parquet", CORPUS_DOCS[::-1], field="body")
    return src, CORPUS_DOCS + CORPUS_DOCS[::-1]


@pytest.mark.tokenizer  # in-process CLI: its error goes to the captured stderr
@pytest.mark.parametrize("name", ["t.npy", "t.bin"])
def test_jsonl_and_parquet_with_field(tmp_path, corpora, capsys, name):
    src, docs = corpora
    code, out, err = run(capsys, src, "--field", "body", "-o", tmp_path / name)
    assert code == 0, err
    np.testing.assert_array_equal(read_token_file(tmp_path / name), encode(ENDOFTEXT.join(docs)))
    assert out.endswith("from 2 files\n")


@pytest.mark.tokenizer  # in-process CLI: its error goes to the captured stderr
def test_sharded_output(tmp_path, corpora, capsys):
    src, docs = corpora
    out_dir = tmp_path / "shards"
    code, out, err = run(capsys, src, "--field", "body", "-o", f"{out_dir}/",
                         "--shard-tokens", "40")  # fmt: skip
    assert code == 0, err
    manifest = json.loads((out_dir / "manifest.json").read_text())
    expected = encode(ENDOFTEXT.join(docs))
    ids = np.concatenate([read_token_file(out_dir / s["name"]) for s in manifest["shards"]])
    np.testing.assert_array_equal(ids, expected)
    shards = len(manifest["shards"])
    assert shards == -(-len(expected) // 40)
    assert (
        out == f"wrote {out_dir}: {len(expected)} tokens (uint16) in {shards} shards from 2 files\n"
    )
    # The same command again: complete and valid, nothing rewritten.
    before = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    assert run(capsys, src, "--field", "body", "-o", out_dir, "--shard-tokens", "40")[0] == 0
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()} == before


@pytest.mark.tokenizer  # in-process CLI: its error goes to the captured stderr
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (b'{"body": "ok"}\n{"body": "ok"\n', r"bad.jsonl: line 2: not valid JSON"),
        (b'{"body": "ok"}\n{"text": "ok"}\n', r"bad.jsonl: line 2: no field 'body'"),
        (b'{"body": ["x"]}\n', r"bad.jsonl: line 1: field 'body' is not a string but list"),
    ],
)
@pytest.mark.parametrize("sharded", [False, True])
def test_bad_corpus_is_one_line_exit_2_and_nothing_left(tmp_path, corpora, capsys, bad, message,
                                                        sharded):  # fmt: skip
    src, _ = corpora
    (src / "bad.jsonl").write_bytes(bad)
    target = tmp_path / "out"
    target.mkdir()
    out = f"{target}/shards/" if sharded else str(target / "t.npy")
    code, stdout, err = run(capsys, src, "--field", "body", "-o", out)
    assert code == 2 and stdout == ""
    assert err.startswith("flax-embed tokenize: error: ") and message in err
    assert err.count("\n") == 1
    assert list(target.iterdir()) == []


@pytest.mark.tokenizer  # in-process CLI: its error goes to the captured stderr
def test_truncated_parquet_exit_2(tmp_path, corpora, capsys):
    src, _ = corpora
    data = (src / "b.parquet").read_bytes()
    (src / "b.parquet").write_bytes(data[: len(data) // 2])
    code, _, err = run(capsys, src, "--field", "body", "-o", f"{tmp_path / 'o'}/")
    assert code == 2 and "b.parquet: not a readable Parquet file" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-o", "t.npy", "--ray"], "--ray writes shards: give a folder"),
        (["-o", "d/", "--ray", "--no-eot"], "--ray needs document boundaries"),
        (["-o", "d/", "--shard-tokens", "0"], "argument --shard-tokens: must be at least 1"),
    ],
)
def test_bad_shard_options(tmp_path, corpus, capsys, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, corpus[0], *extra)
    assert code == 2 and message in err and err.count("\n") == 1


# --- the output folder is the command's own ------------------------------------------------


@pytest.mark.tokenizer  # in-process CLI: its error goes to the captured stderr
def test_a_folder_not_ours_is_one_line_exit_2_and_kept(tmp_path, corpus, capsys):
    out_dir = tmp_path / "o"
    (out_dir / ".work").mkdir(parents=True)
    (out_dir / ".work" / "important.txt").write_text("keep me")
    code, stdout, err = run(capsys, *corpus, "-o", f"{out_dir}/")
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert "o/.work: a work folder without this command's plan, not written by" in err
    assert (out_dir / ".work" / "important.txt").read_text() == "keep me"


@pytest.mark.tokenizer  # in-process CLI: its error goes to the captured stderr
def test_a_locked_folder_is_one_line_exit_2_naming_the_holder(tmp_path, corpus, capsys):
    from flax_embed.data import shards

    out_dir = tmp_path / "o"
    out_dir.mkdir()
    with shards._locked(out_dir):
        code, _, err = run(capsys, *corpus, "-o", f"{out_dir}/")
    assert code == 2 and err.count("\n") == 1
    assert f"o: in use by another flax-embed tokenize (pid {os.getpid()} on " in err


@pytest.mark.tokenizer  # in-process CLI: its error goes to the captured stderr
@pytest.mark.parametrize("out", ["d5/out/", "d5/t.bin"])
def test_an_output_inside_an_input_folder_is_not_read_back(tmp_path, capsys, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d5").mkdir()
    (tmp_path / "d5" / "a.txt").write_text(DOCS[0])
    outputs = []
    for _ in range(2):
        code, stdout, err = run(capsys, "d5", "-o", out)
        assert code == 0, err
        outputs.append(stdout)
    assert outputs[0] == outputs[1] and outputs[0].endswith(" from 1 file\n")


@pytest.mark.tokenizer  # in-process CLI: its error goes to the captured stderr
def test_a_fifo_input_is_one_line_exit_2(tmp_path, corpus, capsys):
    os.mkfifo(tmp_path / "pipe.txt")
    code, _, err = run(capsys, corpus[0], tmp_path / "pipe.txt", "-o", tmp_path / "t.npy")
    assert code == 2 and err.count("\n") == 1 and "pipe.txt: a FIFO, not a regular file" in err


@pytest.mark.tokenizer
@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("127.0.0.1:1", "127.0.0.1:1: no Ray cluster answers there (Connection refused)"),
        ("ray://127.0.0.1:1", "ray://127.0.0.1:1: no Ray cluster answers there"),
        ("garbage!!", "'garbage!!': not a Ray address (HOST:PORT, ray://HOST:PORT or auto)"),
        ("10.0.0.1:99999", "'10.0.0.1:99999': not a Ray address"),
    ],
)
def test_an_unreachable_ray_address_is_one_line_exit_2(tmp_path, corpus, capsys, address,
                                                       message):  # fmt: skip
    pytest.importorskip("ray")
    import ray

    if ray.is_initialized():  # another test's cluster: RayRunner would join it, not connect
        pytest.skip("Ray is already initialized in this process")
    code, _, err = run(capsys, corpus[0], "-o", f"{tmp_path / 'o'}/", "--ray-address", address)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not ray.is_initialized() and not (tmp_path / "o").exists()


def test_a_sigterm_that_a_library_turned_into_keyboardinterrupt_is_still_143(
    tmp_path, corpus, capsys, monkeypatch
):
    # Ray's waits re-raise whatever a signal handler raised as a plain KeyboardInterrupt.
    import signal

    def run_and_get_terminated(args):
        try:
            signal.raise_signal(signal.SIGTERM)  # the command's handler raises Terminated
        except KeyboardInterrupt:
            raise KeyboardInterrupt from None

    monkeypatch.setattr(tokenize_command, "run", run_and_get_terminated)
    code, _, err = run(capsys, corpus[0], "-o", tmp_path / "t.npy")
    assert code == 143
    assert err == "flax-embed tokenize: terminated (SIGTERM); no output was left half-written\n"


_STOPPED = {signal.SIGINT: (130, "interrupted (SIGINT)"),
            signal.SIGTERM: (143, "terminated (SIGTERM)")}  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_swallowed_by_a_finalizer_is_delivered_again(tmp_path, corpus, capsys,
                                                                  monkeypatch, sig):  # fmt: skip
    # Raised in a __del__, the signal's exception is only printed ("Exception ignored"): the
    # command sends the signal again, and it stops the run at the next line.
    class Finalized:
        def __del__(self):
            signal.raise_signal(sig)

    def run_with_a_finalizer(args):
        Finalized()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.001)
        return 0

    monkeypatch.setattr(tokenize_command, "run", run_with_a_finalizer)
    code, _, err = run(capsys, corpus[0], "-o", tmp_path / "t.npy")
    code_expected, what = _STOPPED[sig]
    assert (code, err) == (code_expected, f"flax-embed tokenize: {what}; no output was left "
                                          "half-written\n")  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_error_that_follows_an_interrupt_is_reported_as_the_interrupt(
    tmp_path, corpus, capsys, monkeypatch, sig
):
    # Ctrl-C reaches the worker processes too: the command may first see them gone.
    def run_and_fail(args):
        with contextlib.suppress(KeyboardInterrupt):  # swallowed, as a library might
            signal.raise_signal(sig)
        raise cli.CLIError("a tokenizer worker process died")

    monkeypatch.setattr(tokenize_command, "run", run_and_fail)
    code, _, err = run(capsys, corpus[0], "-o", tmp_path / "t.npy")
    code_expected, what = _STOPPED[sig]
    assert (code, err) == (code_expected, f"flax-embed tokenize: {what}; no output was left "
                                          "half-written\n")  # fmt: skip


@contextlib.contextmanager
def _command_with_workers(tmp_path, megabytes: int):
    """``flax-embed tokenize`` of about ``megabytes`` of the sample text, with two workers, in
    its own session, once its workers run; whatever of it is left is killed after."""
    from flax_embed.data.samples import sample_text
    from tests.faults.conftest import child_env, kill_session, session_processes

    document = sample_text() + ENDOFTEXT  # 4.6 KB
    corpus = tmp_path / "big.txt"
    corpus.write_text(document * -(-megabytes * 10**6 // len(document)), encoding="utf-8")
    argv = [sys.executable, "-m", "flax_embed", "tokenize", str(corpus), "-o",
            str(tmp_path / "tokens.bin"), "--workers", "2"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=child_env(), start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len(session_processes(proc.pid)) < 3:  # the command and its two workers
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no worker processes in 60 s"
            time.sleep(0.005)
        yield proc
    finally:
        kill_session(proc)


def _assert_stopped_cleanly(proc, sig, tmp_path):
    """Exit 128 + sig, its one line, no traceback, no process and no file left."""
    from tests.faults.conftest import session_processes

    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the command hung after the signal")
    word = "interrupted" if sig == signal.SIGINT else "terminated"
    assert proc.returncode == 128 + sig, err
    assert err.decode().splitlines()[-1:] == [
        f"flax-embed tokenize: {word} ({sig.name}); no output was left half-written"
    ], err.decode()[-3000:]
    assert "Traceback" not in err.decode() and "leaked" not in err.decode()
    assert session_processes(proc.pid) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]


@pytest.mark.tokenizer  # the CLI in a subprocess: its error is in its stderr
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_process_group_stops_the_workers_cleanly(tmp_path, sig):
    # Ctrl-C (or a TERM to the group) reaches the worker processes too: they must neither die
    # with a traceback nor outlive the command, which prints its one line.
    with _command_with_workers(tmp_path, megabytes=60) as proc:
        os.killpg(proc.pid, sig)
        _assert_stopped_cleanly(proc, sig, tmp_path)


@pytest.mark.tokenizer  # the CLI in a subprocess: its error is in its stderr
def test_a_worker_killed_at_any_moment_is_one_line_not_a_hang(tmp_path):
    # The workers write their ids to shared memory and send only their number, in one atomic
    # write: the pool's pipe never holds half a message, which a worker killed while sending
    # (SIGKILL: the out-of-memory killer) left there, the command then waiting forever for
    # the rest. With the command stopped, every worker has sent all it encoded: none may be
    # left writing to the pipe.
    from tests.faults.conftest import kill_a_worker_of_a_stopped_caller, session_processes

    with _command_with_workers(tmp_path, megabytes=60) as proc:
        time.sleep(0.3)
        workers = [pid for pid in session_processes(proc.pid) if pid != proc.pid]
        err = kill_a_worker_of_a_stopped_caller(proc, workers)
        assert proc.returncode == 2, err
        assert err.splitlines()[-1:] == [
            "flax-embed tokenize: error: a tokenizer worker process died (killed, or out of "
            "memory?); run again, with fewer workers if memory is short"
        ], err[-3000:]
        assert session_processes(proc.pid) == []
        assert sorted(p.name for p in tmp_path.iterdir()) == ["big.txt"]


@pytest.mark.tokenizer  # in-process CLI: its error goes to the captured stderr
def test_ray_is_started_only_after_the_inputs_are_checked(tmp_path, capsys):
    # A bad input is reported at once, not after Ray has started (seconds) and stopped.
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("Ray is already running in this process")
    code, _, err = run(capsys, tmp_path / "missing.jsonl", "-o", f"{tmp_path / 'out'}/", "--ray")
    assert code == 2 and err.count("\n") == 1 and "missing.jsonl" in err, err
    assert not ray.is_initialized()
