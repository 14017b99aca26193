import json
import pickle
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from flax_embed._io import file_sha256
from flax_embed.data import Batcher, SlidingWindowDataset, TokenFileDataset, token_files
from flax_embed.data.token_files import (
    TokenFileError,
    TokenFileWriter,
    read_token_file,
    sidecar_path,
    token_dtype,
    write_token_file,
)
from flax_embed.tokenizer import GPT2_VOCAB_SIZE, encode

LAYOUTS = ["tokens.npy", "tokens.bin"]


@pytest.fixture(scope="module")
def ids(sample_text):
    return encode(sample_text)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --- writing and reading back ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("vocab", "dtype"),
    [(50257, np.uint16), (2**16, np.uint16), (2**16 + 1, np.uint32), (100_000, np.uint32)],
)
def test_dtype_is_uint16_when_the_vocabulary_fits(vocab, dtype):
    assert token_dtype(vocab) == dtype


@pytest.mark.tokenizer
@pytest.mark.parametrize("name", LAYOUTS)
@pytest.mark.parametrize("vocab", [GPT2_VOCAB_SIZE, 100_000])
def test_round_trip(tmp_path, ids, name, vocab):
    path = write_token_file(tmp_path / name, ids, vocab_size=vocab)
    back = read_token_file(path, vocab_size=vocab)
    assert isinstance(back, np.memmap)
    assert back.dtype == token_dtype(vocab)
    np.testing.assert_array_equal(back, ids)
    assert leftovers(tmp_path) == []


@pytest.mark.tokenizer
def test_npy_is_a_plain_numpy_file(tmp_path, ids):
    write_token_file(tmp_path / "t.npy", ids)
    loaded = np.load(tmp_path / "t.npy")
    assert loaded.dtype == np.uint16
    np.testing.assert_array_equal(loaded, ids)


@pytest.mark.tokenizer
def test_bin_sidecar_says_dtype_vocab_and_count(tmp_path, ids):
    write_token_file(tmp_path / "t.bin", ids)
    meta = json.loads(sidecar_path(tmp_path / "t.bin").read_text())
    assert meta == {"format": "flax-embed token ids", "dtype": "uint16", "byteorder": "little",
                    "vocab_size": GPT2_VOCAB_SIZE, "count": len(ids), "bytes": 2 * len(ids),
                    "crc32": zlib.crc32(np.asarray(ids, "<u2").tobytes()),
                    "complete": True}  # fmt: skip
    assert (tmp_path / "t.bin").stat().st_size == 2 * len(ids)


@pytest.mark.tokenizer
@pytest.mark.parametrize("name", LAYOUTS)
def test_streamed_writes_equal_one_write(tmp_path, ids, name):
    with TokenFileWriter(tmp_path / name) as writer:
        for part in np.array_split(ids, 7):
            writer.write(part)
        writer.write([])
    assert writer.count == len(ids)
    np.testing.assert_array_equal(read_token_file(tmp_path / name), ids)


@pytest.mark.tokenizer
@pytest.mark.parametrize("name", LAYOUTS)
@pytest.mark.parametrize("vocab", [GPT2_VOCAB_SIZE, 100_000])
def test_the_writers_sha256_is_the_written_files(tmp_path, ids, name, vocab):
    with TokenFileWriter(tmp_path / name, vocab_size=vocab) as writer:
        for part in np.array_split(ids, 3):
            writer.write(part)
    assert writer.sha256 == file_sha256(tmp_path / name)


def test_the_writers_sha256_waits_for_the_commit(tmp_path):
    writer = TokenFileWriter(tmp_path / "t.bin")
    writer.write([1, 2, 3])
    with pytest.raises(RuntimeError, match="not written yet"):
        _ = writer.sha256
    writer.abort()


@pytest.mark.parametrize("name", LAYOUTS)
def test_empty_file(tmp_path, name):
    write_token_file(tmp_path / name, np.zeros(0, np.int32))
    assert read_token_file(tmp_path / name).shape == (0,)


@pytest.mark.tokenizer
def test_int32_npy_from_encode_is_readable(tmp_path, ids):
    np.save(tmp_path / "t.npy", ids)
    np.testing.assert_array_equal(read_token_file(tmp_path / "t.npy"), ids)


# --- atomic writes --------------------------------------------------------------------------


@pytest.mark.parametrize("name", LAYOUTS)
def test_a_bad_id_leaves_no_file_and_names_the_id(tmp_path, name):
    with pytest.raises(ValueError, match=r"token id 50257 at position 3 is outside \[0, 50257\)"):
        write_token_file(tmp_path / name, [1, 2, 3, 50257, 5])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.tokenizer
@pytest.mark.parametrize("name", LAYOUTS)
def test_a_failed_write_keeps_the_old_file(tmp_path, ids, name):
    write_token_file(tmp_path / name, ids)
    with pytest.raises(ValueError, match="position 9"), TokenFileWriter(tmp_path / name) as w:
        w.write(ids[:5])
        w.write([0, 0, 0, 0, -1])
    np.testing.assert_array_equal(read_token_file(tmp_path / name), ids)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("ids_N", "error"),
    [([[1, 2]], ValueError), ([1.5, 2.0], TypeError), (["a"], TypeError)],
)
def test_bad_ids_to_write(tmp_path, ids_N, error):
    with pytest.raises(error):
        write_token_file(tmp_path / "t.npy", ids_N)
    assert list(tmp_path.iterdir()) == []


def test_bad_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"\.npy or \.bin"):
        write_token_file(tmp_path / "t.txt", [1])


# --- bad files ------------------------------------------------------------------------------


def write_raw(path: Path, ids, **sidecar):
    np.asarray(ids, sidecar.pop("raw_dtype", "<u2")).tofile(path)
    meta = {"format": "flax-embed token ids", "dtype": "uint16", "byteorder": "little",
            "vocab_size": GPT2_VOCAB_SIZE, "count": len(ids)} | sidecar  # fmt: skip
    sidecar_path(path).write_text(json.dumps(meta))


@pytest.mark.tokenizer
@pytest.mark.parametrize("cut", [1, 7, 100])
def test_truncated_npy(tmp_path, ids, cut):
    path = write_token_file(tmp_path / "t.npy", ids)
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(TokenFileError, match="truncated"):
        read_token_file(path)


@pytest.mark.tokenizer
def test_npy_with_trailing_bytes(tmp_path, ids):
    path = write_token_file(tmp_path / "t.npy", ids)
    path.write_bytes(path.read_bytes() + b"\0\0")
    with pytest.raises(TokenFileError, match="longer than described"):
        read_token_file(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "not a valid .npy"),
        (b"not numpy at all", "not a valid .npy"),
        (b"\x93NUMPY\x01\x00\x40\x00{'descr': '<u2', 'fortran_", "not a valid .npy"),
    ],
)
def test_corrupt_npy(tmp_path, content, match):
    (tmp_path / "t.npy").write_bytes(content)
    with pytest.raises(TokenFileError, match=match):
        read_token_file(tmp_path / "t.npy")


@pytest.mark.parametrize(
    ("array", "match"),
    [(np.zeros((2, 3), np.uint16), "rank 1"), (np.zeros(4, np.float32), "not a token dtype"),
     (np.zeros(4, ">u2"), "not a token dtype"), (np.zeros(4, np.int64), "not a token dtype")],
)  # fmt: skip
def test_npy_that_is_not_token_ids(tmp_path, array, match):
    np.save(tmp_path / "t.npy", array)
    with pytest.raises(TokenFileError, match=match):
        read_token_file(tmp_path / "t.npy")


@pytest.mark.tokenizer
def test_bin_without_sidecar(tmp_path, ids):
    path = write_token_file(tmp_path / "t.bin", ids)
    sidecar_path(path).unlink()
    with pytest.raises(TokenFileError, match=r"no sidecar t\.bin\.json"):
        read_token_file(path)


@pytest.mark.parametrize(
    ("sidecar", "match"),
    [
        ({"count": 11}, "truncated"),  # the file holds 10 ids
        ({"count": 9}, "longer than described"),
        ({"dtype": "uint32"}, "truncated"),  # uint16 data described as uint32
        ({"raw_dtype": "<u4"}, "longer than described"),  # uint32 data described as uint16
        ({"dtype": "float32"}, "'dtype' must be one of 'int32', 'uint16', 'uint32', got 'float32'"),
        ({"byteorder": "big"}, "byteorder"),
        ({"count": "10"}, "'count' must be an int"),
        ({"format": "something else"}, "not a token-file sidecar"),
        ({"vocab_size": 100_000}, "dtype uint16 cannot hold"),
    ],
)
def test_sidecar_that_disagrees_with_the_file(tmp_path, sidecar, match):
    write_raw(tmp_path / "t.bin", range(10), **sidecar)
    with pytest.raises(TokenFileError, match=match):
        read_token_file(tmp_path / "t.bin")


def test_sidecar_not_json(tmp_path):
    write_raw(tmp_path / "t.bin", range(10))
    sidecar_path(tmp_path / "t.bin").write_text("{oops")
    with pytest.raises(TokenFileError, match="not a JSON sidecar"):
        read_token_file(tmp_path / "t.bin")


def test_bin_written_for_a_larger_vocabulary(tmp_path):
    write_token_file(tmp_path / "t.bin", [1, 2, 3], vocab_size=100_000)
    with pytest.raises(TokenFileError, match="100000-id vocabulary"):
        read_token_file(tmp_path / "t.bin", vocab_size=GPT2_VOCAB_SIZE)


@pytest.mark.parametrize("chunk", [3, 1 << 23])
def test_ids_beyond_the_vocabulary_are_named_with_their_position(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(token_files, "_CHECK_CHUNK_TOKENS", chunk)  # also across chunks
    ids = np.arange(20, dtype=np.uint16)
    ids[13] = 60_000
    np.save(tmp_path / "t.npy", ids)
    with pytest.raises(TokenFileError, match=r"token id 60000 at position 13 is outside"):
        read_token_file(tmp_path / "t.npy")
    assert read_token_file(tmp_path / "t.npy", vocab_size=2**16)[13] == 60_000
    assert read_token_file(tmp_path / "t.npy", check_ids=False)[13] == 60_000  # opted out


def test_negative_ids_in_an_int32_npy(tmp_path):
    np.save(tmp_path / "t.npy", np.array([5, -1, 7], np.int32))
    with pytest.raises(TokenFileError, match="token id -1 at position 1"):
        read_token_file(tmp_path / "t.npy")


def test_ids_beyond_the_sidecar_vocabulary(tmp_path):
    write_raw(tmp_path / "t.bin", [1, 2, 40_000], vocab_size=1000)
    with pytest.raises(
        TokenFileError, match=r"token id 40000 at position 2 is outside \[0, 1000\)"
    ):
        read_token_file(tmp_path / "t.bin")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_token_file(tmp_path / "absent.npy")


# --- SlidingWindowDataset.from_file -----------------------------------------------------------


def all_batches(dataset, **options):
    batcher = Batcher(dataset, shard_index=0, shard_count=1, **options)
    return list(batcher.iter_epoch(0)) + list(batcher.iter_epoch(1))


@pytest.mark.tokenizer
@pytest.mark.parametrize("name", LAYOUTS)
@pytest.mark.parametrize("vocab", [GPT2_VOCAB_SIZE, 100_000])
@pytest.mark.parametrize(("max_length", "stride", "batch_size"), [(4, 4, 8), (16, 3, 40)])
def test_from_file_batches_equal_in_memory_batches(
    tmp_path, ids, name, vocab, max_length, stride, batch_size
):
    path = write_token_file(tmp_path / name, ids, vocab_size=vocab)
    mapped = SlidingWindowDataset.from_file(path, max_length, stride, vocab_size=vocab)
    in_memory = SlidingWindowDataset(ids, max_length, stride)
    assert isinstance(mapped, SlidingWindowDataset)
    assert len(mapped) == len(in_memory)
    options = {"batch_size": batch_size, "shuffle": True, "drop_last": False, "seed": 3}
    for (x, y), (ex, ey) in zip(all_batches(mapped, **options), all_batches(in_memory, **options),
                                strict=True):  # fmt: skip
        assert x.dtype == y.dtype == np.int32
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)
    for i in (0, 5, -1):
        np.testing.assert_array_equal(mapped[i][1], in_memory[i][1])


@pytest.mark.tokenizer
def test_from_file_does_not_copy_the_ids(tmp_path, ids):
    path = write_token_file(tmp_path / "t.npy", ids)
    ds = SlidingWindowDataset.from_file(path, 8, 8)
    assert isinstance(ds.token_ids, np.memmap)
    assert ds.token_ids.dtype == np.uint16
    assert not ds.token_ids.flags.writeable


def test_from_file_checks_the_file(tmp_path):
    np.save(tmp_path / "t.npy", np.array([1, 2, 70_000, 4, 5, 6], np.int32))
    with pytest.raises(TokenFileError, match="token id 70000 at position 2"):
        SlidingWindowDataset.from_file(tmp_path / "t.npy", 2, 1)


def test_from_file_too_short(tmp_path):
    write_token_file(tmp_path / "t.npy", [1, 2, 3])
    with pytest.raises(ValueError, match="too short"):
        SlidingWindowDataset.from_file(tmp_path / "t.npy", 4, 1)


@pytest.mark.tokenizer
def test_pickle_reopens_by_path_without_copying(tmp_path, ids):
    ds = SlidingWindowDataset.from_file(write_token_file(tmp_path / "t.bin", ids), 16, 8)
    blob = pickle.dumps(ds)
    assert len(blob) < 1000
    again = pickle.loads(blob)
    assert isinstance(again, TokenFileDataset)
    np.testing.assert_array_equal(again.gather(np.arange(10))[0], ds.gather(np.arange(10))[0])
    assert "t.bin" in repr(again)


@pytest.mark.tokenizer
def test_fingerprint_equals_the_in_memory_datasets(tmp_path, ids):
    ds = SlidingWindowDataset.from_file(write_token_file(tmp_path / "t.npy", ids), 16, 8)
    from flax_embed.data.fingerprint import dataset_fingerprint

    assert dataset_fingerprint(ds) == dataset_fingerprint(SlidingWindowDataset(ids, 16, 8))


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_iterating_a_large_file_keeps_resident_memory_bounded(tmp_path):
    # 192 MB of ids, read in 4,000 random windows: without giving pages back, the
    # mapping alone would make the whole file resident (~1 MB is mapped per fault).
    rng = np.random.default_rng(0)
    path = tmp_path / "big.bin"
    with TokenFileWriter(path) as writer:
        for _ in range(12):
            writer.write(rng.integers(0, GPT2_VOCAB_SIZE, 8 << 20, dtype=np.uint16))
    ds = SlidingWindowDataset.from_file(path, max_length=256, stride=256, check_ids=False)
    # File pages count as RssFile, or as RssShmem when tmp_path is on tmpfs.
    before = rss_mb("RssFile") + rss_mb("RssShmem")
    batcher = Batcher(ds, batch_size=64, shard_index=0, shard_count=1, seed=1)
    for _, (inputs_BxT, _) in zip(range(60), batcher.iter_epoch(0), strict=False):
        assert inputs_BxT.shape == (64, 256)
    grown = rss_mb("RssFile") + rss_mb("RssShmem") - before
    del ds, batcher
    path.unlink()
    assert grown < 96


@pytest.mark.tokenizer
@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            {"dtype": "garbage"},
            r"'dtype' must be one of 'int32', 'uint16', 'uint32', got 'garbage'",
        ),
        ({"dtype": 5}, r"'dtype' must be a string, got 5"),
        ({"dtype": None}, r"'dtype' must be a string, got None"),  # no default: uint16 or not
        ({"vocab_size": True}, r"'vocab_size' must be an int, got True"),
        ({"count": True}, r"'count' must be an int, got True"),
    ],
    ids=["garbage-dtype", "int-dtype", "no-dtype", "bool-vocab", "bool-count"],
)
def test_a_shards_sidecar_is_read_as_strictly_as_a_token_files(tmp_path, edit, match):
    """Issue 17: through a manifest, a bad sidecar raised TypeError or was defaulted."""
    from flax_embed.data.shards import tokenize_corpus

    (tmp_path / "doc.txt").write_text("a small corpus of one document " * 20)
    tokenize_corpus([tmp_path / "doc.txt"], tmp_path / "out", shard_tokens=64)
    sidecar = sidecar_path(tmp_path / "out" / "tokens-00000.bin")
    meta = {k: v for k, v in json.loads(sidecar.read_text()).items() if k not in edit}
    sidecar.write_text(json.dumps(meta | {k: v for k, v in edit.items() if v is not None}))
    for read in (
        lambda: read_token_file(tmp_path / "out" / "tokens-00000.bin"),
        lambda: SlidingWindowDataset.from_files(tmp_path / "out", 8, 8),
    ):
        with pytest.raises(TokenFileError, match=rf"tokens-00000\.bin\.json: {match}"):
            read()
