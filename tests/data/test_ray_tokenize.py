"""The Ray runner on a real local Ray cluster (2 CPUs, loopback only): the local run's bytes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flax_embed.data.corpus import CorpusError
from flax_embed.data.shards import MANIFEST, tokenize_corpus
from flax_embed.data.token_files import read_token_file
from flax_embed.tokenizer import ENDOFTEXT, encode
from tests.data.corpus_files import DOCS, crash_once, write_jsonl, write_parquet

RAY_LOG_LINE = re.compile(r"\[\d{4}-\d\d-\d\d [\d:,]+ [A-Z] \d+ \d+\] \w+\.cc:\d+: ")
"""A line of Ray's C++ logger (raylet, core workers)."""

ray = pytest.importorskip("ray", reason="the optional `ray` extra")
# Ray starts its processes with fork/exec; JAX (imported by other tests) warns about any fork.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def cluster():
    """A local two-CPU Ray instance for this module, shut down after it."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")  # fmt: skip
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def inputs(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_jsonl(src / "a.jsonl", DOCS * 6)
    write_jsonl(src / "b.jsonl.zst", DOCS[::-1], compression="zst")
    write_parquet(src / "c.parquet", DOCS * 2, row_group_size=5)
    (src / "d.txt").write_text("  a text file\n")
    docs = DOCS * 6 + DOCS[::-1] + DOCS * 2 + ["  a text file\n"]
    return [str(src)], docs


@pytest.mark.tokenizer
def test_ray_output_equals_the_local_run_shard_for_shard(cluster, tmp_path, inputs):
    from flax_embed.data.ray_tokenize import RayRunner

    paths, docs = inputs
    runner = RayRunner()
    try:
        remote = tokenize_corpus(paths, tmp_path / "ray", shard_tokens=70, segment_bytes=300,
                                 runner=runner)  # fmt: skip
    finally:
        runner.close()
    assert ray.is_initialized()  # joined the fixture's instance, did not shut it down
    local = tokenize_corpus(paths, tmp_path / "local", shard_tokens=70, segment_bytes=300)
    assert remote == local
    assert (tmp_path / "ray" / MANIFEST).read_bytes() == (
        tmp_path / "local" / MANIFEST
    ).read_bytes()
    for s in local["shards"]:
        for name in (s["name"], s["name"] + ".json"):
            assert (tmp_path / "ray" / name).read_bytes() == (
                tmp_path / "local" / name
            ).read_bytes()
    index = local["document_index"]["name"]  # the document index too
    assert (tmp_path / "ray" / index).read_bytes() == (tmp_path / "local" / index).read_bytes()
    assert local["document_index"]["documents"] == len(docs)
    ids = np.concatenate([read_token_file(tmp_path / "ray" / s["name"]) for s in remote["shards"]])
    np.testing.assert_array_equal(ids, encode(ENDOFTEXT.join(docs)))
    assert len(remote["shards"]) > 3


@pytest.mark.tokenizer
def test_a_failed_ray_job_leaves_no_manifest(cluster, tmp_path, inputs):
    from flax_embed.data.ray_tokenize import RayRunner

    paths, _ = inputs
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    runner = RayRunner()
    with pytest.raises(CorpusError, match=r"bad\.jsonl\.gz: "):
        tokenize_corpus([*paths, str(bad)], tmp_path / "o", shard_tokens=50, segment_bytes=300,
                        runner=runner)  # fmt: skip
    assert not (tmp_path / "o").exists()


@pytest.mark.tokenizer  # in-process CLI: its error goes to the captured stderr
def test_the_cli_with_ray(cluster, tmp_path, inputs, capsys):
    from flax_embed import cli

    paths, docs = inputs
    code = cli.main(["tokenize", *paths, "-o", f"{tmp_path / 'o'}/", "--shard-tokens", "100",
                     "--ray"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    manifest = json.loads((tmp_path / "o" / MANIFEST).read_text())
    assert out.startswith(f"wrote {tmp_path / 'o'}: {manifest['tokens']} tokens (uint16) in ")
    assert manifest["tokens"] == len(encode(ENDOFTEXT.join(docs)))
    assert ray.is_initialized()


@pytest.mark.tokenizer
def test_a_task_whose_worker_dies_is_retried(cluster, tmp_path, inputs):
    from flax_embed.data.ray_tokenize import RayRunner

    paths, docs = inputs
    runner = RayRunner()
    runner.start()  # its task functions exist from here: one is replaced below
    marker = tmp_path / "crashed-once"
    remote = ray.remote(**runner.task_options)(crash_once)

    class Shim:  # what RayRunner submits: .remote(job)
        @staticmethod
        def remote(job):
            return remote.remote(job, str(marker))

    runner._unit = Shim
    manifest = tokenize_corpus(paths, tmp_path / "o", shard_tokens=70, segment_bytes=300,
                               runner=runner)  # fmt: skip
    assert marker.exists()
    ids = np.concatenate([read_token_file(tmp_path / "o" / s["name"]) for s in manifest["shards"]])
    np.testing.assert_array_equal(ids, encode(ENDOFTEXT.join(docs)))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.tokenizer  # the CLI in a subprocess: its error is in its stderr
def test_the_cli_on_a_cluster_started_with_ray_start(tmp_path, inputs):
    # The multi-node recipe of docs/corpora.md on one node: `ray start --head`, then
    # `flax-embed tokenize ... --ray-address`. Both in their own processes, on loopback.
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    paths, docs = inputs
    ray_bin = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    temp = tempfile.mkdtemp(prefix="rayc-", dir="/tmp")  # short: Ray's socket paths
    port = _free_port()
    log = open(tmp_path / "head.log", "w+")  # noqa: SIM115 (closed below)
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
         "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
         "--temp-dir", temp],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "This command will now block" not in (tmp_path / "head.log").read_text():
            assert head.poll() is None and time.monotonic() < deadline, log.read()
            time.sleep(0.5)
        env = {**os.environ, "RAY_AUTH_MODE": "token"}  # Ray >= 2.5x: token auth by default
        result = subprocess.run(
            [sys.executable, "-m", "flax_embed", "tokenize", *paths, "-o", f"{tmp_path / 'o'}/",
             "--shard-tokens", "100", "--ray-address", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=180, env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
    finally:
        # Only what this test started: the head's session, then anything left with our
        # temp dir in its command line.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)  # `ray start --block` is slow to stop on TERM
        head.wait(timeout=30)
        for line in subprocess.run(["ps", "-eo", "pid,args"], capture_output=True,
                                   text=True).stdout.splitlines():  # fmt: skip
            if temp in line:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(line.split()[0]), signal.SIGKILL)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)
    manifest = json.loads((tmp_path / "o" / MANIFEST).read_text())
    ids = np.concatenate([read_token_file(tmp_path / "o" / s["name"]) for s in manifest["shards"]])
    np.testing.assert_array_equal(ids, encode(ENDOFTEXT.join(docs)))


@pytest.mark.parametrize("fixture", ["bpe_tokenizer_json", "big_tokenizer_json"])
def test_ray_equals_local_for_a_tokenizer_json(cluster, inputs, tmp_path, fixture, request):
    """Byte-identical shards and manifest for a tokenizer.json (uint16 and uint32 ids)."""
    from flax_embed.data.ray_tokenize import RayRunner

    spec = request.getfixturevalue(fixture)
    paths, _ = inputs
    kwargs = dict(shard_tokens=70, segment_bytes=300, tokenizer=spec)
    runner = RayRunner()
    try:
        remote = tokenize_corpus(paths, tmp_path / "ray", runner=runner, **kwargs)
    finally:
        runner.close()
    local = tokenize_corpus(paths, tmp_path / "local", **kwargs)
    assert remote == local and remote["tokenizer"]["name"] == "tokenizer.json"
    for name in [MANIFEST, "documents.npy", *(s["name"] for s in local["shards"])]:
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


@pytest.mark.slow
@pytest.mark.tokenizer  # the CLI in a subprocess: its error is in its stderr
@pytest.mark.parametrize(
    ("sig", "stage", "group"),
    [
        (signal.SIGINT, "shard-", True),  # Ctrl-C: to the whole foreground process group
        (signal.SIGTERM, ".part-", False),  # kill PID, while a unit is being written
    ],
)
def test_an_interrupted_ray_run_stops_the_ray_it_started(tmp_path, sig, stage, group):
    from flax_embed.data.samples import sample_text
    from tests.faults.conftest import child_env, session_processes

    corpus = tmp_path / "c.jsonl"
    corpus.write_text((json.dumps({"text": sample_text()}) + "\n") * 300)  # 6 MB, 1.5M tokens
    out = tmp_path / "o"
    argv = [sys.executable, "-m", "flax_embed", "tokenize", str(corpus), "-o", f"{out}/",
            "--ray", "--shard-tokens", "2000"]  # fmt: skip
    # Its own session: every process it starts is found by session id, even if reparented.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=child_env(), start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.startswith(stage) for p in (out / ".work").glob("*")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the job did not reach its stage in 120 s"
            time.sleep(0.005)
        started = session_processes(proc.pid)
        assert len(started) > 3  # the command, Ray's GCS, raylet, workers, agents
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + sig, err.decode()[-3000:]
        name = signal.Signals(sig).name
        ours = (f"flax-embed tokenize: {'interrupted' if sig == signal.SIGINT else 'terminated'} "
                f"({name}); no output was left half-written")  # fmt: skip
        # The command prints that one line and no traceback. A Ctrl-C reaches the whole
        # process group, Ray's own processes too, whose C++ logger may add a line of its
        # own ("[date ...] task_manager.cc:N: ..."): those are Ray's, not the command's.
        lines = err.decode().splitlines()
        assert lines[-1:] == [ours] and lines.count(ours) == 1, lines
        assert all(RAY_LOG_LINE.match(line) for line in lines[:-1]), lines
        deadline = time.monotonic() + 10  # the command waited for them: none should be left
        while (left := session_processes(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == [], [Path(f"/proc/{p}/cmdline").read_bytes()[:100] for p in left]
        assert not (out / MANIFEST).exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in session_processes(proc.pid):  # only what this test started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_both_runners_are_runners(cluster):
    # pyright checks the same statically where flax_embed passes each as a `Runner`.
    from flax_embed.data.ray_tokenize import RayRunner
    from flax_embed.data.shards import LocalRunner, Runner

    runners = [LocalRunner(3), RayRunner()]
    assert all(isinstance(r, Runner) for r in runners)
    assert [r.workers for r in runners] == [3, 1]
