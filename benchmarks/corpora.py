"""Corpora: ``flax-embed tokenize`` end to end, input formats, the Ray runner, sharded reads.

The corpus is "The Verdict" cut into documents of about 4 KB, repeated to 40 MB of
text (``--quick``: 200 KB), written once as ``.txt`` (the documents joined by
``<|endoftext|>``, which encodes to the same ids), ``.jsonl`` and ``.parquet``. Rows:

1. the command end to end (a ``.txt`` file in, a ``.bin`` token file out, every core)
   against one tiktoken ``encode`` call on the text already in memory;
2. the streaming path with ``--workers 2`` against ``--workers 1``, and against the
   per-block hand-off it replaced (each 16 MB block's chunks encoded with one
   ``pool.map``, the threads idle while the next block is read and cut);
3. JSONL and Parquet throughput (MB/s of document text) against the same documents as ``.txt``;
4. the Ray runner (a local Ray instance, one task per CPU) against the local runner,
   both writing shards (``tokenize_corpus``), Ray's start-up time reported apart;
5. ``from_files`` over 8 shards against ``from_file`` over the same ids in one file:
   one shuffled epoch of batches (8 x 256), identical batches.

Every pair is timed interleaved (medians); ids are compared with one reference.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import (
    Row,
    emit,
    fmt_time,
    interleaved,
    measure_in_fork,
    sample_documents,
    section_main,
)

SECTION = "corpora"


def bench(quick: bool) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from flax_embed import cli
    from flax_embed.data import SlidingWindowDataset, read_token_file, write_token_file
    from flax_embed.data.batcher import Batcher
    from flax_embed.data.parallel_tokenize import (
        _encoder,
        chunk_boundaries,
        default_workers,
    )
    from flax_embed.data.shards import tokenize_corpus
    from flax_embed.tokenizer import ENDOFTEXT, gpt2_tokenizer

    size = 200_000 if quick else 40_000_000
    rounds = 3
    workers = default_workers()
    docs = sample_documents(size)
    text = ENDOFTEXT.join(docs)
    text_mb = sum(map(len, (d.encode() for d in docs))) / 1e6
    tokenizer = gpt2_tokenizer()
    reference = np.asarray(tokenizer.encode(text, allowed_special={ENDOFTEXT}), np.int32)
    tmp = Path(tempfile.mkdtemp(prefix="bench-corpora-"))
    txt, jsonl, parquet = tmp / "c.txt", tmp / "c.jsonl", tmp / "c.parquet"
    txt.write_text(text, encoding="utf-8")
    with open(jsonl, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": d}) + "\n" for d in docs)
    pq.write_table(pa.table({"text": docs}), parquet, row_group_size=max(len(docs) // 8, 1))

    quiet = open(os.devnull, "w")  # noqa: SIM115 (the command prints a line per run)

    def command(path, out, *extra):
        with contextlib.redirect_stdout(quiet):
            assert cli.main(["tokenize", str(path), "-o", str(out), *extra]) == 0

    try:
        # 1-2: the command end to end, and the streaming path.
        def per_block_handoff(n_workers):  # the hand-off this change replaced, for comparison
            from concurrent.futures import ThreadPoolExecutor

            encode_chunk = _encoder(None)
            with ThreadPoolExecutor(n_workers) as pool, open(txt, encoding="utf-8") as f:
                carry = ""
                while block := f.read(16 << 20):
                    block = carry + block
                    bounds = chunk_boundaries(block)
                    carry = block[bounds[-2] :] if len(bounds) > 1 else ""
                    chunks = [block[a:b] for a, b in itertools.pairwise(bounds)]
                    list(pool.map(encode_chunk, chunks))
                if carry:
                    encode_chunk(carry)

        t = interleaved(
            {
                "one": lambda: tokenizer.encode(text, allowed_special={ENDOFTEXT}),
                "command": lambda: command(txt, tmp / "t.bin"),
                "workers1": lambda: command(txt, tmp / "t1.bin", "--workers", "1"),
                "handoff": lambda: per_block_handoff(workers),
            },
            rounds=rounds,
            warmup=0,
        )
        # Cores this process got: CPU seconds per wall second of one more run. With the
        # cores busy with other processes a second thread has nowhere to run, and
        # --workers 2 is no faster than --workers 1 (seen here at load average > 4).
        load = os.getloadavg()[0]
        wall, cpu = time.perf_counter(), time.process_time()
        command(txt, tmp / "t.bin")
        cores_used = (time.process_time() - cpu) / (time.perf_counter() - wall)
        identical = bool(np.array_equal(read_token_file(tmp / "t.bin"), reference))
        identical &= bool(np.array_equal(read_token_file(tmp / "t1.bin"), reference))
        rss = measure_in_fork(lambda: command(txt, tmp / "t.bin"),
                              warmup=None)["growth"]  # fmt: skip
        speedup = t["one"] / t["command"]
        emit(Row(
            SECTION,
            f"tokenize command end to end, {text_mb:.1f} MB .txt -> .bin, vs one tiktoken encode",
            fmt_time(t["command"]), f"{fmt_time(t['one'])} one call", speedup,
            target="≥ 1.7x on 2 cores, ids identical",
            met=None if quick else (speedup >= 1.7 and identical),
            note=f"ids identical: {identical}; {workers} workers, {cores_used:.2f} cores used "
            f"(load average {load:.1f} before); peak RSS growth of the "
            f"command {rss / 1e6:.0f} MB for {len(text) / 1e6:.0f} MB of text (16 MB blocks); "
            f"medians of {rounds} interleaved runs",
        ))  # fmt: skip
        emit(Row(
            SECTION, "tokenize streaming path: --workers N vs --workers 1",
            fmt_time(t["command"]), f"{fmt_time(t['workers1'])} --workers 1",
            t["workers1"] / t["command"], target="> 1x (scales with cores)",
            met=None if quick else t["workers1"] / t["command"] > 1.2,
            note=f"the per-block hand-off it replaced (pool.map per 16 MB block, no file "
            f"writing): {fmt_time(t['handoff'])}, {t['workers1'] / t['handoff']:.2f}x --workers 1",
        ))  # fmt: skip

        # 3: formats.
        t = interleaved(
            {
                "txt": lambda: command(txt, tmp / "f-txt.bin"),
                "jsonl": lambda: command(jsonl, tmp / "f-jsonl.bin"),
                "parquet": lambda: command(parquet, tmp / "f-parquet.bin"),
            },
            rounds=rounds + 2,
            warmup=0,
        )
        for name in ("jsonl", "parquet"):
            same = bool(np.array_equal(read_token_file(tmp / f"f-{name}.bin"), reference))
            ratio = t[name] / t["txt"]
            emit(Row(
                SECTION, f"{name} vs .txt throughput, same {len(docs):,} documents",
                f"{text_mb / t[name]:.1f} MB/s", f"{text_mb / t['txt']:.1f} MB/s .txt", ratio,
                ratio_label="x the time", target="≤ 1.3x the time of .txt",
                met=None if quick else ratio <= 1.3 and same,
                note=f"ids identical to .txt: {same}; MB/s of document text (UTF-8)",
            ))  # fmt: skip

        # 4: Ray against the local runner.
        segment = max(os.path.getsize(jsonl) // (4 * workers), 1)
        local_dir, ray_dir = tmp / "local", tmp / "ray"
        try:
            import ray

            from flax_embed.data.ray_tokenize import RayRunner
        except ImportError:
            emit(Row(SECTION, "Ray runner vs local runner", "not available", "", None,
                     note="ray is not installed (optional `ray` extra)"))  # fmt: skip
        else:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a local benchmark: no reports
            start = time.perf_counter()
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     _node_ip_address="127.0.0.1")  # fmt: skip
            runner = RayRunner()
            startup = time.perf_counter() - start

            def fresh(path):
                import shutil

                shutil.rmtree(path, ignore_errors=True)
                return path

            try:
                t = interleaved(
                    {
                        "local": lambda: tokenize_corpus(
                            [jsonl], fresh(local_dir), shard_tokens=1 << 20,
                            segment_bytes=segment),
                        "ray": lambda: tokenize_corpus(
                            [jsonl], fresh(ray_dir), shard_tokens=1 << 20,
                            segment_bytes=segment, runner=runner),
                    },
                    rounds=rounds,
                    warmup=1,
                )  # fmt: skip
            finally:
                ray.shutdown()
            same = (local_dir / "manifest.json").read_bytes() == (
                ray_dir / "manifest.json").read_bytes()  # fmt: skip
            ratio = t["ray"] / t["local"]
            emit(Row(
                SECTION, f"Ray runner (local instance, {workers} CPUs) vs local runner, shards",
                fmt_time(t["ray"]), f"{fmt_time(t['local'])} local", ratio,
                ratio_label="x the time", target="≤ 1.5x, identical shards",
                met=None if quick else ratio <= 1.5 and same,
                note=f"manifests (shard checksums) identical: {same}; Ray start-up "
                f"{startup:.1f} s, not included; {len(docs):,} documents in JSONL segments "
                f"of {segment / 1e6:.1f} MB",
            ))  # fmt: skip

        # 5: from_files over 8 shards vs from_file over one file.
        ids = reference if quick else reference[:4_000_000]
        write_token_file(tmp / "all.bin", ids)
        cuts = np.linspace(0, ids.size, 9).astype(int)
        shards = [write_token_file(tmp / f"s{k}.bin", ids[a:b])
                  for k, (a, b) in enumerate(itertools.pairwise(cuts))]  # fmt: skip
        one = SlidingWindowDataset.from_file(tmp / "all.bin", 256, 256)
        many = SlidingWindowDataset.from_files(shards, 256, 256)

        def epoch(ds):
            return [x for x, _ in Batcher(ds, 8, shuffle=True, seed=1)]

        same = all(np.array_equal(a, b) for a, b in zip(epoch(one), epoch(many), strict=True))
        t = interleaved({"one": lambda: epoch(one), "many": lambda: epoch(many)},
                        rounds=5, warmup=1)  # fmt: skip
        ratio = t["many"] / t["one"]
        emit(Row(
            SECTION, f"from_files over 8 shards vs from_file, one epoch of {len(one):,} windows",
            fmt_time(t["many"]), f"{fmt_time(t['one'])} from_file", ratio,
            ratio_label="x the time", target="≤ 1.2x, same batches",
            met=None if quick else ratio <= 1.2 and same,
            note=f"batches identical: {same}; batch 8 x 256, shuffled",
        ))  # fmt: skip
    finally:
        quiet.close()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(section_main(bench, __doc__, "200 KB of text: checks the harness"))
