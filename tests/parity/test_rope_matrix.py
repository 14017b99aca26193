"""The RoPE coverage matrix (``parity.rope_matrix``): a quick subset, and its sensitivity.

The full run (every family in transformers) is ``python -m parity.rope_matrix
--write-docs``; its last table is docs/results/rope_matrix.md.
"""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from flax_embed import positions as P
from parity import rope_matrix as rm

# The named families run as parity rows (test_positions_parity.py); here the rest of the
# states: a plain family, an ALiBi one, and one whose code is refused.
QUICK = {
    "llama": "equal",
    "bloom": "refused",
    "nanochat": "refused",
    "deepseek_v4": "equal",  # a one-tensor apply_rotary_pos_emb(x, cos, sin), trailing slice
    "glm4_moe": "equal",  # an odd rotary width (21): HF rotates 22 features
    "zamba2+use_mem_rope": "equal",  # attention_head_dim, not Mamba's kv_channels
}


@pytest.mark.parametrize(("model_type", "status"), QUICK.items())
def test_quick_subset(model_type, status):
    row = rm.check(model_type)
    assert row.status == status, row


def test_the_full_list_covers_the_alibi_families_and_the_named_ones():
    types = rm.model_types()
    assert {"bloom", "mpt", "falcon-alibi", "llama", "gemma3", "qwen2_vl", "phi3"} <= set(types)
    assert "modernbert-decoder" in types  # a model type spelled with "-" for its folder's "_"
    assert len(types) > 150


def test_a_wrong_layout_is_reported_as_different(monkeypatch):
    """The harness catches what issue 18 found: Cohere read with the half layout."""
    real = P.RoPE.from_hf_config.__func__

    def half_layout(cls, config, **kw):
        return dataclasses.replace(real(cls, config, **kw), layout="half")

    monkeypatch.setattr(P.RoPE, "from_hf_config", classmethod(half_layout))
    assert rm.check("cohere").status == "DIFFERENT"
