import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tiktoken

from flax_embed import tokenizer
from flax_embed.tokenizer import (
    ENDOFTEXT_ID,
    GPT2_VOCAB_SIZE,
    TokenizerUnavailableError,
    encode,
    gpt2_tokenizer,
)

# tiktoken's cache names for GPT-2's files: sha1 of their download URLs.
CACHE_NAMES = {
    "vocab.bpe": "6d1cbeee0f20b3d9449abfede4726ed8212e3aee",
    "encoder.json": "6c7ea1a7e38e3a7f062df639a5b80947f075ffe6",
}

TEXTS = [
    "Hello, do you like tea? <|endoftext|> In the sunlit terraces of the palace.",
    "  leading spaces, trailing\ttabs\t\n\nand newlines\n  ",
    "I'm sure they'll've done it; 12345 + 6.02e23 = ?",
    "naïve café — Ünïcödé, 日本語, emoji 🤖🚀 and e\u0301 combining marks",
    "",
]


@pytest.fixture()
def bpe_dir(tmp_path: Path) -> Path:
    """A folder with encoder.json and vocab.bpe, copied from tiktoken's cache."""
    cache = Path(os.environ.get("TIKTOKEN_CACHE_DIR", ""))
    for name, cached in CACHE_NAMES.items():
        if not (cache / cached).is_file():
            pytest.skip("GPT-2 BPE files not in TIKTOKEN_CACHE_DIR")
        shutil.copy(cache / cached, tmp_path / name)
    return tmp_path


@pytest.mark.tokenizer
def test_gpt2_tokenizer_is_tiktokens_gpt2():
    enc = gpt2_tokenizer()
    assert enc.name == "gpt2"
    assert enc.n_vocab == GPT2_VOCAB_SIZE
    assert enc.eot_token == ENDOFTEXT_ID


@pytest.mark.tokenizer
@pytest.mark.parametrize("text", TEXTS)
def test_encode_returns_int32_ids_as_the_book(text):
    ids = encode(text)
    assert ids.dtype == np.int32 and ids.ndim == 1
    expected = tiktoken.get_encoding("gpt2").encode(text, allowed_special={"<|endoftext|>"})
    np.testing.assert_array_equal(ids, np.array(expected, dtype=np.int32))


@pytest.mark.tokenizer
def test_encode_allows_endoftext():
    assert ENDOFTEXT_ID in encode("a <|endoftext|> b")


def test_encode_rejects_non_text():
    with pytest.raises(TypeError, match="str"):
        encode(b"bytes")


@pytest.mark.tokenizer
def test_verdict_has_5145_tokens(verdict_text):
    ids = encode(verdict_text)
    assert len(ids) == 5145
    np.testing.assert_array_equal(ids[:4], [40, 367, 2885, 1464])


@pytest.mark.parametrize("text", TEXTS)
def test_bpe_dir_gives_the_same_ids(bpe_dir, text):
    np.testing.assert_array_equal(encode(text, bpe_dir=bpe_dir), encode(text))


def test_bpe_dir_from_environment(bpe_dir, monkeypatch):
    expected = encode(TEXTS[0])
    monkeypatch.setenv(tokenizer.BPE_DIR_ENV, str(bpe_dir))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(bpe_dir / "nothing-here"))
    assert gpt2_tokenizer() is gpt2_tokenizer(bpe_dir)
    np.testing.assert_array_equal(encode(TEXTS[0]), expected)


def test_bpe_dir_missing_file_says_how_to_provide(tmp_path):
    with pytest.raises(TokenizerUnavailableError, match=r"encoder\.json and vocab\.bpe"):
        gpt2_tokenizer(tmp_path)


def test_bpe_dir_wrong_file_fails_the_hash_check(bpe_dir):
    (bpe_dir / "vocab.bpe").write_text("#version: 0.2\na b\n")
    with pytest.raises(TokenizerUnavailableError, match="sha256"):
        gpt2_tokenizer(bpe_dir)


def test_no_cache_and_no_network_says_how_to_provide(tmp_path, monkeypatch):
    # An empty cache forces a download; this sandbox (like CI) has no route to it,
    # and where a network exists the download succeeds, which is also correct.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(tokenizer.BPE_DIR_ENV, raising=False)
    tokenizer._load.cache_clear()
    try:
        enc = gpt2_tokenizer()
    except TokenizerUnavailableError as e:
        assert "FLAX_EMBED_BPE_DIR" in str(e) and "TIKTOKEN_CACHE_DIR" in str(e)
    else:
        assert enc.n_vocab == GPT2_VOCAB_SIZE
    finally:
        tokenizer._load.cache_clear()
