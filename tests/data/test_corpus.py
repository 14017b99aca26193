"""Corpus readers: each format gives encode(EOT.join(documents)); bad input: one line."""

from __future__ import annotations

import gzip
import json
import os
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flax_embed.data import corpus
from flax_embed.data.corpus import (
    CorpusError,
    DocumentCount,
    TextRange,
    corpus_pieces,
    expand_inputs,
    plan_segments,
)
from flax_embed.data.parallel_tokenize import _next_safe_byte
from flax_embed.tokenizer import ENDOFTEXT, ENDOFTEXT_ID, encode
from tests.data.corpus_files import DOCS, write_jsonl, write_parquet

pytest.importorskip("pyarrow")
pytest.importorskip("zstandard")


def ids_of(inputs, field="text", eot=True, target_bytes=64 << 20):
    segments = plan_segments(expand_inputs(inputs), target_bytes=target_bytes)
    return encode("".join(corpus_pieces(segments, field, eot=eot)))


def reference(docs, eot=True):
    return encode((ENDOFTEXT if eot else "").join(docs))


# --- the property that lets segments be tokenized apart -----------------------------------

_EDGES = st.text(alphabet=" \t\n\r\x0b\x0c\u00a0\u3000'sdlvrtmeA1é😀.,-", max_size=12)


@pytest.mark.tokenizer
@settings(max_examples=300, deadline=None)
@given(st.lists(_EDGES, min_size=1, max_size=5))
def test_endoftext_joins_documents_tokenized_apart(docs):
    # tiktoken splits at <|endoftext|> before its pre-tokenizer: nothing merges across it.
    apart = []
    for i, doc in enumerate(docs):
        if i:
            apart.append([ENDOFTEXT_ID])
        apart.append(encode(doc))
    np.testing.assert_array_equal(np.concatenate(apart), reference(docs))


@pytest.mark.tokenizer
def test_without_endoftext_documents_do_merge():
    # The counter-example that makes --no-eot a single unit of work.
    docs = ["ends in half a wo", "rd"]
    assert len(reference(docs, eot=False)) < len(encode(docs[0])) + len(encode(docs[1]))


# --- formats ------------------------------------------------------------------------------


@pytest.mark.tokenizer
@pytest.mark.parametrize("name", ["c.jsonl", "c.json", "c.jsonl.gz", "c.jsonl.zst", "c.json.zst"])
def test_jsonl_formats(tmp_path, name):
    compression = {"gz": "gz", "zst": "zst"}.get(name.rsplit(".", 1)[-1])
    path = write_jsonl(tmp_path / name, DOCS, compression=compression)
    np.testing.assert_array_equal(ids_of([path]), reference(DOCS))


@pytest.mark.tokenizer
@pytest.mark.parametrize("target_bytes", [1, 7, 50, 1 << 20])
def test_jsonl_byte_ranges_cut_at_lines(tmp_path, target_bytes):
    path = write_jsonl(tmp_path / "c.jsonl", DOCS * 3)
    segments = plan_segments([str(path)], target_bytes=target_bytes)
    assert (len(segments) > 1) == (target_bytes < 1000)
    assert segments[0].start == 0 and segments[-1].stop in (None, path.stat().st_size)
    np.testing.assert_array_equal(ids_of([path], target_bytes=target_bytes), reference(DOCS * 3))


@pytest.mark.tokenizer
@pytest.mark.parametrize("target_bytes", [1, 1 << 20])
def test_parquet_by_row_groups(tmp_path, target_bytes):
    path = write_parquet(tmp_path / "c.parquet", DOCS, row_group_size=5)
    segments = plan_segments([str(path)], target_bytes=target_bytes)
    assert len(segments) == (3 if target_bytes == 1 else 1)
    np.testing.assert_array_equal(ids_of([path], target_bytes=target_bytes), reference(DOCS))


@pytest.mark.tokenizer
def test_field_option(tmp_path):
    jsonl = write_jsonl(tmp_path / "a.jsonl", DOCS[:5], field="content")
    parquet = write_parquet(tmp_path / "b.parquet", DOCS[5:], field="content")
    np.testing.assert_array_equal(ids_of([jsonl, parquet], field="content"), reference(DOCS))


@pytest.mark.tokenizer
def test_text_files_are_one_document_each_with_newlines_translated(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"one\r\ntwo\r")
    (tmp_path / "b.txt.gz").write_bytes(gzip.compress(b"  three "))
    np.testing.assert_array_equal(
        ids_of([tmp_path / "a.txt", tmp_path / "b.txt.gz"]), reference(["one\ntwo\n", "  three "])
    )


@pytest.mark.tokenizer
def test_mixed_folder_and_glob_in_sorted_order(tmp_path):
    (tmp_path / "sub").mkdir()
    write_jsonl(tmp_path / "b.jsonl.zst", DOCS[3:6], compression="zst")
    write_parquet(tmp_path / "sub" / "a.parquet", DOCS[6:])
    write_jsonl(tmp_path / "a.jsonl", DOCS[:3])
    (tmp_path / "notes.md").write_text("not a corpus file")
    (tmp_path / ".hidden.jsonl").write_text("{}")
    expected_order = ["a.jsonl", "b.jsonl.zst", "sub/a.parquet"]
    found = expand_inputs([tmp_path])
    assert [str(p).removeprefix(f"{tmp_path}/") for p in found] == expected_order
    docs = DOCS[:3] + DOCS[3:6] + DOCS[6:]
    np.testing.assert_array_equal(ids_of([tmp_path]), reference(docs))
    assert expand_inputs([str(tmp_path / "*.jsonl*")]) == found[:2]


@pytest.mark.tokenizer
def test_hugging_face_save_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets", reason="the optional `datasets` package")
    ds = datasets.Dataset.from_dict({"text": DOCS, "n": list(range(len(DOCS)))})
    ds.save_to_disk(str(tmp_path / "hf"), num_shards=2)
    segments = plan_segments(expand_inputs([tmp_path / "hf"]))
    assert [s.kind for s in segments] == ["hf", "hf"]
    np.testing.assert_array_equal(ids_of([tmp_path / "hf"]), reference(DOCS))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(CorpusError, match=r"DatasetDict .*dd/train"):
        expand_inputs([tmp_path / "dd"])


@pytest.mark.tokenizer
def test_a_saved_dataset_is_read_without_the_datasets_package(tmp_path):
    # The layout Dataset.save_to_disk writes: state.json naming Arrow IPC stream files.
    import pyarrow as pa

    folder = tmp_path / "saved"
    folder.mkdir()
    names = ["data-00000-of-00002.arrow", "data-00001-of-00002.arrow"]
    for name, part in zip(names, (DOCS[:5], DOCS[5:]), strict=True):
        table = pa.table({"text": part, "n": list(range(len(part)))})
        with (
            pa.OSFile(str(folder / name), "wb") as sink,
            pa.ipc.new_stream(sink, table.schema) as w,
        ):
            for batch in table.to_batches(max_chunksize=2):
                w.write_batch(batch)
    state = {"_data_files": [{"filename": n} for n in names], "_split": None}
    (folder / "state.json").write_text(json.dumps(state))
    np.testing.assert_array_equal(ids_of([folder]), reference(DOCS))
    with pytest.raises(CorpusError, match=r"data-00000-of-00002\.arrow: no column 'body'"):
        ids_of([folder], field="body")


@pytest.mark.tokenizer
def test_no_eot_joins_by_nothing(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", DOCS)
    np.testing.assert_array_equal(ids_of([path], eot=False), reference(DOCS, eot=False))


@pytest.mark.tokenizer
def test_empty_inputs(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n\n")
    (tmp_path / "e.txt").write_text("")
    assert ids_of([tmp_path / "e.jsonl"]).size == 0
    # An empty JSONL file has no document; an empty text file is one (empty) document.
    np.testing.assert_array_equal(
        ids_of([tmp_path / "e.txt", tmp_path / "e.jsonl", tmp_path / "e.txt"]),
        [ENDOFTEXT_ID],
    )


# --- bad input: one line naming the file and the line, row group or byte -----------------


def _jsonl_lines(tmp_path, lines, name="bad.jsonl", compression=None):
    data = ("\n".join(lines) + "\n").encode()
    if compression == "gz":
        data = gzip.compress(data)
    path = tmp_path / name
    path.write_bytes(data)
    return path


GOOD = json.dumps({"text": "fine"})


@pytest.mark.parametrize("target_bytes", [1 << 20, 10])
@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", r"bad\.jsonl: line 4: not valid JSON"),
        ('{"body": "x"}', r"bad\.jsonl: line 4: no field 'text' \(fields: 'body'\); choose one"),
        ('{"text": 42}', r"bad\.jsonl: line 4: field 'text' is not a string but int"),
        ('{"text": null}', r"line 4: field 'text' is not a string but NoneType"),
        ('["text"]', r"line 4: not a JSON object but list"),
        ("[" * 100_000 + "]" * 100_000, r"bad\.jsonl: line 4: JSON nested too deeply"),
    ],
)
def test_bad_jsonl_lines(tmp_path, bad_line, message, target_bytes):
    path = _jsonl_lines(tmp_path, [GOOD, "", GOOD, bad_line, GOOD])
    with pytest.raises(CorpusError, match=message) as e:
        ids_of([path], target_bytes=target_bytes)
    assert "\n" not in str(e.value)


def test_bad_line_in_a_compressed_file(tmp_path):
    path = _jsonl_lines(tmp_path, [GOOD, GOOD, "{oops"], "bad.jsonl.gz", "gz")
    with pytest.raises(CorpusError, match=r"bad\.jsonl\.gz: line 3: not valid JSON"):
        ids_of([path])


@pytest.mark.parametrize("compression", ["gz", "zst"])
def test_truncated_compressed_files(tmp_path, compression):
    path = write_jsonl(tmp_path / f"t.jsonl.{compression}", DOCS * 50, compression=compression)
    path.write_bytes(path.read_bytes()[:-20])
    kind = "gzip" if compression == "gz" else "zstd"
    message = rf"t\.jsonl\.{compression}: corrupt or truncated {kind} data after line \d+"
    with pytest.raises(CorpusError, match=message):
        ids_of([path])


def test_corrupt_zstd(tmp_path):
    (tmp_path / "c.jsonl.zst").write_bytes(b"this is not zstd at all")
    with pytest.raises(CorpusError, match=r"c\.jsonl\.zst: corrupt or truncated zstd data"):
        ids_of([tmp_path / "c.jsonl.zst"])


def test_truncated_parquet(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", DOCS)
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(CorpusError, match=r"t\.parquet: not a readable Parquet file"):
        ids_of([path])


def test_corrupt_parquet_row_group(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", ["x" * 200 + str(i) for i in range(9)])
    data = bytearray(path.read_bytes())
    meta = __import__("pyarrow.parquet", fromlist=["x"]).ParquetFile(path).metadata
    col = meta.row_group(1).column(1)
    start = col.data_page_offset
    data[start + 8 : start + 40] = b"\xff" * 32  # scramble row group 1's page
    path.write_bytes(bytes(data))
    with pytest.raises(CorpusError, match=r"t\.parquet: row group 1"):
        ids_of([path])


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("body", r"no column 'text' \(columns: 'id', 'body'\)"),
        ("nulls", r"row group 1, row 1: field 'text' is null"),
        ("ints", r"column 'text' holds int64, not strings"),
    ],
)
def test_bad_parquet_columns(tmp_path, column, message):
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = {"body": ("body", ["a"] * 9), "nulls": ("text", ["a"] * 4 + [None] + ["b"] * 4),
              "ints": ("text", list(range(9)))}[column]  # fmt: skip
    pq.write_table(pa.table({"id": list(range(9)), values[0]: values[1]}), tmp_path / "b.parquet",
                   row_group_size=3)  # fmt: skip
    with pytest.raises(CorpusError, match=message):
        ids_of([tmp_path / "b.parquet"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("absent.jsonl", r"absent\.jsonl: no such file"),
        ("none-*.jsonl", r"none-\*\.jsonl: no file matches this pattern"),
        ("empty", r"empty: a folder with no \.txt, \.jsonl"),
    ],
)
def test_missing_inputs(tmp_path, spec, message):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match=message):
        ids_of([str(tmp_path / spec)])


def test_not_utf8_names_the_byte(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "BLOCK_BYTES", 3)
    (tmp_path / "l.txt").write_bytes(b"caf\xc3\xa9 caf\xe9 x")
    with pytest.raises(CorpusError, match=r"l\.txt: not UTF-8 text \(byte 9: invalid continuation"):
        ids_of([tmp_path / "l.txt"])


# --- text files as byte ranges, read where they are encoded (TextRange) ------------------

# Bytes of text around the cuts: ASCII whitespace, newlines of each kind, multi-byte
# characters (visible or not), and bytes that are not UTF-8 (a lone lead or continuation
# byte, an overlong form, a truncated sequence).
_TEXT_BYTES = [b" ", b"\t", b"\n", b"\r", b"\r\n", b"a", b"Z9", b".", "é".encode(),
               "日本".encode(), "😀".encode(), "\u00a0".encode(), "\u2028".encode(),
               "\u0301".encode(), ENDOFTEXT.encode()]  # fmt: skip
_BAD_BYTES = [b"\xe9", b"\x80", b"\xc0\xaf", b"\xe2\x82", b"\xf0\x9f\x98", b"\xff"]
_file_bytes = st.lists(st.sampled_from(_TEXT_BYTES), max_size=30).map(b"".join)
_maybe_bad_bytes = st.lists(st.sampled_from(_TEXT_BYTES + _BAD_BYTES), max_size=30).map(b"".join)


def _whole_text(path):
    """The file's text as a text segment reads it (16 bytes at a time), or its error."""
    segment = plan_segments([path])
    try:
        return "".join(corpus_pieces(segment, eot=False))
    except CorpusError as e:
        return e


def _ranges_text(path, nbytes):
    """The file's text read as ``TextRange.split`` parts, or the first part's error."""
    whole = TextRange(path, 0, os.path.getsize(path))
    texts = []
    for part in whole.split(nbytes, _next_safe_byte):
        try:
            texts.append(part.read())
        except CorpusError as e:
            return e
    return "".join(texts)


@settings(max_examples=400, deadline=None)
@given(_maybe_bad_bytes, st.integers(1, 12))
def test_a_text_file_read_in_ranges_is_read_as_whole(data, nbytes):
    # The same text, or the same one-line error naming the same byte, as one reader's.
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "t.txt")
        with open(path, "wb") as f:
            f.write(data)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(corpus, "BLOCK_BYTES", 16)
            whole = _whole_text(path)
        parts = _ranges_text(path, nbytes)
    assert type(parts) is type(whole)
    assert str(parts) == str(whole)


@pytest.mark.tokenizer
@settings(max_examples=300, deadline=None)
@given(_file_bytes)
def test_every_byte_range_cut_keeps_the_ids(data):
    # nbytes=1 cuts at every place _next_safe_byte allows.
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "t.txt")
        with open(path, "wb") as f:
            f.write(data)
        parts = list(TextRange(path, 0, len(data)).split(1, _next_safe_byte))
        ids = [encode(part.read()) for part in parts]
        text = _whole_text(path)
    assert [p.start for p in parts] == [0] + [p.stop for p in parts[:-1]]  # contiguous
    assert parts[-1].stop == len(data)
    joined = np.concatenate(ids) if ids else np.zeros(0, np.int32)
    np.testing.assert_array_equal(joined, encode(text))


def test_byte_range_cuts_are_before_whitespace_after_visible_characters(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("It's 42.  Héllo\r\n\u00a0 wörld\t!".encode())
    parts = TextRange(str(path), 0, path.stat().st_size).split(1, _next_safe_byte)
    # Before " 42", " Héllo" (not after a space), "\r\n" and "\t!"; not before " wörld"
    # (after a no-break space, which is not visible).
    assert [p.start for p in parts] == [0, 4, 8, 16, 27]
    long_run = tmp_path / "ws.txt"  # no cut in many search windows: one range
    long_run.write_bytes(b"x" + b" " * 200_000 + b"y")
    assert len(list(TextRange(str(long_run), 0, 200_002).split(10, _next_safe_byte))) == 1


@pytest.mark.parametrize("block_bytes", [5, 1 << 20])
def test_ranges_count_the_separators_inside_text_files(tmp_path, monkeypatch, block_bytes):
    # The document index tells separators inside a file from those between files by these
    # counts: counted in the bytes, they equal those counted in the text.
    monkeypatch.setattr(corpus, "BLOCK_BYTES", block_bytes)
    texts = [f"a{ENDOFTEXT}b{ENDOFTEXT}{ENDOFTEXT}\r\n", "none", f"{ENDOFTEXT}x"]
    paths = []
    for i, text in enumerate(texts):
        paths.append(tmp_path / f"{i}.txt")
        paths[-1].write_bytes(text.encode())
    segments = plan_segments(expand_inputs(paths))
    counts = []
    for ranges in (False, True):
        counter = DocumentCount()
        pieces = list(corpus_pieces(segments, counter=counter, ranges=ranges))
        counts.append((counter.documents, counter.inner_separators))
    assert counts[0] == counts[1] == (3, {0: 3, 2: 1})
    assert [type(p).__name__ for p in pieces] == ["TextRange", "str", "TextRange", "str",
                                                  "TextRange"]  # fmt: skip


@pytest.mark.parametrize("ranges", [False, True])
def test_a_count_without_separators_counts_the_documents_and_keeps_the_pieces(tmp_path, ranges):
    # A single token file keeps no document index: the separators inside documents are not
    # looked for, and the pieces are the same.
    (tmp_path / "0.txt").write_text(f"a{ENDOFTEXT}b", encoding="utf-8")
    lines = [json.dumps({"text": f"c{ENDOFTEXT}"}), json.dumps({"text": "d"})]
    (tmp_path / "1.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    segments = plan_segments(expand_inputs([tmp_path / "0.txt", tmp_path / "1.jsonl"]))
    found = []
    for separators in (True, False):
        counter = DocumentCount(separators)
        pieces = list(corpus_pieces(segments, counter=counter, ranges=ranges))
        found.append((pieces, counter.documents, counter.inner_separators))
    assert found[0][:2] == found[1][:2] and found[0][1] == 3
    assert (found[0][2], found[1][2]) == ({0: 1, 1: 1}, {})


def test_ranges_only_where_the_text_around_cannot_run_into_them(tmp_path):
    # Without separators, a file's text joins its neighbours': read as text, not as ranges.
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("one")
    b.write_text("two")
    pieces = corpus_pieces(plan_segments([str(a), str(b)]), eot=False, ranges=True)
    assert "".join(pieces) == "onetwo"
    only = corpus_pieces(plan_segments([str(a)]), eot=False, ranges=True)
    assert list(only) == [TextRange(str(a), 0, 3)]


# --- what is an input: inside the folder named, regular files only -----------------------


def _saved_dataset(folder, names):
    """A save_to_disk folder whose state.json names ``names`` (one real Arrow file first)."""
    import pyarrow as pa

    folder.mkdir()
    table = pa.table({"text": DOCS[:3]})
    with pa.OSFile(str(folder / "data-00000.arrow"), "wb") as sink, \
            pa.ipc.new_stream(sink, table.schema) as w:  # fmt: skip
        w.write_table(table)
    state = {"_data_files": [{"filename": n} for n in ["data-00000.arrow", *names]]}
    (folder / "state.json").write_text(json.dumps(state))
    return folder


@pytest.mark.parametrize("name", ["../outside.arrow", "{outside}", "sub/../../outside.arrow",
                                  "link.arrow", "/etc/passwd"])  # fmt: skip
def test_a_saved_dataset_reads_nothing_outside_its_folder(tmp_path, name):
    import pyarrow as pa

    outside = tmp_path / "outside.arrow"
    table = pa.table({"text": ["a secret outside the dataset"]})
    with pa.OSFile(str(outside), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    folder = _saved_dataset(tmp_path / "saved", [name.format(outside=outside)])
    (folder / "link.arrow").symlink_to(outside)
    with pytest.raises(CorpusError, match=r"saved/state\.json: data file .* is not inside the "
                       r"dataset folder; refused$") as e:  # fmt: skip
        ids_of([folder])
    assert "bytes" not in str(e.value) and "size" not in str(e.value)


def test_a_fifo_is_refused_at_once(tmp_path):
    import os
    import signal

    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)

    def hung(signum, frame):
        raise TimeoutError("the FIFO was opened: waiting for a writer")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        with pytest.raises(CorpusError, match=r"pipe\.txt: a FIFO, not a regular file; inputs "
                           "must be regular files$"):  # fmt: skip
            ids_of([tmp_path])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.tokenizer
def test_a_dictionary_encoded_parquet_string_column_is_read(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = DOCS * 3  # repeated values: what dictionary encoding is for
    column = pa.array(docs).dictionary_encode()
    pq.write_table(pa.table({"text": column}), tmp_path / "d.parquet", row_group_size=5,
                   store_schema=True)  # fmt: skip
    assert pa.types.is_dictionary(pq.read_schema(tmp_path / "d.parquet").field("text").type)
    np.testing.assert_array_equal(ids_of([tmp_path / "d.parquet"]), reference(docs))


def test_outputs_are_skipped_in_a_folder_and_refused_by_name(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", DOCS)
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text('{"format": "flax-embed token shards"}')
    (out / "more.jsonl").write_text("")
    assert expand_inputs([tmp_path], exclude=[out]) == [str(tmp_path / "a.jsonl")]
    with pytest.raises(CorpusError, match=r"manifest\.json: is this command's output"):
        expand_inputs([out / "manifest.json"], exclude=[out])
    exclude = [out / "manifest.json"]  # an output file: what is beside it may be input
    assert expand_inputs([tmp_path], exclude=exclude) == [str(tmp_path / "a.jsonl"),
                                                          str(out / "more.jsonl")]  # fmt: skip
