"""The packing parity rows (``parity.packing``) on CPU, and their sensitivity.

Grain's packers run on a smaller corpus than the report's (600 documents) to keep
the suite fast; the report runs 3,000.
"""

from __future__ import annotations

import jax.numpy as jnp
import pytest

pytest.importorskip("grain")
pytest.importorskip("transformers")

from flax_embed.positions import segment_mask
from parity import packing as pk
from parity.report import CHECK_GROUPS

BACKEND = "cpu"


def leaky_mask(seg):
    """Causal over the whole row: documents see each other (padding still masked)."""
    return segment_mask(jnp.where(seg > 0, 1, 0))


def assert_all_pass(rows):
    assert rows
    for row in rows:
        assert row.passed, f"{row.check}: max |Δ| {row.max_abs_diff}, {row.note}"
        if row.tolerance == 0.0:
            assert row.bit_identical and row.max_abs_diff == 0.0, row


@pytest.mark.tokenizer
def test_rows_equal_grains_three_packers():
    rows = pk.grain_rows(BACKEND, docs=pk.packing_corpus(600))
    assert {r.check.split()[1] for r in rows} == {"first_fit", "best_fit", "concat_split"}
    assert_all_pass(rows)


@pytest.mark.tokenizer
def test_positions_equal_hf_flattening_collator():
    assert_all_pass(pk.hf_flattening_rows(BACKEND, num_rows=50))


@pytest.fixture(scope="module")
def nothing_changes():
    return pk.changes_nothing_rows(BACKEND, num_rows=2)


@pytest.mark.tokenizer
def test_packing_changes_nothing(nothing_changes):
    assert len(nothing_changes) == 5
    assert_all_pass(nothing_changes)


@pytest.mark.tokenizer
def test_positions_that_do_not_restart_fail_the_embedding_and_rope_rows():
    rows = pk.changes_nothing_rows(BACKEND, positions_key="counting", num_rows=2)
    failed = {r.check.split(": ")[1].split(" (")[0] for r in rows if not r.passed}
    assert failed >= {"learned embedding", "sinusoidal embedding", "RoPE q", "RoPE k"}


@pytest.mark.tokenizer
def test_a_leaking_mask_fails_the_attention_row():
    rows = pk.changes_nothing_rows(BACKEND, mask_fn=leaky_mask, num_rows=2)
    (attention,) = [r for r in rows if "attention" in r.check]
    assert not attention.passed


@pytest.mark.tokenizer
def test_hf_llama_attention_with_packed_position_ids_matches():
    assert_all_pass(pk.hf_llama_rows(BACKEND, num_rows=1))


@pytest.mark.tokenizer
def test_a_leaking_mask_fails_the_hf_llama_row():
    (row,) = pk.hf_llama_rows(BACKEND, mask_fn=leaky_mask, num_rows=1)
    assert not row.passed


def test_the_group_is_registered():
    assert pk.packing_checks in CHECK_GROUPS


def test_transformers_derives_the_block_mask_from_packed_position_ids():
    """The HF Llama row passes no attention mask: this is what makes it block-diagonal."""
    import numpy as np
    import torch
    from transformers import LlamaConfig
    from transformers.masking_utils import create_causal_mask

    config = LlamaConfig(hidden_size=8, num_attention_heads=2, num_key_value_heads=2)
    config._attn_implementation = "eager"
    pos = torch.tensor([[0, 1, 2, 0, 1, 0]])
    mask = create_causal_mask(config, torch.zeros(1, 6, 8), None, None, position_ids=pos)
    allowed = (mask[0, 0] == 0).numpy()  # eager: an additive float mask, 0 where attended
    seg = np.array([[1, 1, 1, 2, 2, 3]])
    np.testing.assert_array_equal(allowed, np.asarray(segment_mask(seg))[0, 0])
