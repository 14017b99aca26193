"""Peak resident memory while iterating a large token file (Linux).

Writes a token file of ``--gigabytes`` of random GPT-2 ids (uint16) into a temporary
folder, then, from a reset peak-RSS mark (``/proc/self/clear_refs``):

1. ``SlidingWindowDataset.from_file`` (which checks every id) and ``--batches``
   shuffled plus ``--batches`` in-order batches through ``Batcher``;
2. for comparison, the same on a plain ``np.memmap`` wrapped in a
   ``SlidingWindowDataset`` (no pages handed back).

It prints the peak RSS growth of each; the target is < 100 MB for (1) on a file of
1 GB or more. Run: ``python benchmarks/token_file_rss.py [--gigabytes 1]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from flax_embed.data import Batcher, SlidingWindowDataset
from flax_embed.data.token_files import TokenFileWriter
from flax_embed.tokenizer import GPT2_VOCAB_SIZE

TARGET_MB = 100


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak() -> float:
    """Resets VmHWM to the current RSS (Linux >= 4.0); returns the current RSS in MB."""
    Path("/proc/self/clear_refs").write_text("5")
    return status_mb("VmRSS")


def write_random_tokens(path: Path, gigabytes: float) -> int:
    count = int(gigabytes * 2**30) // 2
    rng = np.random.default_rng(0)
    with TokenFileWriter(path) as writer:
        for start in range(0, count, 1 << 25):
            n = min(1 << 25, count - start)
            writer.write(rng.integers(0, GPT2_VOCAB_SIZE, n, dtype=np.uint16))
    return count


def iterate(dataset, batches: int, batch_size: int) -> None:
    for shuffle in (True, False):
        batcher = Batcher(dataset, batch_size, shuffle=shuffle, shard_index=0, shard_count=1)
        for _, (inputs_BxT, _) in zip(range(batches), batcher.iter_epoch(0), strict=False):
            assert inputs_BxT.shape[0] == batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0, help="token file size (1)")
    parser.add_argument("--batches", type=int, default=20_000, help="batches per order (20000)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--stride", type=int, default=256)
    parser.add_argument("--dir", default=None, help="where to put the temporary file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = Path(folder) / "tokens.npy"
        t0 = time.perf_counter()
        count = write_random_tokens(path, args.gigabytes)
        size_mb = path.stat().st_size / 2**20
        print(f"wrote {size_mb:,.0f} MB ({count:,} ids) in {time.perf_counter() - t0:.1f} s")

        base = reset_peak()
        t0 = time.perf_counter()
        dataset = SlidingWindowDataset.from_file(path, args.max_length, args.stride)
        checked = time.perf_counter() - t0
        iterate(dataset, args.batches, args.batch_size)
        ours = status_mb("VmHWM") - base
        took = time.perf_counter() - t0
        del dataset

        base = reset_peak()
        t0 = time.perf_counter()
        mapped = np.memmap(path, dtype=np.uint16, mode="r", offset=128, shape=(count,))
        iterate(SlidingWindowDataset(mapped, args.max_length, args.stride), args.batches,
                args.batch_size)  # fmt: skip
        plain = status_mb("VmHWM") - base
        plain_took = time.perf_counter() - t0

    batches = 2 * args.batches
    print(f"{batches:,} batches of {args.batch_size} x {args.max_length} "
          f"(half shuffled, half in order) over {size_mb:,.0f} MB:")  # fmt: skip
    print(f"  from_file (ids checked in {checked:.1f} s): peak RSS +{ours:,.1f} MB, "
          f"{took:.1f} s")  # fmt: skip
    print(f"  plain np.memmap, pages kept:          peak RSS +{plain:,.1f} MB, {plain_took:.1f} s")
    verdict = "PASS" if ours < TARGET_MB else "FAIL"
    print(f"{verdict}: from_file grows peak RSS by {ours:,.1f} MB (target < {TARGET_MB} MB)")


if __name__ == "__main__":
    main()
