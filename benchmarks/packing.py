"""Packing: ``PackedDataset`` (plan + an epoch of batches) against Grain's first-fit packer.

The same documents (real GPT-2 ids cut at seeded log-normal lengths, median 40
tokens, some longer than a row; 50,000 documents, ``--quick``: 1,000), rows of
``T = 512`` (``--quick``: 128), 32 packing bins, batches of 32 rows:

* ``ours``: ``PackedDataset(docs, T, method="first_fit", num_packing_bins=32)``
  (the whole plan) then every batch of one shuffled epoch through ``Batcher``;
* ``grain``: iterating ``FirstFitPackIterDataset(shuffle_bins=False)`` over a
  ``MapDataset.source`` of the ready ``{"inputs", "targets"}`` elements (building
  them is not timed) and batching its rows with ``np.stack``.

Both run in a forked child each (``common.measure_in_fork``): time and peak RSS
growth; both must produce the same number of rows (their equality, row for row, is
the parity rows' business: ``parity/packing.py``).
"""

from __future__ import annotations

SECTION = "packing"
FULL = {"docs": 50_000, "seq_len": 512}
QUICK = {"docs": 1_000, "seq_len": 128}
BINS, BATCH = 32, 32


def documents(num_docs: int):
    import numpy as np
    from common import corpus_ids

    from flax_embed.data import Documents

    rng = np.random.Generator(np.random.PCG64(0))
    lengths = np.minimum(rng.lognormal(np.log(40), 0.9, num_docs).astype(np.int64), 2000)
    ids = corpus_ids(int(lengths.sum()))
    return Documents(ids, np.concatenate([[0], np.cumsum(lengths)]))


def ours(docs, seq_len: int) -> int:
    from flax_embed.data import Batcher, PackedDataset

    ds = PackedDataset(docs, seq_len, method="first_fit", num_packing_bins=BINS)
    n = 0
    for batch in Batcher(ds, BATCH, drop_last=False, shard_index=0, shard_count=1):
        n += len(batch["inputs"])
    return n


def grain_elements(docs, seq_len: int) -> list:
    import numpy as np

    out = []
    for i in range(len(docs)):
        doc = np.asarray(docs[i], np.int32)
        pieces = [doc[k : k + seq_len + 1] for k in range(0, len(doc) - 1, seq_len)]
        out += [{"inputs": p[:-1], "targets": p[1:]} for p in pieces]
    return out


def grain(elements, seq_len: int) -> int:
    import grain as gr
    import grain.experimental as ge
    import numpy as np

    packed = ge.FirstFitPackIterDataset(
        gr.MapDataset.source(elements).to_iter_dataset(),
        length_struct={"inputs": seq_len, "targets": seq_len},
        num_packing_bins=BINS,
        shuffle_bins=False,
    )
    n, rows = 0, []
    for row in packed:
        rows.append(row)
        if len(rows) == BATCH:
            n += len({k: np.stack([r[k] for r in rows]) for k in row}["inputs"])
            rows = []
    return n + len(rows)


def bench(quick: bool) -> None:
    import numpy as np
    from common import Row, emit, fmt_bytes, fmt_time, measure_in_fork

    from flax_embed.data import PackedDataset

    sizes = QUICK if quick else FULL
    docs, t = documents(sizes["docs"]), sizes["seq_len"]
    elements = grain_elements(docs, t)
    small = documents(50)
    ds = PackedDataset(docs, t, method="first_fit", num_packing_bins=BINS)
    plan_bytes = sum(
        a.nbytes for a in (ds._piece_src, ds._piece_len, ds._piece_offset, ds._row_ptr)
    )
    mine = measure_in_fork(ours, docs, t, warmup=(small, t))
    theirs = measure_in_fork(grain, elements, t, warmup=(grain_elements(small, t), t))
    assert eval(mine["result"]) == eval(theirs["result"]) == len(ds)  # same number of rows
    emit(
        Row(
            SECTION,
            f"first_fit plan + epoch of batches, {len(docs):,} docs, T={t}, {BINS} bins",
            fmt_time(mine["seconds"]),
            f"{fmt_time(theirs['seconds'])} Grain FirstFitPackIterDataset",
            theirs["seconds"] / mine["seconds"],
            target=">= 10x",
            met=theirs["seconds"] / mine["seconds"] >= 10,
            note=f"{len(ds):,} rows, padding {ds.padding_fraction:.1%}; peak RSS growth "
            f"{fmt_bytes(mine['growth'])} ours (plan {fmt_bytes(plan_bytes)}, O(documents)), "
            f"{fmt_bytes(theirs['growth'])} Grain; tokens {fmt_bytes(docs.tokens.nbytes)} "
            f"held by both; {np.int64(ds.num_pieces):,} pieces",
        )
    )


def main() -> int:
    from common import section_main

    return section_main(bench, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
