"""``PackedDataset`` / ``Documents``: conventions, bad input, Batcher and Grain.

Equality with Grain's packers, HF's flattening collator and "packing changes
nothing" are the parity rows (tests/parity/test_packing_parity.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from flax_embed.data import PACKING_METHODS, Batcher, Documents, PackedDataset
from flax_embed.tokenizer import encode


@pytest.fixture(scope="module")
def docs(sample_text) -> Documents:
    """The sample text's paragraphs as GPT-2 ids, cut again at seeded lengths: 300
    documents of 0 to about 200 tokens (real ids; several longer than T = 32)."""
    ids = encode(sample_text).astype(np.int64)
    rng = np.random.Generator(np.random.PCG64(3))
    lengths = rng.integers(0, 90, 300)
    lengths[::37] = 0
    lengths[5::41] = 1
    starts = rng.integers(0, len(ids) - 100, 300)
    return Documents.from_arrays([ids[s : s + n] for s, n in zip(starts, lengths, strict=True)])


METHODS = [(m, ld) for m in PACKING_METHODS for ld in ("split", "truncate")]


def segments(row):
    """``(inputs, targets, positions)`` of each segment of a row, in order."""
    seg = row["inputs_segment_ids"]
    out = []
    for s in range(1, int(seg.max()) + 1):
        cells = np.flatnonzero(seg == s)
        assert cells.size and np.all(np.diff(cells) == 1), "a segment is contiguous"
        out.append(tuple(row[k][cells] for k in ("inputs", "targets", "inputs_positions")))
    return out


@pytest.mark.tokenizer
@pytest.mark.parametrize(("method", "long_documents"), METHODS)
def test_every_segment_is_a_document_piece_with_its_next_tokens(docs, method, long_documents):
    ds = PackedDataset(docs, 32, method=method, num_packing_bins=4,
                       long_documents=long_documents)  # fmt: skip
    rows = ds.gather(np.arange(len(ds)))
    pieces = []
    for b in range(len(ds)):
        row = {k: v[b] for k, v in rows.items()}
        for inputs, targets, positions in segments(row):
            np.testing.assert_array_equal(targets[:-1], inputs[1:])  # next token, same piece
            np.testing.assert_array_equal(positions, np.arange(len(inputs)))
            pieces.append(np.append(inputs, targets[-1]))
        pad = row["inputs_segment_ids"] == 0
        for k in ("inputs", "targets", "inputs_positions", "targets_segment_ids"):
            assert not row[k][pad].any(), f"{k}: padding is 0"
        np.testing.assert_array_equal(row["targets_segment_ids"], row["inputs_segment_ids"])
        np.testing.assert_array_equal(row["targets_positions"], row["inputs_positions"])
    # Every piece lies inside one document: its tokens are a slice of it.
    text = {bytes(np.asarray(d, np.int64).tobytes()) for d in docs}
    joined = b"|".join(text)
    for p in pieces[:50]:
        assert p.astype(np.int64).tobytes() in joined
    pairs = np.maximum(docs.lengths - 1, 0)
    kept = pairs.sum() if long_documents == "split" else np.minimum(pairs, 32).sum()
    assert sum(len(p) - 1 for p in pieces) == ds.packed_pairs == kept
    assert ds.truncated_pairs == pairs.sum() - kept
    assert ds.skipped_documents == int(np.count_nonzero(docs.lengths < 2))
    assert ds.padding_fraction == pytest.approx(1 - kept / (len(ds) * 32))


def test_a_split_document_continues_with_an_overlap_of_one_token():
    doc = np.arange(100, 111)  # 11 tokens, 10 pairs, rows of 4 pairs
    ds = PackedDataset([doc], 4, method="first_fit", num_packing_bins=1)
    rows = ds.gather(np.arange(len(ds)))
    assert rows["inputs"].tolist() == [[100, 101, 102, 103], [104, 105, 106, 107],
                                       [108, 109, 0, 0]]  # fmt: skip
    assert rows["targets"][:, 0].tolist() == [101, 105, 109]
    assert rows["inputs_positions"][2].tolist() == [0, 1, 0, 0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seq_len": 0}, "seq_len"),
        ({"num_packing_bins": 0}, "num_packing_bins"),
        ({"method": "next_fit"}, "method"),
        ({"long_documents": "drop"}, "long_documents"),
    ],
)
def test_bad_options_name_the_argument(kwargs, match):
    args = {"seq_len": 8, **kwargs}
    with pytest.raises(ValueError, match=match):
        PackedDataset([np.arange(5)], **args)


@pytest.mark.parametrize("documents", [[], [np.array([], np.int64), np.array([7])]])
def test_nothing_to_pack_is_an_error(documents):
    with pytest.raises(ValueError, match="documents"):
        PackedDataset(documents, 8)


@pytest.mark.parametrize(
    ("offsets", "match"),
    [([0, 3, 9], "ends at 9, the tokens hold 6"), ([1, 6], r"\[0\] must be 0"),
     ([0, 4, 2, 6], "non-decreasing")],
)  # fmt: skip
def test_a_document_index_that_disagrees_with_its_tokens_names_it(offsets, match):
    with pytest.raises(ValueError, match=f"shard_0.idx.*{match}|{match}"):
        Documents(np.arange(6), np.array(offsets), name="shard_0.idx")


def test_split_at_drops_the_separators():
    docs = Documents.split_at(np.array([1, 2, 9, 3, 9, 9, 4]), separator_id=9)
    assert [d.tolist() for d in docs] == [[1, 2], [3], [], [4]]
    assert docs.offsets.tolist() == [0, 2, 3, 3, 4]


@pytest.mark.tokenizer
def test_rows_are_random_access(docs):
    ds = PackedDataset(docs, 32, method="best_fit")
    batch = ds.gather(np.array([3, 0, len(ds) - 1]))
    for k, v in batch.items():
        assert v.dtype == np.int32 and v.shape == (3, 32)
        np.testing.assert_array_equal(v[0], ds[3][k])
        np.testing.assert_array_equal(v[2], ds[-1][k])
    with pytest.raises(IndexError, match="out of range"):
        ds.gather(np.array([len(ds)]))


@pytest.mark.tokenizer
def test_seed_packs_the_documents_in_a_seeded_order(docs):
    a = PackedDataset(docs, 32, seed=1)
    assert sorted(a.document_order().tolist()) == list(range(len(docs)))
    assert a.packed_pairs == PackedDataset(docs, 32).packed_pairs
    assert not np.array_equal(a[0]["inputs"], PackedDataset(docs, 32)[0]["inputs"])
    np.testing.assert_array_equal(a[0]["inputs"], PackedDataset(docs, 32, seed=1)[0]["inputs"])


# -- Batcher ------------------------------------------------------------------------------


@pytest.mark.tokenizer
def test_batcher_yields_dict_batches_and_shards_split_them(docs):
    ds = PackedDataset(docs, 32)
    whole = next(iter(Batcher(ds, 8, seed=4, shard_index=0, shard_count=1)))
    parts = [next(iter(Batcher(ds, 8, seed=4, shard_index=i, shard_count=2))) for i in (0, 1)]
    for k in whole:
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), whole[k])
    order = Batcher(ds, 8, seed=4, shard_count=1, shard_index=0).window_order(0)
    np.testing.assert_array_equal(whole["inputs"], ds.gather(order[:8])["inputs"])


@pytest.mark.tokenizer
def test_batcher_resumes_exactly_on_another_process_count(docs):
    ds = PackedDataset(docs, 32, method="concat_split")
    one = Batcher(ds, 4, shard_index=0, shard_count=1).iterate(2)
    for _ in range(5):
        next(one)
    state = json.loads(json.dumps(one.get_state()))
    expected = [next(one) for _ in range(3)]
    halves = []
    for i in (0, 1):
        it = Batcher(ds, 4, shard_index=i, shard_count=2).iterate(2)
        it.set_state(state)
        halves.append([next(it) for _ in range(3)])
    for n, batch in enumerate(expected):
        for k in batch:
            np.testing.assert_array_equal(
                np.concatenate([halves[0][n][k], halves[1][n][k]]), batch[k]
            )


@pytest.mark.tokenizer
def test_the_fingerprint_follows_the_content(docs):
    base = PackedDataset(docs, 32)
    assert base.fingerprint() == PackedDataset(docs, 32).fingerprint()
    other_tokens = Documents(docs.tokens + 1, docs.offsets)
    for other in (PackedDataset(docs, 32, method="best_fit"), PackedDataset(docs, 16),
                  PackedDataset(other_tokens, 32), PackedDataset(docs, 32, seed=0)):  # fmt: skip
        assert other.fingerprint() != base.fingerprint()
    state = Batcher(base, 4, shard_index=0, shard_count=1).iterate().get_state()
    it = Batcher(PackedDataset(docs, 16), 4, shard_index=0, shard_count=1).iterate()
    with pytest.raises(ValueError, match=r"fingerprint|dataset"):
        it.set_state(state)


@pytest.mark.tokenizer
def test_grain_map_dataset_reads_the_rows(docs):
    grain = pytest.importorskip("grain")
    ds = PackedDataset(docs, 32, method="best_fit")
    batches = list(grain.MapDataset.source(ds).batch(8))
    assert len(batches) == -(-len(ds) // 8)
    for k, v in ds.gather(np.arange(8)).items():
        np.testing.assert_array_equal(batches[0][k], v)


@pytest.mark.tokenizer
def test_documents_from_a_token_file_split_at_end_of_text(tmp_path, docs):
    from flax_embed.data import read_token_file, write_token_file

    eot = 50256
    stream = np.concatenate([np.append(np.asarray(d), eot) for d in docs[:40]])
    write_token_file(tmp_path / "train.npy", stream)
    from_file = Documents.split_at(read_token_file(tmp_path / "train.npy"), eot)
    assert len(from_file) == 41  # the text after the last separator is one empty document
    expected = PackedDataset(docs[:40], 32).gather(np.arange(4))
    for k, v in PackedDataset(from_file, 32).gather(np.arange(4)).items():
        np.testing.assert_array_equal(v, expected[k])


@pytest.mark.parametrize("bad", [-1, 2**31])
def test_an_id_that_int32_rows_cannot_hold_is_an_error(bad):
    with pytest.raises(ValueError, match=r"tokens\[2\] = .* not an id"):
        PackedDataset([np.array([1, 2, bad, 3], np.int64)], 8)
