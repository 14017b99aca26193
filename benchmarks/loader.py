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


def bench(quick: bool) -> None:
    import torch  # noqa: F401  (imported before any measurement, as in a training script)

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
    # The token array, the epoch's permutation (int64) and a few batches, plus 2 MB of
    # slack for the allocator's arenas and page granularity.
    budget = token_bytes + 8 * windows + 4 * batch_bytes + (2 << 20)
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
            note=f"token array {fmt_bytes(token_bytes)}, permutation {fmt_bytes(8 * windows)}, "
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
