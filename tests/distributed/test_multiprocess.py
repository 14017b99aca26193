"""A real two-process ``jax.distributed`` run on this machine (gloo collectives on CPU).

Two worker processes (``worker.py``, 2 CPU devices each) read their
shards of the same token file; the test checks that each read only its shard and
that the global batches (and their embeddings) equal one process's, bit for bit.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from flax_embed.data import Batcher, SlidingWindowDataset
from flax_embed.layers.linen import InputEmbedding
from flax_embed.tokenizer import encode

pytestmark = pytest.mark.tokenizer  # a subprocess that tokenizes: skip up front

WORKER = Path(__file__).with_name("worker.py")
REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env() -> dict:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.pop("XLA_FLAGS", None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


@pytest.fixture(scope="module")
def run(tmp_path_factory, sample_text):
    """Runs the two workers; returns ``(tokens, [result of process 0, of process 1])``."""
    tmp = tmp_path_factory.mktemp("distributed")
    tokens = np.asarray(encode(sample_text), np.uint16)
    np.save(tmp / "tokens.npy", tokens)
    for _attempt in range(2):  # once more if another process took the free port meanwhile
        procs, output = _launch_workers(tmp, free_port())
        if all(p.returncode == 0 for p in procs) or "already in use" not in output.lower():
            break
    assert all(p.returncode == 0 for p in procs), f"workers failed or timed out:\n{output}"
    results = [json.loads((tmp / f"worker{i}.json").read_text()) for i in range(2)]
    return tokens, results


def _launch_workers(tmp, port: int) -> tuple[list[subprocess.Popen], str]:
    """Runs both workers to the end (or TIMEOUT_S); returns them and their logs."""
    procs, logs = [], []
    try:
        for i in range(2):
            logs.append(open(tmp / f"worker{i}.log", "w"))  # noqa: SIM115
            command = [sys.executable, str(WORKER), str(port), str(i)]
            command += [str(tmp / "tokens.npy"), str(tmp / f"worker{i}.json")]
            procs.append(
                subprocess.Popen(
                    command, cwd=REPO, env=worker_env(), stdout=logs[i], stderr=subprocess.STDOUT
                )
            )
        # Wait for both; stop early when one fails (the other would wait for it).
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            codes = [proc.poll() for proc in procs]
            if all(c == 0 for c in codes) or any(c not in (None, 0) for c in codes):
                break
            time.sleep(0.1)
    finally:
        for proc in procs:  # never leave a worker behind, whatever happened
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    output = "\n".join(
        f"--- worker {i} (exit {p.returncode}) ---\n{(tmp / f'worker{i}.log').read_text()[-4000:]}"
        for i, p in enumerate(procs)
    )
    return procs, output


@pytest.fixture(scope="module")
def one_process(run):
    """The single-process ``Batcher`` and config the workers used."""
    tokens, results = run
    c = results[0]["config"]
    dataset = SlidingWindowDataset(tokens, c["max_length"], c["stride"])
    return Batcher(dataset, c["batch_size"], seed=c["seed"], shard_count=1), c


def test_two_processes_with_two_devices_each(run):
    _, results = run
    for i, r in enumerate(results):
        assert r["process_index"] == i and r["process_count"] == 2
        assert (r["local_devices"], r["global_devices"]) == (2, 4)
        assert r["shard"] == [i, 2]


def test_each_process_reads_only_its_shard(run, one_process):
    _, results = run
    batcher, c = one_process
    half = c["batch_size"] // 2
    for i, r in enumerate(results):
        assert len(r["reads"]) >= c["steps"]  # plus the batches prefetched ahead
        for j, read in enumerate(r["reads"]):
            whole = batcher.batch_windows(*divmod(j, len(batcher))).tolist()
            assert read == whole[i * half : (i + 1) * half]
    first, second = ({w for read in r["reads"] for w in read} for r in results)
    assert not first & second


def test_each_device_holds_its_rows(run, one_process):
    _, results = run
    _, c = one_process
    for r in results:
        assert r["local_rows"] == [[c["batch_size"] // 4] * 2] * c["steps"]


def test_global_batches_equal_the_single_process_batches(run, one_process):
    _, results = run
    batcher, c = one_process
    expected = [next(it) for it in [batcher.iterate()] for _ in range(c["steps"])]
    for r in results:
        for (x, y), gx, gy in zip(expected, r["inputs"], r["targets"], strict=True):
            np.testing.assert_array_equal(np.asarray(gx, np.int32), x)
            np.testing.assert_array_equal(np.asarray(gy, np.int32), y)


def test_cross_process_sum_equals_the_single_process_sum(run, one_process):
    _, results = run
    batcher, c = one_process
    it = batcher.iterate()
    expected = [int(next(it)[0].sum()) for _ in range(c["steps"])]
    assert results[0]["sums"] == results[1]["sums"] == expected


def test_global_embeddings_equal_the_single_process_ones_bit_for_bit(run, one_process):
    _, results = run
    batcher, c = one_process
    model = InputEmbedding(vocab_size=50257, context_length=c["max_length"], features=c["features"])
    params = model.init(jax.random.key(0), np.zeros((c["batch_size"], c["max_length"]), np.int32))
    it = batcher.iterate()
    for step in range(c["steps"]):
        expected = np.asarray(jax.jit(model.apply)(params, next(it)[0])).view(np.uint32)
        for r in results:
            np.testing.assert_array_equal(np.asarray(r["embeddings"][step], np.uint32), expected)


def test_both_processes_save_the_single_process_state(run, one_process):
    _, results = run
    batcher, c = one_process
    it = batcher.iterate()
    for _ in range(c["steps"]):
        next(it)
    assert results[0]["state"] == results[1]["state"] == json.loads(json.dumps(it.get_state()))
