"""Tokenize end to end: whole processes, as a user runs them, side by side in one run.

The corpus is the bundled sample text cut into ~4 KB documents, repeated to 60 MB
(``--quick``: 300 KB) and written once as ``corpus.txt`` (documents joined by
``<|endoftext|>``) and ``corpus.jsonl``. Each variant is a fresh ``python`` process
(start-up, imports and tokenizer loading included), timed interleaved (medians), with
its CPU time (user + system, of the process and every process it started) and its peak
resident memory (``VmHWM`` of each of its processes, sampled: the largest, and their sum):

1. start-up: ``flax-embed tokenize --help``, and a one-line file tokenized to ``.npy``;
2. for GPT-2 and for a ``tokenizer.json`` (a byte-level BPE trained here with the
   ``tokenizers`` trainer, or ``--tokenizer-json PATH``, e.g. Llama 3's):

   * ``flax-embed tokenize corpus.txt -o out.bin`` against one single-threaded call of
     the same tokenizer on the whole text (tiktoken ``encode_to_numpy``,
     ``tokenizers.Tokenizer.encode``), the ids saved with ``np.save``: wall time
     (target ≥ 1.7x on 2 cores), CPU time (target ≤ 1.15x the one call's), ids identical;
   * GPT-2 only, a split by hand: the same one call on each half of the text, both at
     once, as a user would run two jobs. Its CPU against one call's is what two encoders
     at once cost on this machine at that moment (shared caches, a host that shares the
     cores): where it is well above 1, no parallel run reaches 2x;
   * ``--workers 1`` and ``--workers N``: how throughput scales with cores;
   * what users do today on the same documents: nanoGPT's ``prepare.py`` pattern
     (``datasets.Dataset.map(num_proc=N)`` then ``np.memmap``), and the library's own
     batch call (``tokenizers`` ``encode_batch``, tiktoken ``encode_ordinary_batch``),
     whose parallelism is in Rust.

Each ratio is the median over rounds of the two variants' ratio in the same round (the
VM's speed drifts by 20 % over minutes); the package is compiled to bytecode first, as
an installed one is. Rows are printed for ``run.py`` (section ``tokenize-e2e``); targets
are judged only at full size.
"""

from __future__ import annotations

import compileall
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import (
    REPO,
    Row,
    emit,
    fmt_bytes,
    fmt_time,
    sample_documents,
    sample_text,
    status_kb,
)

SECTION = "tokenize-e2e"
SEP = "<|endoftext|>"

ONE_CALL = """
import sys, numpy as np
kind, spec, src, out = sys.argv[1:]
text = open(src, encoding="utf-8").read()
if kind == "gpt2":
    from flax_embed.tokenizer import gpt2_tokenizer
    ids = gpt2_tokenizer().encode_to_numpy(text, allowed_special={"<|endoftext|>"})
else:
    from tokenizers import Tokenizer
    ids = np.asarray(Tokenizer.from_file(spec).encode(text, add_special_tokens=False).ids)
np.save(out, ids.astype(np.uint16 if ids.max(initial=0) < 2**16 else np.uint32))
"""

LIBRARY_BATCH = """
import json, sys, numpy as np
kind, spec, src, out, workers = sys.argv[1:]
docs = [json.loads(line)["text"] for line in open(src, encoding="utf-8")]
if kind == "gpt2":
    from flax_embed.tokenizer import gpt2_tokenizer
    batch = gpt2_tokenizer().encode_ordinary_batch(docs, num_threads=int(workers))
else:
    from tokenizers import Tokenizer
    batch = [e.ids for e in Tokenizer.from_file(spec).encode_batch(docs,
                                                                    add_special_tokens=False)]
sep = {sep_id}
ids = [i for k, doc in enumerate(batch) for i in ([sep] if k else []) + doc]
np.save(out, np.asarray(ids, np.uint32 if max(ids) >= 2**16 else np.uint16))
"""

HALVES = """
import subprocess, sys
one_call, kind, spec, *halves = sys.argv[1:]
procs = [subprocess.Popen([sys.executable, "-c", one_call, kind, spec, half, f"{half}.npy"])
         for half in halves]
sys.exit(max(p.wait() for p in procs))
"""

NANOGPT = """
import os, shutil, sys, tempfile, numpy as np, datasets
kind, spec, src, out, workers = sys.argv[1:]
datasets.disable_progress_bars()
cache = tempfile.mkdtemp(dir=os.path.dirname(out))  # fresh: a first run, as a user's
ds = datasets.load_dataset("json", data_files=src, split="train", cache_dir=cache)
if kind == "gpt2":
    from flax_embed.tokenizer import gpt2_tokenizer
    enc = gpt2_tokenizer()
    def process(example):  # nanoGPT's data/openwebtext/prepare.py
        return {"ids": enc.encode_ordinary(example["text"])}
else:
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(spec)
    def process(example):
        return {"ids": tok.encode(example["text"], add_special_tokens=False).ids}
ds = ds.map(process, remove_columns=["text"], num_proc=int(workers))
n = sum(len(i) for i in ds["ids"]) + len(ds) - 1
arr = np.memmap(out, dtype=np.uint16, mode="w+", shape=(n,))
pos, sep = 0, {sep_id}
for k, ids in enumerate(ds["ids"]):
    if k:
        arr[pos] = sep
        pos += 1
    arr[pos : pos + len(ids)] = ids
    pos += len(ids)
arr.flush()
del ds
shutil.rmtree(cache)
"""


def train_tokenizer_json(path: Path) -> Path:
    """A byte-level BPE (8,000 ids, ``<|endoftext|>`` added) trained on the sample text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=8000, special_tokens=[SEP], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(sample_text().splitlines(), trainer=trainer)
    tok.save(str(path))
    return path


def _adopt_orphans() -> bool:
    """Makes this process the reaper of its descendants' orphans (Linux ``prctl``).

    A variant's own children (worker processes, a ``forkserver``) are then counted in its
    CPU time even when it does not wait for them itself.
    """
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (``/proc/PID/task/TID/children``)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:  # gone meanwhile
            pass
    return found


def _high_water(pid: int) -> int:
    """``VmHWM`` of a process, in bytes: its peak RSS since its ``exec`` (0 once gone).

    Not ``ru_maxrss``: that keeps the peak of the process that forked it (this harness)
    across the ``exec``, so a small process reads as large as the harness.
    """
    try:
        return status_kb("VmHWM", pid) * 1024
    except (OSError, RuntimeError):  # gone, or a zombie
        return 0


def run_process(argv: list[str]) -> tuple[float, float, int, int]:
    """``(wall s, CPU s, peak RSS bytes, summed peak RSS bytes)`` of a process and its
    descendants.

    CPU: user + system of every process it started, as this process reaps them
    (``RUSAGE_CHILDREN``, with ``_adopt_orphans``). Memory: the ``VmHWM`` of each of its
    processes, sampled every 50 ms by a thread while this one waits: the largest, and
    their sum (pages shared after a fork counted in each).
    """
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "true",
           "HF_DATASETS_OFFLINE": "1"}  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    peaks: dict[int, int] = {}
    done = threading.Event()

    def sample(root: int) -> None:
        while not done.wait(0.05):
            for pid in _tree(root):
                peaks[pid] = max(peaks.get(pid, 0), _high_water(pid))

    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err)
        sampler = threading.Thread(target=sample, args=(proc.pid,))
        sampler.start()
        try:
            _, status, _ = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
        finally:
            done.set()
            sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        while True:  # the orphans it left (a forkserver ends once its parent has)
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            err.seek(0)
            stderr = err.read().decode(errors="replace")
            raise RuntimeError(f"{argv[:4]} failed ({proc.returncode}): {stderr[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, max(peaks.values(), default=0), sum(peaks.values())


Sample = tuple[float, float, int, int]


class Timed:
    """Interleaved samples of each variant (``run_process``'s tuples), round by round."""

    def __init__(self, variants: dict[str, list[str]], rounds: int):
        self.samples: dict[str, list[Sample]] = {k: [] for k in variants}
        names = list(variants)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                self.samples[name].append(run_process(variants[name]))

    def __getitem__(self, name: str) -> Sample:
        """Median wall and CPU seconds, and the largest peak RSS (one process, all summed)."""
        s = self.samples[name]
        return (statistics.median(x[0] for x in s), statistics.median(x[1] for x in s),
                max(x[2] for x in s), max(x[3] for x in s))  # fmt: skip

    def ratio(self, a: str, b: str, field: int = 0) -> float:
        """The median over rounds of ``a``'s wall (``field=1``: CPU) time over ``b``'s in the
        same round: paired, so that the VM's speed, which drifts over minutes, cancels."""
        pairs = zip(self.samples[a], self.samples[b], strict=True)
        return statistics.median(x[field] / y[field] for x, y in pairs)


def bench(quick: bool, tokenizer_json: str | None = None) -> None:
    from flax_embed.data.parallel_tokenize import default_workers

    size = 300_000 if quick else 60_000_000
    workers = default_workers()
    # As pip does on install: every variant then imports flax_embed from bytecode, even where
    # PYTHONDONTWRITEBYTECODE is set (the source compiled on each start cost 60 ms).
    compileall.compile_dir(REPO / "flax_embed", quiet=2)
    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="bench-tokenize-e2e-"))
    try:
        _bench(quick, tokenizer_json, size, workers, py, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bench(quick: bool, tokenizer_json: str | None, size: int, workers: int, py: str,
           tmp: Path) -> None:  # fmt: skip
    import json

    import numpy as np

    from flax_embed.data import read_token_file
    from flax_embed.tokenizer import load_tokenizer

    docs = sample_documents(size)
    txt, jsonl = tmp / "corpus.txt", tmp / "corpus.jsonl"
    txt.write_text(SEP.join(docs), encoding="utf-8")
    with open(jsonl, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": d}) + "\n" for d in docs)
    # The second half starts with its separator: the halves' ids, joined, are the whole's.
    halves = [tmp / "half0.txt", tmp / "half1.txt"]
    halves[0].write_text(SEP.join(docs[: len(docs) // 2]), encoding="utf-8")
    halves[1].write_text(SEP + SEP.join(docs[len(docs) // 2 :]), encoding="utf-8")
    mb = txt.stat().st_size / 1e6
    cli = [py, "-m", "flax_embed", "tokenize"]

    # 1. start-up
    tiny = tmp / "tiny.txt"
    tiny.write_text("hello world\n")
    t = Timed({"help": [*cli, "--help"],
               "tiny": [*cli, str(tiny), "-o", str(tmp / "tiny.npy")]},
              rounds=1 if quick else 5)  # fmt: skip
    startup = [("help", "flax-embed tokenize --help"),
               ("tiny", "flax-embed tokenize of a one-line file (GPT-2 loaded)")]  # fmt: skip
    for key, what in startup:
        emit(Row(SECTION, f"start-up: {what}", fmt_time(t[key][0]), "", None,
                 target="≤ 0.5 s", met=None if quick else t[key][0] <= 0.5,
                 note=f"whole process, median of {1 if quick else 5}; peak RSS "
                 f"{fmt_bytes(t[key][2])}; no jax or flax imported"))  # fmt: skip

    json_spec = tokenizer_json or str(train_tokenizer_json(tmp / "tokenizer.json"))
    # GPT-2's variants take seconds: more rounds against the VM's noise.
    for kind, spec, rounds in [("gpt2", "gpt2", 1 if quick else 7),
                               ("json", json_spec, 1 if quick else 3)]:  # fmt: skip
        tok = load_tokenizer(spec)
        label = "GPT-2" if kind == "gpt2" else f"tokenizer.json ({tok.name}, {tok.n_vocab} ids)"
        sep_id = str(tok.separator_id)
        out = {k: tmp / f"{kind}-{k}" for k in ("cmd", "cmd1", "one", "batch", "nano")}
        variants = {
            "command": [*cli, str(txt), "-o", f"{out['cmd']}.bin", "--tokenizer", spec],
            "workers1": [*cli, str(txt), "-o", f"{out['cmd1']}.bin", "--tokenizer", spec,
                         "--workers", "1"],
            "one": [py, "-c", ONE_CALL, kind, spec, str(txt), f"{out['one']}.npy"],
            "batch": [py, "-c", LIBRARY_BATCH.replace("{sep_id}", sep_id), kind, spec,
                      str(jsonl), f"{out['batch']}.npy", str(workers)],
            "nanogpt": [py, "-c", NANOGPT.replace("{sep_id}", sep_id), kind, spec, str(jsonl),
                        f"{out['nano']}.bin", str(workers)],
        }  # fmt: skip
        if kind == "gpt2":
            variants["halves"] = [py, "-c", HALVES, ONE_CALL, kind, spec, *map(str, halves)]
        t = Timed(variants, rounds)
        reference = np.load(f"{out['one']}.npy")
        same = {
            "command": np.array_equal(read_token_file(f"{out['cmd']}.bin"), reference),
            "workers1": np.array_equal(read_token_file(f"{out['cmd1']}.bin"), reference),
            "batch": np.array_equal(np.load(f"{out['batch']}.npy"), reference),
            "nanogpt": np.array_equal(
                np.fromfile(f"{out['nano']}.bin", np.uint16), reference
            ) if tok.n_vocab <= 2**16 else None,
        }  # fmt: skip
        one_wall, one_cpu, one_rss, _ = t["one"]
        wall, cpu, rss, rss_all = t["command"]
        speedup, cpu_ratio = t.ratio("one", "command"), t.ratio("command", "one", field=1)
        emit(Row(SECTION, f"{label}: flax-embed tokenize, {mb:.1f} MB .txt, vs one call",
                 fmt_time(wall), f"{fmt_time(one_wall)} one call", speedup,
                 target="≥ 1.7x on 2 cores, ids identical",
                 met=None if quick else speedup >= 1.7 and bool(same["command"]),
                 note=f"ids identical: {bool(same['command'])}; {workers} worker processes; "
                 f"peak RSS {fmt_bytes(rss)} its largest process, {fmt_bytes(rss_all)} all "
                 f"its processes added (one call {fmt_bytes(one_rss)}); whole processes, "
                 f"{rounds} interleaved rounds: times their medians, the ratio the median of "
                 "each round's"))  # fmt: skip
        emit(Row(SECTION, f"{label}: CPU time of the command vs one call",
                 f"{cpu:.2f} s CPU", f"{one_cpu:.2f} s CPU", cpu_ratio, ratio_label="x the CPU",
                 target="≤ 1.15x", met=None if quick else cpu_ratio <= 1.15,
                 note="user + system of the process and every process it started"))  # fmt: skip
        if "halves" in variants:
            halves_ids = np.concatenate([np.load(f"{half}.npy") for half in halves])
            h_wall, h_cpu, _, _ = t["halves"]
            emit(Row(SECTION, f"{label}: split by hand, one call on each half of the text, "
                     "both at once, vs one call", fmt_time(h_wall),
                     f"{fmt_time(one_wall)} one call", t.ratio("one", "halves"),
                     note=f"the command {t.ratio('halves', 'command'):.2f}x faster than it "
                     f"(paired per round); its CPU {h_cpu:.2f} s, "
                     f"{t.ratio('halves', 'one', 1):.2f}x the one call's: what two encoders at "
                     "once cost on this machine in this run (two start-ups included); ids "
                     f"identical: {np.array_equal(halves_ids, reference)} (the halves' ids "
                     "joined)"))  # fmt: skip
        w1 = t["workers1"][0]
        emit(Row(SECTION, f"{label}: --workers {workers} vs --workers 1 (scaling with cores)",
                 fmt_time(wall), f"{fmt_time(w1)} --workers 1", t.ratio("workers1", "command"),
                 note=f"{mb / wall:.1f} MB/s with {workers} workers, {mb / w1:.1f} MB/s with 1; "
                 f"ids identical: {bool(same['workers1'])}"))  # fmt: skip
        for key, what in [("batch", "the library's batch call (Rust threads)"),
                          ("nanogpt", f"nanoGPT prepare.py (datasets.map(num_proc={workers}) "
                                      "+ np.memmap)")]:  # fmt: skip
            other_wall, other_cpu, _, other_rss = t[key]
            emit(Row(SECTION, f"{label}: flax-embed tokenize vs {what}", fmt_time(wall),
                     fmt_time(other_wall), t.ratio(key, "command"),
                     note=f"ids identical: {same[key]}; its CPU {other_cpu:.2f} s, peak RSS "
                     f"{fmt_bytes(other_rss)} (its processes added); the command's "
                     f"{cpu:.2f} s, {fmt_bytes(rss_all)}"))  # fmt: skip


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness")
    parser.add_argument("--tokenizer-json", default=None, metavar="PATH",
                        help="a real tokenizer.json (default: one trained here)")  # fmt: skip
    args = parser.parse_args()
    _adopt_orphans()
    bench(args.quick, args.tokenizer_json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
