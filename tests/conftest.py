"""Shared fixtures: the sample texts. (The tokenizer probe is in the repository's conftest.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

VERDICT = Path(__file__).resolve().parent / "data" / "the-verdict.txt"
"""The book's sample text, Edith Wharton's "The Verdict" (1908, public domain), byte for
byte the ``the-verdict.txt`` of the book's repository (rasbt/LLMs-from-scratch, ch02)."""


@pytest.fixture(scope="session")
def verdict_text() -> str:
    """The book's sample text, "The Verdict", bundled with the tests (20 KB)."""
    return VERDICT.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def sample_text() -> str:
    """The sample text bundled with the package (always present)."""
    import flax_embed

    return flax_embed.sample_text()


@pytest.fixture(scope="session")
def bpe_tokenizer_json(tmp_path_factory, sample_text) -> Path:
    """A real byte-level BPE ``tokenizer.json`` (1,000 ids, ``<|endoftext|>`` added), trained
    offline with the ``tokenizers`` trainer on the bundled sample text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(sample_text.splitlines(), trainer=trainer)
    path = tmp_path_factory.mktemp("bpe") / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture(scope="session")
def big_tokenizer_json(tmp_path_factory, sample_text) -> Path:
    """A real WordLevel ``tokenizer.json`` of 70,001 ids (past uint16), ``</s>`` its EOS: the
    sample text's words get the ids from 65,536 up, so its token files need uint32."""
    import re

    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted(set(re.findall(r"\w+|[^\w\s]", sample_text)))
    vocab = {"[UNK]": 0, **{f"<filler{i}>": i for i in range(1, 65536)}}
    vocab.update({w: 65536 + i for i, w in enumerate(words)})
    vocab.update({f"<filler{i}>": i for i in range(len(vocab), 70000)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(["</s>"])  # id 70000
    path = tmp_path_factory.mktemp("big") / "tokenizer.json"
    tok.save(str(path))
    return path
