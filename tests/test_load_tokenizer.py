"""load_tokenizer and flax-embed tokenize --tokenizer: ids equal to each tokenizer's own library."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import numpy as np
import pytest

from flax_embed import cli
from flax_embed.data import SlidingWindowDataset, read_token_file
from flax_embed.data.shards import MANIFEST
from flax_embed.tokenizer import ENCODINGS, TokenizerError, id_dtype, load_tokenizer

DOCS = [
    "It's 2024 -- hello,   world!\n\nThe first document.",
    "  whitespace first\r\nand a half wor",
    "d, über 42 emoji 😀 and 'll contractions  ",
    "",
    "the last one, with <|endoftext|> and </s> written in it",
]


def write_jsonl(path, docs):
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    return path


def tiktoken_file(tmp_path):
    """GPT-2's ranks as a .tiktoken file: with --pattern gpt2 it is GPT-2 again."""
    from flax_embed.tokenizer import gpt2_tokenizer

    enc = load_tokenizer("gpt2")
    ranks = gpt2_tokenizer()._mergeable_ranks
    path = tmp_path / "gpt2.tiktoken"
    path.write_bytes(
        b"".join(
            base64.b64encode(t) + b" %d\n" % r
            for t, r in sorted(ranks.items(), key=lambda kv: kv[1])
        )
    )
    assert enc.n_vocab == len(ranks) + 1
    return path


def available(name):
    try:
        load_tokenizer(name)
    except Exception as e:  # tiktoken's download errors
        pytest.skip(f"{name}: tiktoken cannot load its file offline ({e})")


def library_ids(kind, spec, tok, joined):
    """The tokenizer's own library on the joined documents."""
    if kind == "json":
        from tokenizers import Tokenizer
        from transformers import PreTrainedTokenizerFast

        ids = Tokenizer.from_file(str(spec)).encode_batch([joined], add_special_tokens=False)
        fast = PreTrainedTokenizerFast(tokenizer_file=str(spec))
        assert fast(joined, add_special_tokens=False)["input_ids"] == ids[0].ids
        return np.asarray(ids[0].ids)
    import tiktoken

    if kind == "tiktoken-file":
        from flax_embed.tokenizer import _GPT2_PATTERN, gpt2_tokenizer

        enc = tiktoken.Encoding("f", pat_str=_GPT2_PATTERN,
                                mergeable_ranks=gpt2_tokenizer()._mergeable_ranks,
                                special_tokens={tok.separator: tok.separator_id})  # fmt: skip
    else:
        enc = tiktoken.get_encoding(spec)
    return np.asarray(enc.encode(joined, allowed_special={tok.separator}, disallowed_special=()))


@pytest.fixture(params=["gpt2", *[e for e in ENCODINGS if e != "gpt2"], "tiktoken-file",
                        "bpe-json", "big-json"])  # fmt: skip
def spec(request, tmp_path):
    """(kind, spec, extra CLI args) of each tokenizer kind."""
    name = request.param
    if name == "bpe-json":
        return "json", request.getfixturevalue("bpe_tokenizer_json"), []
    if name == "big-json":
        return "json", request.getfixturevalue("big_tokenizer_json"), []
    if name == "tiktoken-file":
        return "tiktoken-file", tiktoken_file(tmp_path), ["--pattern", "gpt2"]
    available(name)
    return "tiktoken", name, []


@pytest.mark.tokenizer
@pytest.mark.parametrize("out", ["tokens.bin", "shards/"])
def test_tokenize_gives_the_librarys_ids(spec, out, tmp_path, capsys):
    kind, path, extra = spec
    src = write_jsonl(tmp_path / "docs.jsonl", DOCS * 3)
    args = [
        "tokenize",
        str(src),
        "-o",
        str(tmp_path / out),
        "--tokenizer",
        str(path),
        *extra,
        "--workers",
        "2",
    ]
    if out.endswith("/"):
        args += ["--shard-tokens", "37"]
    assert cli.main(args) == 0, capsys.readouterr().err
    tok = load_tokenizer(path, pattern=extra[1] if extra else None)
    expected = library_ids(kind, path, tok, tok.separator.join(DOCS * 3))
    if out.endswith("/"):
        manifest = json.loads((tmp_path / out / MANIFEST).read_text())
        assert manifest["tokenizer"] == tok.identity
        assert manifest["dtype"] == tok.dtype.name == id_dtype(tok.n_vocab).name
        parts = [np.asarray(read_token_file(tmp_path / out / s["name"]))
                 for s in manifest["shards"]]  # fmt: skip
        ids = np.concatenate(parts)
        dataset = SlidingWindowDataset.from_files(tmp_path / out, 8, 8)
        assert dataset.vocab_size == tok.n_vocab
    else:
        ids = np.asarray(read_token_file(tmp_path / out))
        assert ids.dtype == tok.dtype
    np.testing.assert_array_equal(ids, expected)


def test_a_vocabulary_past_uint16_writes_uint32_ids(big_tokenizer_json):
    tok = load_tokenizer(big_tokenizer_json)
    assert (tok.n_vocab, tok.separator, tok.separator_id) == (70001, "</s>", 70000)
    assert tok.dtype == np.dtype("<u4") and tok.encode("the").min() >= 65536


def test_a_trained_bpe_derives_its_separator(bpe_tokenizer_json):
    tok = load_tokenizer(bpe_tokenizer_json)
    assert tok.separator == "<|endoftext|>" and tok.dtype == np.dtype("<u2")
    assert tok.identity["sha256"].startswith("sha256:") and tok.identity["name"] == "tokenizer.json"


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: "no_such_encoding", "unknown tokenizer 'no_such_encoding'"),
        (lambda p: p.write_text('{"model": {"type": "BPE"') and p, "not valid JSON"),
        (lambda p: p.write_text('{"a": 1}') and p, "not a Hugging Face tokenizer.json"),
        (lambda p: p.write_bytes(b"\x00\x01binary\n") and p, "not a .tiktoken line"),
        (lambda p: p.write_bytes(b"IQ== 0\nIg== 1\nIw== ") and p, "truncated .tiktoken"),
        (lambda p: p.write_bytes(b"IQ== 0\nIg== 1\nIw== 1\n") and p, "ranks are not 0..2"),
    ],
)
def test_a_bad_spec_is_one_line_and_exit_2(make, match, tmp_path, capsys):
    spec = make(tmp_path / "tok")
    with pytest.raises(TokenizerError, match=match):
        load_tokenizer(spec)
    out = tmp_path / "out.bin"
    src = write_jsonl(tmp_path / "d.jsonl", DOCS)
    assert cli.main(["tokenize", str(src), "-o", str(out), "--tokenizer", str(spec)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "d.jsonl",
        *(["tok"] if (tmp_path / "tok").exists() else []),
    ]


@pytest.mark.tokenizer
def test_a_separator_outside_the_vocabulary_or_underivable_is_refused(tmp_path):
    from tokenizers import Tokenizer, models

    path = tmp_path / "tokenizer.json"
    Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(path))
    with pytest.raises(TokenizerError, match="pass --separator TOKEN"):
        load_tokenizer(path)
    with pytest.raises(TokenizerError, match="'<nope>' is not in the vocabulary"):
        load_tokenizer(path, separator="<nope>")
    with pytest.raises(TokenizerError, match="not a special token of gpt2"):
        load_tokenizer("gpt2", separator="<nope>")


def test_a_vocabulary_past_uint32_is_refused():
    with pytest.raises(TokenizerError, match="does not fit uint32"):
        id_dtype(2**32 + 1)
    assert id_dtype(2**32) == np.dtype("<u4") and id_dtype(2**16) == np.dtype("<u2")


@pytest.mark.tokenizer
def test_one_folder_takes_one_tokenizer(bpe_tokenizer_json, tmp_path, capsys):
    src = write_jsonl(tmp_path / "d.jsonl", DOCS)
    out = tmp_path / "shards"
    assert cli.main(["tokenize", str(src), "-o", f"{out}/"]) == 0
    before = sorted((p.name, p.read_bytes()) for p in out.iterdir())
    capsys.readouterr()
    code = cli.main(["tokenize", str(src), "-o", f"{out}/", "--tokenizer",
                     str(bpe_tokenizer_json)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "another tokenizer, gpt2" in err and len(err.strip().splitlines()) == 1
    assert sorted((p.name, p.read_bytes()) for p in out.iterdir()) == before


@pytest.mark.tokenizer
def test_from_files_refuses_shards_of_two_tokenizers(bpe_tokenizer_json, tmp_path):
    from flax_embed.data.shards import tokenize_corpus

    src = write_jsonl(tmp_path / "d.jsonl", DOCS * 20)
    a = tokenize_corpus([src], tmp_path / "a", shard_tokens=10**6)
    b = tokenize_corpus([src], tmp_path / "b", shard_tokens=10**6, tokenizer=bpe_tokenizer_json)
    files = [tmp_path / "a" / a["shards"][0]["name"], tmp_path / "b" / b["shards"][0]["name"]]
    with pytest.raises(ValueError, match="one dataset takes one tokenizer's ids"):
        SlidingWindowDataset.from_files(files, 8, 8)


def test_a_tokenizer_pickles_as_its_spec(bpe_tokenizer_json):
    import pickle

    tok = load_tokenizer(bpe_tokenizer_json)
    again = pickle.loads(pickle.dumps(tok))
    assert again.identity == tok.identity
    np.testing.assert_array_equal(again.encode(DOCS[0]), tok.encode(DOCS[0]))


def test_the_data_path_imports_no_jax(bpe_tokenizer_json, tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", DOCS)
    argv = ["tokenize", str(src), "-o", str(tmp_path / "o") + "/", "--tokenizer",
            str(bpe_tokenizer_json)]  # fmt: skip
    code = (
        "import sys, contextlib, io\n"
        "import flax_embed.data\n"
        "from flax_embed.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['tokenize', '--help'])\n"
        f"    assert main({argv!r}) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert (tmp_path / "o" / MANIFEST).is_file()


@pytest.fixture(scope="module")
def metaspace_first_json(tmp_path_factory, sample_text):
    """A real BPE whose pre-tokenizer treats the start of the text apart (Metaspace,
    prepend_scheme="first", as transformers converts Llama's and Mistral's tokenizers)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>", "</s>"])
    tok.train_from_iterator(sample_text.splitlines(), trainer=trainer)
    path = tmp_path_factory.mktemp("metaspace") / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.mark.parametrize("fixture", ["bpe_tokenizer_json", "big_tokenizer_json",
                                     "metaspace_first_json"])  # fmt: skip
@pytest.mark.parametrize("processes", [False, True])
def test_chunks_cut_before_the_separator_give_the_librarys_ids(fixture, processes, request,
                                                               sample_text):  # fmt: skip
    from tokenizers import Tokenizer

    from flax_embed.data.parallel_tokenize import encode_parallel

    path = request.getfixturevalue(fixture)
    tok = load_tokenizer(path)
    joined = tok.separator.join(sample_text.split("\n\n")[:100] + DOCS)
    expected = Tokenizer.from_file(str(path)).encode(joined, add_special_tokens=False).ids
    got = encode_parallel(joined, chunk_chars=16, workers=2, tokenizer=tok, processes=processes)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("fixture", ["bpe_tokenizer_json", "big_tokenizer_json",
                                     "metaspace_first_json"])  # fmt: skip
def test_one_encode_of_joined_documents_gives_the_librarys_ids(fixture, request, sample_text):
    # Where documents are independent, encode() encodes each one alone (one batch call) and
    # joins them by the separator's id; else the text in one call. Either way: the library's
    # ids for the whole text, separators at its ends and side by side included.
    from tokenizers import Tokenizer

    path = request.getfixturevalue(fixture)
    tok = load_tokenizer(path)
    sep = tok.separator
    joined = sep + sep.join(sample_text.split("\n\n")[:100] + DOCS + ["", ""]) + sep
    expected = Tokenizer.from_file(str(path)).encode(joined, add_special_tokens=False).ids
    np.testing.assert_array_equal(tok.encode(joined), expected)


def test_a_tokenizer_that_starts_the_text_apart_runs_as_one_unit(metaspace_first_json, tmp_path):
    from tokenizers import Tokenizer

    from flax_embed.data.shards import tokenize_corpus

    tok = load_tokenizer(metaspace_first_json)
    assert tok.cut_before_separator and not tok.independent_documents
    files = [write_jsonl(tmp_path / f"{i}.jsonl", DOCS[i:] + DOCS) for i in range(3)]
    docs = [d for i in range(3) for d in DOCS[i:] + DOCS]
    manifest = tokenize_corpus(files, tmp_path / "o", shard_tokens=50, segment_bytes=64,
                               tokenizer=tok)  # fmt: skip
    ids = np.concatenate([np.asarray(read_token_file(tmp_path / "o" / s["name"]))
                          for s in manifest["shards"]])  # fmt: skip
    hf = Tokenizer.from_file(str(metaspace_first_json))
    np.testing.assert_array_equal(ids, hf.encode("</s>".join(docs), add_special_tokens=False).ids)


@pytest.mark.tokenizer
def test_gpt2_from_tiktokens_cache_is_tiktokens_gpt2():
    """The fast read of tiktoken's cached files gives tiktoken's own GPT-2, rank for rank."""
    import tiktoken
    from tiktoken_ext.openai_public import gpt2  # tiktoken's own constructor of "gpt2"

    from flax_embed.tokenizer import _encoding_from_tiktoken_cache

    fast = _encoding_from_tiktoken_cache()
    if fast is None:
        pytest.skip("GPT-2's files are not in tiktoken's cache (TIKTOKEN_CACHE_DIR)")
    slow = tiktoken.Encoding(**gpt2())
    assert fast._mergeable_ranks == slow._mergeable_ranks
    assert (fast.name, fast._pat_str, fast._special_tokens, fast.n_vocab) == (
        slow.name, slow._pat_str, slow._special_tokens, slow.n_vocab)  # fmt: skip


def test_a_corrupt_tiktoken_cache_is_left_to_tiktoken(tmp_path, monkeypatch):
    from flax_embed.tokenizer import _CACHE_NAMES, _encoding_from_tiktoken_cache

    for name in _CACHE_NAMES.values():
        (tmp_path / name).write_bytes(b"not GPT-2")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert _encoding_from_tiktoken_cache() is None


@pytest.mark.tokenizer
def test_sidecars_record_the_tokenizer_unless_it_is_gpt2(bpe_tokenizer_json, tmp_path):
    from flax_embed.data.token_files import sidecar_path

    src = write_jsonl(tmp_path / "d.jsonl", DOCS)
    for spec, name in [("gpt2", "g.bin"), (str(bpe_tokenizer_json), "b.bin")]:
        assert (
            cli.main(["tokenize", str(src), "-o", str(tmp_path / name), "--tokenizer", spec]) == 0
        )
    gpt2 = json.loads(sidecar_path(tmp_path / "g.bin").read_text())
    other = json.loads(sidecar_path(tmp_path / "b.bin").read_text())
    assert "tokenizer" not in gpt2  # GPT-2's files are byte for byte what they were
    assert other["tokenizer"] == load_tokenizer(bpe_tokenizer_json).identity
