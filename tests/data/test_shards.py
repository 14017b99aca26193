"""Sharded token files: exact shards, manifest checks, from_files, raw .bin files, resume."""

from __future__ import annotations

import itertools
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from flax_embed._io import file_sha256
from flax_embed.data import SlidingWindowDataset, read_token_file, write_token_file
from flax_embed.data import shards as shards_module
from flax_embed.data.corpus import CorpusError
from flax_embed.data.shards import (
    MANIFEST,
    LocalRunner,
    OutputError,
    read_manifest,
    tokenize_corpus,
    tokenize_file,
)
from flax_embed.data.token_files import TokenFileError, sidecar_path
from flax_embed.tokenizer import ENDOFTEXT, encode
from tests.data.corpus_files import DOCS, write_jsonl, write_parquet

pytest.importorskip("pyarrow")


@pytest.fixture
def inputs(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_jsonl(src / "a.jsonl", DOCS * 4)
    write_parquet(src / "b.parquet", DOCS[::-1] * 2, row_group_size=4)
    (src / "c.txt").write_text("a text file is one document ")
    docs = DOCS * 4 + DOCS[::-1] * 2 + ["a text file is one document "]
    return [str(src / "a.jsonl"), str(src / "b.parquet"), str(src / "c.txt")], docs


def shard_ids(out, manifest):
    return [np.asarray(read_token_file(out / s["name"])) for s in manifest["shards"]]


@pytest.mark.tokenizer
@pytest.mark.parametrize("shard_tokens", [5, 37, 100, 10**6])  # 5: hundreds of shards
@pytest.mark.parametrize("segment_bytes", [64, 1 << 20])
def test_shards_are_the_ids_cut_every_n_tokens(tmp_path, inputs, shard_tokens, segment_bytes):
    paths, docs = inputs
    out = tmp_path / "out"
    manifest = tokenize_corpus(paths, out, shard_tokens=shard_tokens, workers=2,
                               segment_bytes=segment_bytes)  # fmt: skip
    expected = encode(ENDOFTEXT.join(docs))
    parts = shard_ids(out, manifest)
    np.testing.assert_array_equal(np.concatenate(parts), expected)
    assert [len(p) for p in parts[:-1]] == [shard_tokens] * (len(parts) - 1)
    assert 0 < len(parts[-1]) <= shard_tokens
    assert manifest == json.loads((out / MANIFEST).read_text())
    assert manifest["tokens"] == len(expected) and manifest["dtype"] == "uint16"
    assert manifest["vocab_size"] == 50257 and manifest["shard_tokens"] == shard_tokens
    assert [i["path"] for i in manifest["inputs"]] == paths
    assert [i["bytes"] for i in manifest["inputs"]] == [
        __import__("os").path.getsize(p) for p in paths
    ]
    for k, entry in enumerate(manifest["shards"]):
        assert entry["name"] == f"tokens-{k:05d}.bin"
        assert entry["sha256"] == file_sha256(out / entry["name"])
        assert sidecar_path(out / entry["name"]).is_file()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


@pytest.mark.tokenizer
def test_segmenting_does_not_change_the_bytes(tmp_path, inputs):
    paths, _ = inputs
    a = tokenize_corpus(paths, tmp_path / "a", shard_tokens=50, segment_bytes=64)
    b = tokenize_corpus(paths, tmp_path / "b", shard_tokens=50, workers=1)
    assert a == b
    for s in a["shards"]:
        assert (tmp_path / "a" / s["name"]).read_bytes() == (
            tmp_path / "b" / s["name"]
        ).read_bytes()


@pytest.mark.tokenizer
def test_no_eot(tmp_path, inputs):
    paths, docs = inputs
    manifest = tokenize_corpus(paths, tmp_path / "o", shard_tokens=64, eot=False,
                               segment_bytes=64)  # fmt: skip
    expected = encode("".join(docs))
    np.testing.assert_array_equal(np.concatenate(shard_ids(tmp_path / "o", manifest)), expected)


# --- from_files ---------------------------------------------------------------------------


@pytest.mark.tokenizer
@pytest.mark.parametrize(("max_length", "stride"), [(4, 1), (16, 5), (37, 37), (64, 200)])
def test_from_files_equals_one_dataset_over_the_concatenation(tmp_path, max_length, stride):
    ids = encode(ENDOFTEXT.join(DOCS * 20))
    cuts = [0, 3, 50, 51, 200, len(ids)]  # a 1-token file, windows across several files
    paths = []
    for k, (a, b) in enumerate(itertools.pairwise(cuts)):
        paths.append(write_token_file(tmp_path / f"t{k}.{'bin' if k % 2 else 'npy'}", ids[a:b]))
    ds = SlidingWindowDataset.from_files(paths, max_length, stride)
    ref = SlidingWindowDataset(ids, max_length, stride)
    assert len(ds) == len(ref)
    for i in [*range(len(ref)), -1]:
        for x, y in zip(ds[i], ref[i], strict=True):
            np.testing.assert_array_equal(x, y)
            assert x.dtype == np.int32
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(ref), 40)
    for x, y in zip(ds.gather(idx), ref.gather(idx), strict=True):
        np.testing.assert_array_equal(x, y)
    again = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(again.gather(idx)[0], ref.gather(idx)[0])
    with pytest.raises(IndexError):
        ds[len(ref)]


@pytest.mark.tokenizer
def test_from_files_with_a_manifest_and_the_batcher(tmp_path, inputs):
    from flax_embed.data import Batcher

    paths, docs = inputs
    manifest = tokenize_corpus(paths, tmp_path / "o", shard_tokens=100)
    ids = encode(ENDOFTEXT.join(docs))
    for target in (tmp_path / "o", tmp_path / "o" / MANIFEST):
        ds = SlidingWindowDataset.from_files(target, 32, 16)
        ref = SlidingWindowDataset(ids, 32, 16)
        got = list(Batcher(ds, batch_size=4, shuffle=True, seed=3))
        want = list(Batcher(ref, batch_size=4, shuffle=True, seed=3))
        assert len(got) == len(want) > 0
        for (x, y), (u, v) in zip(got, want, strict=True):
            np.testing.assert_array_equal(x, u)
            np.testing.assert_array_equal(y, v)
    assert len(manifest["shards"]) > 2


@pytest.mark.tokenizer
def test_a_shard_that_disagrees_with_the_manifest_is_named(tmp_path, inputs):
    paths, _ = inputs
    out = tmp_path / "o"
    tokenize_corpus(paths, out, shard_tokens=100)
    shard = out / "tokens-00001.bin"
    data = bytearray(shard.read_bytes())
    data[10] ^= 1  # same size, other ids
    shard.write_bytes(bytes(data))
    with pytest.raises(TokenFileError, match=r"tokens-00001\.bin: checksum disagrees"):
        SlidingWindowDataset.from_files(out, 8, 8)
    with pytest.raises(TokenFileError, match=r"tokens-00001\.bin: corrupt: its CRC-32"):
        SlidingWindowDataset.from_files(out, 8, 8, verify=False)  # the sidecar's CRC-32
    SlidingWindowDataset.from_files(out, 8, 8, verify=False, check_ids=False)  # size agrees
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["shards"][2]["tokens"] += 1
    manifest["tokens"] += 1  # the total agrees: the shard's size does not
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(TokenFileError, match=r"tokens-00002\.bin: size disagrees"):
        SlidingWindowDataset.from_files(out, 8, 8, verify=False)
    (out / "tokens-00002.bin").unlink()
    with pytest.raises(TokenFileError, match=r"tokens-00002\.bin: shard missing"):
        SlidingWindowDataset.from_files(out, 8, 8, verify=False)
    (out / MANIFEST).write_text("{}")
    with pytest.raises(TokenFileError, match="not a token-shard manifest"):
        read_manifest(out)


# --- nanoGPT's raw .bin files -------------------------------------------------------------


@pytest.mark.tokenizer
def test_raw_bin_needs_an_explicit_dtype(tmp_path):
    ids = encode(ENDOFTEXT.join(DOCS)).astype(np.uint16)
    ids.tofile(tmp_path / "train.bin")  # what nanoGPT's prepare.py does
    with pytest.raises(TokenFileError, match=r"no sidecar.*dtype='uint16'"):
        read_token_file(tmp_path / "train.bin")
    got = read_token_file(tmp_path / "train.bin", dtype="uint16")
    np.testing.assert_array_equal(got, ids)
    assert got.dtype == np.uint16
    ds = SlidingWindowDataset.from_file(tmp_path / "train.bin", 8, 4, dtype="uint16")
    ref = SlidingWindowDataset(ids, 8, 4)
    np.testing.assert_array_equal(
        ds.gather(np.arange(len(ref)))[0], ref.gather(np.arange(len(ref)))[0]
    )
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(ds))[3][0], ref[3][0])
    both = SlidingWindowDataset.from_files([tmp_path / "train.bin"] * 2, 8, 4, dtype="uint16")
    assert len(both) == len(SlidingWindowDataset(np.concatenate([ids, ids]), 8, 4))
    (tmp_path / "odd.bin").write_bytes(b"\x01\x00\x02")
    with pytest.raises(TokenFileError, match=r"3 bytes is not a whole number of uint16 ids"):
        read_token_file(tmp_path / "odd.bin", dtype="uint16")
    with pytest.raises(ValueError, match="dtype must be one of"):
        read_token_file(tmp_path / "train.bin", dtype="float32")
    np.array([50257], np.uint16).tofile(tmp_path / "big.bin")
    with pytest.raises(TokenFileError, match="outside"):
        read_token_file(tmp_path / "big.bin", dtype="uint16")


def test_dtype_must_agree_with_a_file_that_records_it(tmp_path):
    write_token_file(tmp_path / "t.bin", [1, 2, 3])
    np.testing.assert_array_equal(read_token_file(tmp_path / "t.bin", dtype="uint16"), [1, 2, 3])
    with pytest.raises(TokenFileError, match="holds uint16 ids, not the dtype='uint32'"):
        read_token_file(tmp_path / "t.bin", dtype="uint32")


# --- resume and failures ------------------------------------------------------------------


class CountingRunner(LocalRunner):
    """A local runner that counts its work and can stop after ``stop_after`` units."""

    def __init__(self, stop_after=None):
        super().__init__(workers=1)
        self.units, self.shards, self.stop_after = [], [], stop_after

    def run_units(self, jobs, progress):
        for i, result in super().run_units(jobs, progress):
            if self.stop_after is not None and len(self.units) == self.stop_after:
                raise KeyboardInterrupt
            self.units.append(i)
            yield i, result

    def run_shards(self, jobs):
        for k, result in super().run_shards(jobs):
            self.shards.append(k)
            yield k, result


@pytest.mark.tokenizer
def test_an_interrupted_job_resumes(tmp_path, inputs):
    paths, docs = inputs
    out = tmp_path / "o"
    first = CountingRunner(stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        tokenize_corpus(paths, out, shard_tokens=60, segment_bytes=200, runner=first)
    assert not (out / MANIFEST).exists()
    assert (out / ".work").is_dir()
    second = CountingRunner()
    manifest = tokenize_corpus(paths, out, shard_tokens=60, segment_bytes=200, runner=second)
    units = len(json.loads((out / ".work" / "plan.json").read_text())["units"]) if (
        out / ".work").exists() else None  # fmt: skip
    assert units is None  # cleaned up
    assert first.units == [0, 1] and 0 not in second.units and 1 not in second.units
    np.testing.assert_array_equal(np.concatenate(shard_ids(out, manifest)),
                                  encode(ENDOFTEXT.join(docs)))  # fmt: skip


@pytest.mark.tokenizer
def test_a_rerun_skips_valid_shards_and_redoes_a_corrupt_one(tmp_path, inputs):
    paths, _ = inputs
    out = tmp_path / "o"
    manifest = tokenize_corpus(paths, out, shard_tokens=60)
    again = CountingRunner()
    assert tokenize_corpus(paths, out, shard_tokens=60, runner=again) == manifest
    assert again.units == [] and again.shards == []  # complete: nothing redone
    (out / "tokens-00002.bin").write_bytes(b"\0" * (out / "tokens-00002.bin").stat().st_size)
    fix = CountingRunner()
    assert tokenize_corpus(paths, out, shard_tokens=60, runner=fix) == manifest
    assert fix.shards == list(range(len(manifest["shards"])))  # the .work records were gone
    other = tokenize_corpus(paths, out, shard_tokens=1000)  # other options: a new job
    assert len(other["shards"]) < len(manifest["shards"])
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MANIFEST, "documents.npy"] + [s["name"] for s in other["shards"]]
        + [s["name"] + ".json" for s in other["shards"]]
    )  # fmt: skip


@pytest.mark.tokenizer
def test_resume_after_an_interrupted_shard_stage(tmp_path, inputs, monkeypatch):
    paths, docs = inputs
    out = tmp_path / "o"
    real = shards_module.run_shard
    calls = []

    def flaky(job):
        calls.append(job.path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(job)

    monkeypatch.setattr(shards_module, "run_shard", flaky)
    with pytest.raises(OSError):
        tokenize_corpus(paths, out, shard_tokens=60)
    assert not (out / MANIFEST).exists()
    monkeypatch.setattr(shards_module, "run_shard", real)
    second = CountingRunner()
    manifest = tokenize_corpus(paths, out, shard_tokens=60, runner=second)
    assert second.units == [] and second.shards[:1] == [2]  # shards 0 and 1 were kept
    np.testing.assert_array_equal(np.concatenate(shard_ids(out, manifest)),
                                  encode(ENDOFTEXT.join(docs)))  # fmt: skip


@pytest.mark.tokenizer
@pytest.mark.parametrize("pre_existing", [False, True])
@pytest.mark.parametrize("line", ['{"text": 1}', "[" * 100_000 + "]" * 100_000])
def test_bad_input_leaves_nothing(tmp_path, inputs, pre_existing, line):
    paths, _ = inputs
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n' + line + "\n")
    out = tmp_path / "o"
    if pre_existing:
        out.mkdir()
    with pytest.raises(CorpusError, match=r"bad\.jsonl: line 2"):
        tokenize_corpus([*paths, str(bad)], out, shard_tokens=10)
    assert out.exists() == pre_existing
    if pre_existing:
        assert list(out.iterdir()) == []


# --- one file: the job with one shard (tokenize_file) ------------------------------------


@pytest.mark.tokenizer
@pytest.mark.parametrize("name", ["t.bin", "t.npy"])
@pytest.mark.parametrize("eot", [True, False])
@pytest.mark.parametrize("segment_bytes", [64, 1 << 20])  # many units (staged), or one per file
def test_a_single_file_holds_the_shards_ids(tmp_path, inputs, name, eot, segment_bytes):
    paths, _ = inputs
    kwargs = dict(eot=eot, workers=2, segment_bytes=segment_bytes)
    manifest = tokenize_corpus(paths, tmp_path / "d", shard_tokens=50, **kwargs)
    target = tmp_path / "f" / name
    target.parent.mkdir()
    result = tokenize_file(paths, target, **kwargs)
    np.testing.assert_array_equal(read_token_file(target),
                                  np.concatenate(shard_ids(tmp_path / "d", manifest)))  # fmt: skip
    assert result["tokens"] == manifest["tokens"] and result["inputs"] == manifest["inputs"]
    assert result["shards"] == [{"name": name, "tokens": manifest["tokens"],
                                 "sha256": file_sha256(target)}]  # fmt: skip
    expected = [name, name + ".json"] if name.endswith(".bin") else [name]
    assert sorted(p.name for p in target.parent.iterdir()) == expected  # no staging left


@pytest.mark.tokenizer
@pytest.mark.parametrize("segment_bytes", [1 << 20, 1])
def test_one_unit_is_written_in_place_several_are_staged_beside(tmp_path, segment_bytes,
                                                               monkeypatch):  # fmt: skip
    # Three small files: one unit together, unless a unit must hold 1 byte or more.
    texts = [f"document {i}" for i in range(3)]
    paths = []
    for i, text in enumerate(texts):
        (tmp_path / f"{i}.txt").write_text(text)
        paths.append(str(tmp_path / f"{i}.txt"))
    target = tmp_path / "out" / "t.bin"
    target.parent.mkdir()
    written = []
    real = shards_module.run_unit

    def spy(job, progress=None):
        written.append(job.part)
        return real(job, progress)

    monkeypatch.setattr(shards_module, "run_unit", spy)
    tokenize_file(paths, target, segment_bytes=segment_bytes)
    if segment_bytes > 1:
        assert written == [str(target)]  # no copy: the unit is the file
    else:
        assert len(written) == 3  # parts in a temporary folder of ours beside the file
        folders = {Path(p).parent for p in written}
        assert len(folders) == 1 and folders.pop().name.startswith(".t.bin.flax-embed-")
    np.testing.assert_array_equal(read_token_file(target), encode(ENDOFTEXT.join(texts)))
    assert sorted(p.name for p in target.parent.iterdir()) == ["t.bin", "t.bin.json"]


@pytest.mark.tokenizer
@pytest.mark.parametrize("name", ["t.bin", "t.npy"])
@pytest.mark.parametrize("spec", ["gpt2", "bpe_tokenizer_json"])
def test_staged_and_in_place_files_are_the_same_bytes(tmp_path, inputs, name, spec, request):
    paths, _ = inputs
    tokenizer = spec if spec == "gpt2" else request.getfixturevalue(spec)
    files = []
    for segment_bytes in (64, 1 << 30):  # many units, copied; one unit, written in place
        target = tmp_path / str(segment_bytes) / name
        target.parent.mkdir()
        tokenize_file(paths, target, segment_bytes=segment_bytes, tokenizer=tokenizer)
        files.append({p.name: p.read_bytes() for p in target.parent.iterdir()})
    assert files[0] == files[1]


@pytest.mark.tokenizer
@pytest.mark.parametrize("error", [KeyboardInterrupt, CorpusError])
def test_a_failed_single_file_job_leaves_the_old_file_and_no_staging(tmp_path, inputs, error):
    paths, _ = inputs
    target = tmp_path / "out" / "t.bin"
    target.parent.mkdir()
    write_token_file(target, np.arange(5))
    before = {p.name: p.read_bytes() for p in target.parent.iterdir()}
    if error is KeyboardInterrupt:
        with pytest.raises(KeyboardInterrupt):
            tokenize_file(paths, target, segment_bytes=64, runner=CountingRunner(stop_after=2))
    else:
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"text": "ok"}\n{"text": 1}\n')
        with pytest.raises(CorpusError, match=r"bad\.jsonl: line 2"):
            tokenize_file([*paths, str(bad)], target, segment_bytes=64)
    assert {p.name: p.read_bytes() for p in target.parent.iterdir()} == before


@pytest.mark.tokenizer
def test_a_killed_runs_staging_folder_goes_with_the_next_write(tmp_path, inputs):
    import subprocess
    import sys

    paths, _ = inputs
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / f".t.npy.flax-embed-{dead.stdout.strip()}-0123abcd.tmp"
    stale.mkdir()
    (stale / "part-00000.bin").write_bytes(b"\0" * 8)
    tokenize_file(paths, tmp_path / "t.npy", segment_bytes=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "t.npy"]


def test_a_single_file_takes_only_npy_or_bin(tmp_path, inputs):
    with pytest.raises(OutputError, match=r"t\.txt: the output must end in \.npy or \.bin"):
        tokenize_file(inputs[0], tmp_path / "t.txt")
    assert not (tmp_path / "t.txt").exists()


# --- the output folder is the job's: ownership, lock, identity of inputs ------------------


FOREIGN = {
    ".work/important.txt": "notes the user keeps",
    "manifest.json": '{"format": "flax-embed token shards", "shards": []}',
    "tokens-00099.bin": "not a shard of ours",
}


@pytest.mark.tokenizer
@pytest.mark.parametrize("foreign", sorted(FOREIGN))
@pytest.mark.parametrize("bad_input", [False, True])
def test_a_folder_with_files_not_ours_is_refused_and_kept(tmp_path, inputs, foreign, bad_input):
    paths, _ = inputs
    out = tmp_path / "o"
    (out / foreign).parent.mkdir(parents=True)
    (out / foreign).write_text(FOREIGN[foreign])
    if bad_input:
        (tmp_path / "bad.jsonl").write_text('{"text": 1}\n')
        paths = [*paths, str(tmp_path / "bad.jsonl")]
    with pytest.raises(shards_module.OutputError, match=rf"o/{foreign.split('/')[0]}: .*not "
                       "written by flax-embed tokenize; move it away") as e:  # fmt: skip
        tokenize_corpus(paths, out, shard_tokens=60)
    assert "\n" not in str(e.value)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == sorted(
        {foreign, foreign.split("/")[0]})  # fmt: skip
    assert (out / foreign).read_text() == FOREIGN[foreign]


@pytest.mark.tokenizer
def test_files_not_named_like_ours_are_left_alone(tmp_path, inputs):
    paths, _ = inputs
    out = tmp_path / "o"
    out.mkdir()
    (out / "README.md").write_text("mine")
    first = tokenize_corpus(paths, out, shard_tokens=60)
    tokenize_corpus(paths, out, shard_tokens=1000)  # a new job: the old shards go
    assert (out / "README.md").read_text() == "mine"
    assert len(first["shards"]) > 1 and not (out / "tokens-00001.bin").exists()


@pytest.mark.tokenizer
def test_a_second_writer_is_refused_naming_the_holder(tmp_path, inputs):
    paths, _ = inputs
    out = tmp_path / "o"
    out.mkdir()
    busy = rf"o: in use by another flax-embed tokenize \(pid {os.getpid()} on .*; lock .*\.lock\)$"
    with shards_module._locked(out), pytest.raises(shards_module.OutputError, match=busy):
        tokenize_corpus(paths, out, shard_tokens=60)  # _locked: what a running job holds
    assert list(out.iterdir()) == []  # the lock file goes with its holder
    tokenize_corpus(paths, out, shard_tokens=60)


def _edit_in_place(path, old, new):
    """Rewrites ``path`` at the same size, its mtime one second later (or restored)."""
    data = path.read_bytes()
    assert data.count(old) and len(old) == len(new)
    st = path.stat()
    path.write_bytes(data.replace(old, new))
    return st


@pytest.mark.tokenizer
@pytest.mark.parametrize("verify_inputs", [False, True])
def test_an_input_edited_in_place_is_tokenized_again(tmp_path, inputs, verify_inputs):
    paths, docs = inputs
    out = tmp_path / "o"
    tokenize_corpus(paths, out, shard_tokens=60, verify_inputs=verify_inputs)
    st = _edit_in_place(tmp_path / "src" / "c.txt", b"text file", b"TEXT FILE")
    if verify_inputs:  # the same size and mtime: only the sha256 sees it
        os.utime(tmp_path / "src" / "c.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        os.utime(tmp_path / "src" / "c.txt", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    manifest = tokenize_corpus(paths, out, shard_tokens=60, verify_inputs=verify_inputs)
    docs = [*docs[:-1], "a TEXT FILE is one document "]
    np.testing.assert_array_equal(np.concatenate(shard_ids(out, manifest)),
                                  encode(ENDOFTEXT.join(docs)))  # fmt: skip


@pytest.mark.tokenizer
def test_a_failed_rerun_keeps_the_finished_output(tmp_path, inputs):
    paths, _ = inputs
    out = tmp_path / "o"
    manifest = tokenize_corpus(paths, out, shard_tokens=60)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": 1}\n')
    with pytest.raises(CorpusError, match=r"bad\.jsonl: line 2"):
        tokenize_corpus([*paths, str(bad)], out, shard_tokens=7)  # other shards too
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert len(SlidingWindowDataset.from_files(out, 4, 4)) == (manifest["tokens"] - 5) // 4 + 1


@pytest.mark.tokenizer
def test_a_killed_swap_is_finished_by_the_next_run(tmp_path, inputs, monkeypatch):
    paths, docs = inputs
    out = tmp_path / "o"
    tokenize_corpus(paths, out, shard_tokens=60)
    real = os.replace
    calls = []

    def dies_on_the_third_rename(src, dst):
        calls.append(dst)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(src, dst)

    monkeypatch.setattr(shards_module.os, "replace", dies_on_the_third_rename)
    with pytest.raises(KeyboardInterrupt):
        tokenize_corpus(paths, out, shard_tokens=25)
    monkeypatch.setattr(shards_module.os, "replace", real)
    manifest = tokenize_corpus(paths, out, shard_tokens=25)
    assert manifest["shard_tokens"] == 25 and not (out / ".work").exists()
    np.testing.assert_array_equal(np.concatenate(shard_ids(out, manifest)),
                                  encode(ENDOFTEXT.join(docs)))  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MANIFEST, "documents.npy"]
        + [n for s in manifest["shards"] for n in (s["name"], s["name"] + ".json")]
    )


@pytest.mark.tokenizer
def test_an_output_folder_inside_an_input_folder_is_not_read_back(tmp_path):
    src = tmp_path / "d5"
    src.mkdir()
    write_jsonl(src / "a.jsonl", DOCS)
    first = tokenize_corpus([src], src / "out", shard_tokens=40)
    second = tokenize_corpus([src], src / "out", shard_tokens=40)
    assert second == first and first["tokens"] == len(encode(ENDOFTEXT.join(DOCS)))


@pytest.mark.tokenizer
def test_inputs_beside_the_output_in_its_folder_are_read(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", DOCS)  # tokenize a.jsonl -o ./ from its folder
    first = tokenize_corpus([tmp_path / "a.jsonl"], tmp_path, shard_tokens=40)
    assert tokenize_corpus([tmp_path], tmp_path, shard_tokens=40) == first  # shards not read


@pytest.mark.tokenizer
def test_a_sidecar_edited_by_hand_is_repaired_by_a_rerun(tmp_path, inputs):
    paths, _ = inputs
    out = tmp_path / "o"
    manifest = tokenize_corpus(paths, out, shard_tokens=60)
    sidecar = sidecar_path(out / "tokens-00001.bin")
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "crc32": meta["crc32"] ^ 1}))
    with pytest.raises(TokenFileError, match=r"tokens-00001\.bin: its sidecar's crc32"):
        SlidingWindowDataset.from_files(out, 4, 4)
    again = CountingRunner()
    assert tokenize_corpus(paths, out, shard_tokens=60, runner=again) == manifest
    assert again.shards  # redone, not reported as done
    SlidingWindowDataset.from_files(out, 4, 4)


@pytest.mark.tokenizer
@pytest.mark.parametrize("damage", ["no sidecar", "incomplete", "truncated"])
def test_a_damaged_work_part_is_redone(tmp_path, inputs, damage):
    paths, docs = inputs
    out = tmp_path / "o"
    with pytest.raises(KeyboardInterrupt):
        tokenize_corpus(paths, out, shard_tokens=60, segment_bytes=200,
                        runner=CountingRunner(stop_after=2))  # fmt: skip
    part = out / ".work" / "part-00001.bin"
    if damage == "no sidecar":
        sidecar_path(part).unlink()
    elif damage == "incomplete":
        meta = json.loads(sidecar_path(part).read_text())
        sidecar_path(part).write_text(json.dumps({**meta, "complete": False}))
    else:
        part.write_bytes(part.read_bytes()[:-2])
    again = CountingRunner()
    manifest = tokenize_corpus(paths, out, shard_tokens=60, segment_bytes=200, runner=again)
    assert 1 in again.units and 0 not in again.units
    np.testing.assert_array_equal(np.concatenate(shard_ids(out, manifest)),
                                  encode(ENDOFTEXT.join(docs)))  # fmt: skip


# --- manifests are checked before anything is read ----------------------------------------


def _edit_manifest(out, change):
    manifest = json.loads((out / MANIFEST).read_text())
    change(manifest)
    (out / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.tokenizer
def test_a_manifest_that_lists_a_shard_twice_is_refused(tmp_path, inputs):
    out = tmp_path / "o"
    tokenize_corpus(inputs[0], out, shard_tokens=60)
    _edit_manifest(out, lambda m: m.update(shards=[m["shards"][0]] * 2,
                                           tokens=2 * m["shards"][0]["tokens"]))  # fmt: skip
    with pytest.raises(TokenFileError, match=r"manifest\.json: lists the shard tokens-00000\.bin "
                       "twice"):  # fmt: skip
        SlidingWindowDataset.from_files(out, 4, 4)


@pytest.mark.tokenizer
def test_a_manifest_whose_total_disagrees_is_refused(tmp_path, inputs):
    out = tmp_path / "o"
    tokenize_corpus(inputs[0], out, shard_tokens=60)
    _edit_manifest(out, lambda m: m.update(tokens=m["tokens"] + 1))
    with pytest.raises(TokenFileError, match=r"manifest\.json: 'tokens' is \d+, but its shards "
                       r"hold \d+ tokens in all"):  # fmt: skip
        SlidingWindowDataset.from_files(out, 4, 4)


@pytest.mark.tokenizer
def test_a_shard_symlinked_outside_the_folder_is_refused(tmp_path, inputs):
    out = tmp_path / "o"
    tokenize_corpus(inputs[0], out, shard_tokens=60)
    elsewhere = tmp_path / "elsewhere.bin"
    (out / "tokens-00001.bin").rename(elsewhere)
    (out / "tokens-00001.bin").symlink_to(elsewhere)
    with pytest.raises(TokenFileError, match=r"tokens-00001\.bin: resolves outside the "
                       "manifest's folder"):  # fmt: skip
        SlidingWindowDataset.from_files(out, 4, 4)


def test_a_manifest_nested_too_deeply_is_named(tmp_path):
    (tmp_path / MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(TokenFileError, match=r"manifest\.json: not a token-shard manifest \(JSON "
                       "nested too deeply\\)"):  # fmt: skip
        SlidingWindowDataset.from_files(tmp_path, 4, 4)


# --- a resume state belongs to its corpus and window options ------------------------------


def _state_after_one_batch(dataset):
    from flax_embed.data import Batcher

    it = Batcher(dataset, batch_size=2, shuffle=True, seed=3).iterate(1)
    next(it)
    return json.loads(json.dumps(it.get_state()))


@pytest.mark.parametrize("suffix", [".bin", ".npy"])  # a sidecar's CRC-32, or the ids' hash
@pytest.mark.parametrize("other", ["corpus", "windows"])
def test_a_state_is_refused_over_another_corpus_or_windows(tmp_path, other, suffix):
    from flax_embed.data import Batcher

    a, b = tmp_path / "a", tmp_path / "b"
    for folder, seed in ((a, 0), (b, 1)):
        ids = np.random.default_rng(seed).integers(0, 50257, 400)
        folder.mkdir()
        write_token_file(folder / f"x{suffix}", ids[:250])
        write_token_file(folder / f"y{suffix}", ids[250:])
    files_a = [a / f"x{suffix}", a / f"y{suffix}"]
    state = _state_after_one_batch(SlidingWindowDataset.from_files(files_a, 9, 10))
    if other == "corpus":
        there = SlidingWindowDataset.from_files([b / f"x{suffix}", b / f"y{suffix}"], 9, 10)
    else:  # the same files, another max_length: still 40 windows
        there = SlidingWindowDataset.from_files(files_a, 8, 10)
    assert len(there) == 40
    with pytest.raises(ValueError, match="saved from another dataset"):
        Batcher(there, batch_size=2, shuffle=True, seed=3).iterate(1).set_state(state)
    same = SlidingWindowDataset.from_files(files_a, 9, 10)
    Batcher(same, batch_size=2, shuffle=True, seed=3).iterate(1).set_state(state)


@pytest.mark.tokenizer
def test_a_state_saved_over_a_manifest_is_refused_over_another(tmp_path, inputs):
    paths, _ = inputs
    tokenize_corpus(paths, tmp_path / "a", shard_tokens=60)
    state = _state_after_one_batch(SlidingWindowDataset.from_files(tmp_path / "a", 8, 8))
    reversed_paths = [paths[1], paths[0], paths[2]]  # other ids, the same number of them
    tokenize_corpus(reversed_paths, tmp_path / "b", shard_tokens=60)
    there = SlidingWindowDataset.from_files(tmp_path / "b", 8, 8)
    from flax_embed.data import Batcher

    with pytest.raises(ValueError, match="saved from another dataset"):
        Batcher(there, batch_size=2, shuffle=True, seed=3).iterate(1).set_state(state)
