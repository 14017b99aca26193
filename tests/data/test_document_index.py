"""The document index of a tokenized folder: exact boundaries, owned and verified files,
``Documents.from_files`` and packing a tokenized corpus."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from flax_embed._io import file_sha256
from flax_embed.data import SlidingWindowDataset, read_token_file
from flax_embed.data import corpus as corpus_module
from flax_embed.data.packing import PACKING_METHODS, Documents, PackedDataset
from flax_embed.data.shards import (
    DOCUMENT_INDEX,
    MANIFEST,
    OutputError,
    tokenize_corpus,
)
from flax_embed.tokenizer import ENDOFTEXT_ID, encode
from tests.data.corpus_files import DOCS, write_jsonl, write_parquet

pytest.importorskip("pyarrow")

# Documents whose text holds the separator's text: each must stay one document.
WITH_SEPARATOR = [
    "x <|endoftext|> y <|endoftext|>",
    "<|endoftext|>",
    "<|endoftext|><|endoftext|>z",
    "no separator here",
]
TEXT_FILE = "a text file <|endoftext|> with the separator inside<|endoftext|>"


@pytest.fixture
def corpus(tmp_path):
    """JSONL, Parquet and a text file; the documents in the order tokenize reads them."""
    src = tmp_path / "src"
    src.mkdir()
    write_jsonl(src / "a.jsonl", DOCS * 3 + WITH_SEPARATOR)
    write_parquet(src / "b.parquet", WITH_SEPARATOR + DOCS[::-1], row_group_size=4)
    (src / "c.txt").write_text(TEXT_FILE)
    docs = DOCS * 3 + WITH_SEPARATOR + WITH_SEPARATOR + DOCS[::-1] + [TEXT_FILE]
    return [str(src / "a.jsonl"), str(src / "b.parquet"), str(src / "c.txt")], docs


def stream(out, manifest) -> np.ndarray:
    return np.concatenate([read_token_file(out / s["name"]) for s in manifest["shards"]])


def rewrite_manifest(out, **changes) -> dict:
    manifest = json.loads((out / MANIFEST).read_text())
    manifest.update(changes)
    manifest = {k: v for k, v in manifest.items() if v is not None}
    (out / MANIFEST).write_text(json.dumps(manifest))
    return manifest


@pytest.mark.tokenizer
@pytest.mark.parametrize("shard_tokens", [7, 10**6])
@pytest.mark.parametrize("segment_bytes", [64, 1 << 20])
def test_document_k_is_the_ids_of_document_k(tmp_path, corpus, shard_tokens, segment_bytes):
    """starts[k] : starts[k + 1] - 1 (the last: to the end) are encode(document k) exactly."""
    paths, docs = corpus
    out = tmp_path / "out"
    manifest = tokenize_corpus(paths, out, shard_tokens=shard_tokens,
                               segment_bytes=segment_bytes, workers=2)  # fmt: skip
    ids = stream(out, manifest)
    starts = np.load(out / DOCUMENT_INDEX)
    assert starts.dtype == np.int64 and starts.shape == (len(docs),)
    assert manifest["version"] == 3
    assert manifest["document_index"] == {"name": DOCUMENT_INDEX, "documents": len(docs),
                                          "sha256": file_sha256(out / DOCUMENT_INDEX)}  # fmt: skip
    ends = np.append(starts[1:] - 1, len(ids))
    for k, doc in enumerate(docs):
        np.testing.assert_array_equal(ids[starts[k] : ends[k]], encode(doc), err_msg=repr(doc))
    assert (ids[starts[1:] - 1] == ENDOFTEXT_ID).all()  # one separator between documents
    assert (ids == ENDOFTEXT_ID).sum() > len(docs) - 1  # ... and more inside documents


@pytest.mark.tokenizer
def test_a_document_holding_the_separator_text_is_not_split(tmp_path):
    """The index comes from the documents, not from the separator ids in the stream."""
    src = tmp_path / "d.jsonl"
    write_jsonl(src, WITH_SEPARATOR)
    tokenize_corpus([str(src)], tmp_path / "o", shard_tokens=5)
    docs = Documents.from_files(tmp_path / "o")
    assert len(docs) == len(WITH_SEPARATOR)
    for k, text in enumerate(WITH_SEPARATOR):
        np.testing.assert_array_equal(docs[k], encode(text))
    assert ENDOFTEXT_ID in docs[0] and docs[1].tolist() == [ENDOFTEXT_ID]
    # Splitting the stream at the separator id would cut them apart:
    manifest = json.loads((tmp_path / "o" / MANIFEST).read_text())
    assert len(Documents.split_at(stream(tmp_path / "o", manifest), ENDOFTEXT_ID)) == 9


@pytest.mark.tokenizer
@pytest.mark.parametrize("block_bytes", [1, 3, 5, 13])
def test_a_separator_cut_between_text_blocks_is_counted_once(tmp_path, monkeypatch, block_bytes):
    """A text file is read in blocks: a separator across two blocks is still inside it."""
    monkeypatch.setattr(corpus_module, "BLOCK_BYTES", block_bytes)
    (tmp_path / "a.txt").write_text(TEXT_FILE)
    (tmp_path / "b.txt").write_text("second")
    out = tmp_path / "o"
    tokenize_corpus([str(tmp_path / "a.txt"), str(tmp_path / "b.txt")], out, shard_tokens=7)
    docs = Documents.from_files(out)
    assert [d.tolist() for d in docs] == [encode(TEXT_FILE).tolist(), encode("second").tolist()]


@pytest.mark.tokenizer
def test_without_separators_there_is_no_index(tmp_path, corpus):
    paths, _ = corpus
    out = tmp_path / "o"
    tokenize_corpus(paths, out, shard_tokens=50)
    assert (out / DOCUMENT_INDEX).is_file()
    manifest = tokenize_corpus(paths, out, shard_tokens=50, eot=False)  # replaces the job
    assert "document_index" not in manifest and not (out / DOCUMENT_INDEX).exists()
    with pytest.raises(ValueError, match=r"manifest.json: no document index .*eot=False"):
        Documents.from_files(out)


@pytest.mark.tokenizer
def test_a_damaged_index_is_rewritten_by_a_rerun(tmp_path, corpus):
    paths, _ = corpus
    out = tmp_path / "o"
    manifest = tokenize_corpus(paths, out, shard_tokens=50)
    good = (out / DOCUMENT_INDEX).read_bytes()
    (out / DOCUMENT_INDEX).write_bytes(good[:-8])  # a half-written index
    with pytest.raises(ValueError, match=r"documents\.npy: checksum disagrees"):
        Documents.from_files(out)
    assert tokenize_corpus(paths, out, shard_tokens=50) == manifest
    assert (out / DOCUMENT_INDEX).read_bytes() == good
    (out / DOCUMENT_INDEX).unlink()
    assert tokenize_corpus(paths, out, shard_tokens=50) == manifest
    assert (out / DOCUMENT_INDEX).read_bytes() == good


@pytest.mark.tokenizer
def test_a_damaged_unit_index_in_work_is_redone(tmp_path, corpus, monkeypatch):
    """An interrupted job resumes; a unit whose index is damaged is tokenized again."""
    from flax_embed.data import shards

    paths, docs = corpus
    out = tmp_path / "o"

    def fails(job):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shards, "run_shard", fails)
    with pytest.raises(OSError):
        tokenize_corpus(paths, out, shard_tokens=50, segment_bytes=64)
    monkeypatch.undo()
    unit_indexes = sorted((out / ".work").glob("part-*.docs.npy"))
    assert len(unit_indexes) > 3
    unit_indexes[1].write_bytes(unit_indexes[1].read_bytes()[:-8])
    tokenize_corpus(paths, out, shard_tokens=50, segment_bytes=64)
    reference = tokenize_corpus(paths, tmp_path / "ref", shard_tokens=50)
    assert (out / DOCUMENT_INDEX).read_bytes() == (tmp_path / "ref" / DOCUMENT_INDEX).read_bytes()
    assert json.loads((out / MANIFEST).read_text())["document_index"] == reference["document_index"]
    assert len(Documents.from_files(out)) == len(docs)


@pytest.mark.tokenizer
def test_a_document_index_not_written_by_the_command_is_refused_and_kept(tmp_path, corpus):
    paths, _ = corpus
    out = tmp_path / "o"
    out.mkdir()
    np.save(out / DOCUMENT_INDEX, np.arange(3))
    before = (out / DOCUMENT_INDEX).read_bytes()
    with pytest.raises(OutputError, match=r"documents\.npy: a document index that no manifest"):
        tokenize_corpus(paths, out, shard_tokens=50)
    assert (out / DOCUMENT_INDEX).read_bytes() == before


@pytest.mark.tokenizer
def test_older_manifests_still_read_as_windows_and_are_redone(tmp_path, corpus):
    """A version 2 folder (no index): the same windows and fingerprint; a rerun adds it."""
    paths, _ = corpus
    out = tmp_path / "o"
    manifest = tokenize_corpus(paths, out, shard_tokens=50)
    new = SlidingWindowDataset.from_files(out, max_length=8, stride=5)
    (out / DOCUMENT_INDEX).unlink()
    rewrite_manifest(out, version=2, document_index=None)
    old = SlidingWindowDataset.from_files(out, max_length=8, stride=5)
    assert old.fingerprint() == new.fingerprint() and len(old) == len(new)
    np.testing.assert_array_equal(old.gather(np.arange(len(old)))[0],
                                  new.gather(np.arange(len(new)))[0])  # fmt: skip
    with pytest.raises(ValueError, match=r"manifest.json: no document index .*version 2"):
        Documents.from_files(out)
    assert tokenize_corpus(paths, out, shard_tokens=50) == manifest
    assert (out / DOCUMENT_INDEX).is_file()


def _replace_index(out, starts) -> None:
    """Writes another index and records its checksum, as a consistent but wrong folder."""
    np.save(out / DOCUMENT_INDEX, np.asarray(starts, np.int64))
    entry = {"name": DOCUMENT_INDEX, "documents": len(starts),
             "sha256": file_sha256(out / DOCUMENT_INDEX)}  # fmt: skip
    rewrite_manifest(out, document_index=entry)


@pytest.mark.tokenizer
@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: np.append(s[:3], s[3] + 1), r"document 3 starts at \d+, but token \d+ is"),
        (lambda s: s[1:], r"documents start at [1-9]"),
        (lambda s: np.append(s[:4], [s[3], s[4]]), "document 4 starts at .* not after"),
        (lambda s: np.append(s[:2], 10**9), "the shards hold"),
    ],
    ids=["off_by_one", "first_not_0", "repeated", "past_the_end"],
)
def test_an_index_that_disagrees_with_its_shards_is_named(tmp_path, corpus, change, match):
    paths, _ = corpus
    out = tmp_path / "o"
    tokenize_corpus(paths, out, shard_tokens=50)
    _replace_index(out, change(np.load(out / DOCUMENT_INDEX)))
    with pytest.raises(ValueError, match=f"documents.npy: .*{match}"):
        Documents.from_files(out)


@pytest.mark.tokenizer
def test_an_index_of_another_size_than_the_manifest_says_is_named(tmp_path, corpus):
    paths, _ = corpus
    out = tmp_path / "o"
    tokenize_corpus(paths, out, shard_tokens=50)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["document_index"]["documents"] += 1
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"documents.npy: int64 \(\d+,\), but the manifest"):
        Documents.from_files(out, verify=False)


@pytest.mark.tokenizer
@pytest.mark.parametrize("method", PACKING_METHODS)
def test_packing_a_tokenized_folder_equals_packing_the_documents_in_memory(tmp_path, corpus,
                                                                           method):  # fmt: skip
    """Documents span shards (37 tokens each); rows, plan and fingerprint are the same."""
    paths, docs = corpus
    out = tmp_path / "o"
    tokenize_corpus(paths, out, shard_tokens=37, segment_bytes=64)
    from_files = Documents.from_files(out)
    in_memory = Documents.from_arrays([encode(d) for d in docs])
    np.testing.assert_array_equal(from_files.offsets, in_memory.offsets)
    kwargs = dict(method=method, num_packing_bins=3, seed=7)
    a = PackedDataset(from_files, 6, **kwargs)
    b = PackedDataset(in_memory, 6, **kwargs)
    rows_a, rows_b = a.gather(np.arange(len(a))), b.gather(np.arange(len(b)))
    assert rows_a.keys() == rows_b.keys()
    for key in rows_a:
        np.testing.assert_array_equal(rows_a[key], rows_b[key], err_msg=key)
    assert a.fingerprint() == b.fingerprint()
    again = pickle.loads(pickle.dumps(a))  # what Grain's worker processes get
    np.testing.assert_array_equal(again.gather(np.arange(len(a)))["inputs"], rows_a["inputs"])


@pytest.mark.tokenizer
@pytest.mark.parametrize("method", PACKING_METHODS)
def test_packing_a_tokenized_folder_equals_grains_packers(tmp_path, corpus, method):
    pytest.importorskip("grain")
    from parity.packing import grain_packed

    paths, _ = corpus
    out = tmp_path / "o"
    tokenize_corpus(paths, out, shard_tokens=37)
    ds = PackedDataset(Documents.from_files(out), 6, method=method, num_packing_bins=3)
    ours, grains = ds.gather(np.arange(len(ds))), grain_packed(ds)
    for key, value in grains.items():
        np.testing.assert_array_equal(ours[key], value, err_msg=key)


@pytest.mark.tokenizer
def test_the_token_view_reads_across_shards(tmp_path, corpus):
    paths, docs = corpus
    out = tmp_path / "o"
    tokenize_corpus(paths, out, shard_tokens=11)
    tokens = Documents.from_files(out).tokens
    expected = np.concatenate([encode(d) for d in docs])
    assert len(tokens) == len(expected)
    np.testing.assert_array_equal(tokens[:], expected)
    np.testing.assert_array_equal(tokens[5:40:3], expected[5:40:3])
    np.testing.assert_array_equal(tokens[np.array([-1, 0, 17])], expected[[-1, 0, 17]])
    with pytest.raises(IndexError):
        tokens[np.array([len(expected)])]


@pytest.mark.tokenizer
def test_the_index_bytes_depend_only_on_the_starts(tmp_path, corpus):
    """np.save's layout: any reader (np.load, Megatron-style tools) takes the file as is."""
    paths, _ = corpus
    tokenize_corpus(paths, tmp_path / "o", shard_tokens=50)
    starts = np.load(tmp_path / "o" / DOCUMENT_INDEX)
    np.save(tmp_path / "same.npy", starts)
    assert (tmp_path / "same.npy").read_bytes() == (tmp_path / "o" / DOCUMENT_INDEX).read_bytes()


@pytest.mark.tokenizer
def test_the_cli_writes_the_index(tmp_path, corpus, capsys):
    from flax_embed import cli

    paths, docs = corpus
    assert cli.main(["tokenize", *paths, "-o", f"{tmp_path / 'o'}/", "--shard-tokens", "40"]) == 0
    capsys.readouterr()
    documents = Documents.from_files(tmp_path / "o")
    assert [d.tolist() for d in documents] == [encode(d).tolist() for d in docs]


@pytest.mark.parametrize("fixture", ["bpe_tokenizer_json", "big_tokenizer_json"])
def test_the_index_is_exact_for_a_tokenizer_json(tmp_path, corpus, fixture, request):
    """Another separator (``</s>`` for the big one) and uint32 ids: the same rule."""
    from flax_embed.tokenizer import load_tokenizer

    spec = request.getfixturevalue(fixture)
    tok = load_tokenizer(str(spec))
    paths, docs = corpus
    manifest = tokenize_corpus(paths, tmp_path / "o", shard_tokens=23, tokenizer=str(spec))
    assert manifest["document_index"]["documents"] == len(docs)
    documents = Documents.from_files(tmp_path / "o")
    for k, doc in enumerate(docs):
        np.testing.assert_array_equal(documents[k], tok.encode(doc), err_msg=repr(doc))


def test_a_separator_not_matched_one_for_one_stops_the_job(tmp_path, big_tokenizer_json):
    """A ``single_word`` separator is not matched next to a word: no exact index, one line."""
    from flax_embed.data.corpus import CorpusError

    config = json.loads(big_tokenizer_json.read_text())
    for token in config["added_tokens"]:
        if token["content"] == "</s>":
            token["single_word"] = True
    spec = tmp_path / "tokenizer.json"
    spec.write_text(json.dumps(config))
    src = write_jsonl(tmp_path / "d.jsonl", ["the", "story"])
    with pytest.raises(
        CorpusError, match=r"d\.jsonl: the tokenizer gave 0 separator ids \(70000\)"
    ):
        tokenize_corpus([str(src)], tmp_path / "o", tokenizer=str(spec))
    assert not (tmp_path / "o").exists()


@pytest.mark.tokenizer
def test_a_state_saved_over_a_tokenized_folder_resumes_on_the_same_rows(tmp_path, corpus):
    """Batcher over the folder's packed rows: resume is exact, and the fingerprint is the
    content's, so the folder and the same documents from memory share states."""
    from flax_embed.data import Batcher

    paths, docs = corpus
    tokenize_corpus(paths, tmp_path / "o", shard_tokens=37)
    ds = PackedDataset(Documents.from_files(tmp_path / "o"), 6, method="best_fit")
    it = Batcher(ds, 4, shard_index=0, shard_count=1).iterate(2)
    for _ in range(3):
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    expected = [next(it) for _ in range(3)]
    in_memory = PackedDataset(Documents.from_arrays([encode(d) for d in docs]), 6,
                              method="best_fit")  # fmt: skip
    again = Batcher(in_memory, 4, shard_index=0, shard_count=1).iterate(2)
    again.set_state(state)
    for batch in expected:
        got = next(again)
        for key in batch:
            np.testing.assert_array_equal(got[key], batch[key], err_msg=key)
