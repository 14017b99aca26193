"""Loader: the book's GPTDatasetV1 + torch DataLoader against SlidingWindowDataset + Batcher.

Both start from the same GPT-2 token ids; tokenization is not timed here (it has
its own row). The book's ``GPTDatasetV1`` takes a text and a tokenizer, so it is
handed a tokenizer-like object whose ``encode`` returns the precomputed ids (a
Python list, what tiktoken returns): only building the dataset and iterating
one shuffled epoch of batches are timed, on both sides.

Peak memory: each variant runs alone in a forked child whose peak RSS is reset
just before the dataset is built, so the growth it reports is what building it
and iterating one epoch cost, imports and the ids excluded (the book's child also
pays for copying the pages of the shared Python ints whose reference counts it
touches: a few MB).

``python benchmarks/loader.py [--quick]`` prints its rows; ``run.py`` collects them.
"""

from __future__ import annotations

import sys

from common import (
    Row,
    corpus_ids,
    emit,
    fmt_bytes,
    fmt_time,
    interleaved,
    measure_in_fork,
    peak_rss_supported,
    section_main,
)

SECTION = "loader"


class PrecomputedIds:
    """A stand-in for tiktoken's ``Encoding`` whose ``encode`` returns ids computed before."""

    def __init__(self, ids: list[int]):
        self.ids = ids

    def encode(self, text: str, allowed_special=()) -> list[int]:
        del text, allowed_special
        return self.ids


def book_epoch(ids: list[int], batch_size: int, max_length: int, stride: int) -> int:
    """Builds the book's dataset and loader and iterates one epoch; returns the batch count."""
    from torch.utils.data import DataLoader

    from parity.torch_reference import GPTDatasetV1

    dataset = GPTDatasetV1("", PrecomputedIds(ids), max_length, stride)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)
    return sum(1 for _ in loader)


def ours_epoch(ids, batch_size: int, max_length: int, stride: int) -> int:
    """Builds ``SlidingWindowDataset`` + ``Batcher`` and iterates one shuffled epoch."""
    from flax_embed.data import Batcher, SlidingWindowDataset

    dataset = SlidingWindowDataset(ids, max_length=max_length, stride=stride)
    batcher = Batcher(dataset, batch_size, shuffle=True, seed=0, shard_index=0, shard_count=1)
    return sum(1 for _ in batcher)


def shuffle_index_cost(quick: bool) -> None:
    """Window indices of a shuffled epoch: per index (``index_shuffle``) against the
    whole-epoch permutation the ``Batcher`` built before (``PCG64``), per batch of 8."""
    import numpy as np

    from flax_embed.data import Batcher, SlidingWindowDataset

    batch, windows = 8, 1_000_000 if quick else 10_000_000
    tokens = np.zeros(windows + 1, np.int32)  # stride 1: n windows of 1 token
    batcher = Batcher(
        SlidingWindowDataset(tokens, max_length=1, stride=1), batch, shard_index=0, shard_count=1
    )
    block = 1 << 16  # positions a BatchIterator computes at a time
    times = interleaved(
        {
            "permutation": lambda: np.random.Generator(np.random.PCG64([0, 1])).permutation(
                windows
            ),
            "block": lambda: batcher.epoch_windows(1, 0, block),
            "batch": lambda: batcher.batch_windows(1, 12_345),
        },
        rounds=3 if quick else 5,
    )
    amortized_old = times["permutation"] / (windows // batch)
    amortized_new = times["block"] / (block // batch)
    emit(
        Row(
            SECTION,
            f"shuffled window indices per batch, {windows:,} windows (B={batch})",
            fmt_time(amortized_new),
            f"{fmt_time(amortized_old)} permutation",
            amortized_old / amortized_new,
            note=f"memory: {fmt_bytes(8 * block)} per iterator, any n; the permutation held "
            f"{fmt_bytes(8 * windows)}; one batch computed directly: {fmt_time(times['batch'])}",
        )
    )


def bench(quick: bool) -> None:
    import torch  # noqa: F401  (imported before any measurement, as in a training script)

    shuffle_index_cost(quick)

    batch, max_length = 8, 256
    big, small = (20_000, 2_000) if quick else (1_000_000, 128_000)
    rounds = 2 if quick else 3
    shape = f"B={batch}, T={max_length}"
    big_np, small_np = corpus_ids(big), corpus_ids(small)
    big_list, small_list = big_np.tolist(), small_np.tolist()

    # Memory first: each variant in its own forked child (before anything else allocates).
    memory = {}
    if peak_rss_supported():
        for tokens, stride, ids_np, ids_list in (
            (small, 1, small_np, small_list),
            (big, 128, big_np, big_list),
        ):
            tiny = 4 * max_length
            memory[tokens] = (
                measure_in_fork(
                    book_epoch, ids_list, batch, max_length, stride,
                    warmup=(ids_list[:tiny], batch, max_length, stride),
                ),
                measure_in_fork(
                    ours_epoch, ids_np, batch, max_length, stride,
                    warmup=(ids_np[:tiny], batch, max_length, stride),
                ),
            )  # fmt: skip

    times = interleaved(
        {
            "book": lambda: book_epoch(big_list, batch, max_length, 128),
            "ours": lambda: ours_epoch(big_np, batch, max_length, 128),
        },
        rounds=rounds,
    )
    speedup = times["book"] / times["ours"]
    emit(
        Row(
            SECTION,
            f"build + 1 epoch, {big:,} tokens, stride 128 ({shape})",
            fmt_time(times["ours"]),
            f"{fmt_time(times['book'])} book",
            speedup,
            target="≥ 100x",
            met=None if quick else speedup >= 100,
            note=f"medians of {rounds} interleaved runs, from token ids",
        )
    )
    if not memory:
        emit(Row(SECTION, "peak RSS", "skipped", "", None, note="needs Linux /proc"))
        return
    book, ours = memory[small]
    # The book's stride-1 build is slow (tens of seconds): timed once, in its memory run.
    ours_small = interleaved(
        {"ours": lambda: ours_epoch(small_np, batch, max_length, 1)}, rounds=3
    )["ours"]
    emit(
        Row(
            SECTION,
            f"build + 1 epoch, {small:,} tokens, stride 1 ({shape})",
            fmt_time(ours_small),
            f"{fmt_time(book['seconds'])} book",
            book["seconds"] / ours_small,
            note="book: its one memory run; ours: median of 3",
        )
    )
    token_bytes, batch_bytes = small * 4, 2 * batch * max_length * 4
    windows = small - max_length
    # The token array, the iterator's block of 65,536 window indices (int64) and a few
    # batches, plus 2 MB of slack for the allocator's arenas and page granularity.
    budget = token_bytes + 8 * min(windows, 1 << 16) + 4 * batch_bytes + (2 << 20)
    emit(
        Row(
            SECTION,
            f"peak RSS growth, {small:,} tokens, stride 1",
            fmt_bytes(ours["growth"]),
            f"{fmt_bytes(book['growth'])} book",
            book["growth"] / max(ours["growth"], 1),
            ratio_label="x less",
            target="≈ token array + a few batches",
            met=ours["growth"] <= budget,
            note=f"token array {fmt_bytes(token_bytes)}, "
            f"shuffle block {fmt_bytes(8 * min(windows, 1 << 16))}, "
            f"batch {fmt_bytes(batch_bytes)}; each variant alone in a forked child",
        )
    )
    book, ours = memory[big]
    emit(
        Row(
            SECTION,
            f"peak RSS growth, {big:,} tokens, stride 128",
            fmt_bytes(ours["growth"]),
            f"{fmt_bytes(book['growth'])} book",
            book["growth"] / max(ours["growth"], 1),
            ratio_label="x less",
            note=f"token array {fmt_bytes(big * 4)}",
        )
    )


if __name__ == "__main__":
    sys.exit(section_main(bench, __doc__))
