"""The positional-encoding parity rows (``parity.positions``), unit by unit, on CPU.

Each group of rows is its own test; the sensitivity tests check that the bounds
are tight enough to catch the bugs ports make (a wrong layout, a wrong slope rule,
a float32 reference compared with a float64 one's bound).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from parity import positions as pp
from parity import rope_matrix as rm
from parity.report import CHECK_GROUPS

BACKEND = "cpu"


# The references build their tables in Python loops (10 s at every position to 131,071):
# the default run goes to 4,095; the harness run (CI) and ``flax-embed parity`` to the end.
SHORT_SINUSOIDAL_SIZES = ((1 << 12, 16), *pp.SINUSOIDAL_SIZES[1:])


def _units():
    yield pytest.param(lambda: pp.sinusoidal_rows(BACKEND, sizes=SHORT_SINUSOIDAL_SIZES),
                       id="sinusoidal")  # fmt: skip
    yield pytest.param(lambda: pp.same_cos_sin_rows(BACKEND), id="rotate-same-cos-sin")
    yield pytest.param(lambda: pp.bf16_rotate_rows(BACKEND), id="rotate-bfloat16")
    for case in pp.ROPE_CASES:
        yield pytest.param(lambda c=case: pp.rope_rows(c, BACKEND), id=f"rope-{case.name}")
    yield pytest.param(lambda: pp.gptj_rows(BACKEND), id="rope-gptj")
    yield pytest.param(lambda: pp.neox_rows(BACKEND), id="rope-gpt-neox")
    yield pytest.param(lambda: pp.rope_permute_rows(BACKEND), id="rope-permute")
    yield pytest.param(lambda: pp.alibi_rows(BACKEND), id="alibi")
    for name in rm.FAMILY_CASES:
        yield pytest.param(lambda n=name: rm.family_rows(n, BACKEND), id=f"family-{name}")


@pytest.mark.parametrize("rows", list(_units()))
def test_rows_pass(rows):
    results = rows()
    assert results
    for row in results:
        assert row.passed, f"{row.check}: max |Δ| {row.max_abs_diff}, {row.note}"
        if row.tolerance == 0.0:
            assert row.bit_identical and row.max_abs_diff == 0.0, row


@pytest.mark.harness
def test_sinusoidal_rows_at_every_position_to_the_longest():
    rows = pp.sinusoidal_rows(BACKEND)
    assert {r.check.split()[2] for r in rows} >= {f"{pp.MAX_POSITION + 1}x16"}
    assert all(r.passed for r in rows), [r for r in rows if not r.passed]


def test_the_bit_identical_rows_are_the_same_arithmetic_ones():
    rows = pp.same_cos_sin_rows(BACKEND) + pp.rope_permute_rows(BACKEND)
    exact = {r.check for r in rows if r.tolerance == 0.0}
    assert {r.check for r in rows if "no jit" in r.check} <= exact
    assert "rope_permute twice is the identity" in exact


def test_the_group_is_registered():
    assert pp.positions_checks in CHECK_GROUPS
    assert rm.family_checks in CHECK_GROUPS


def test_bounded_fails_an_entry_over_its_own_bound():
    """A large allowance elsewhere does not hide one entry over its bound."""
    row = pp.bounded("x", BACKEND, np.float32([0.0, 1.0]), np.float32([0.0, 1.5]), [1.0, 0.1])
    assert not row.passed


def test_a_wrong_layout_fails_the_bound():
    """Half-layout RoPE output compared with GPT-J's interleaved: far outside the bound."""
    import torch
    from transformers.models.gptj.modeling_gptj import apply_rotary_pos_emb as gptj_apply
    from transformers.models.gptj.modeling_gptj import create_sinusoidal_positions

    from flax_embed.positions import RoPE

    x = np.random.default_rng(0).standard_normal((1, 8, 2, 16), dtype=np.float32)
    pos = np.arange(8)
    sin, cos = torch.split(create_sinusoidal_positions(8, 16)[torch.from_numpy(pos)[None]], 8, -1)
    ref = gptj_apply(torch.from_numpy(x), sin, cos).numpy()
    ours = np.asarray(RoPE(16, layout="half").apply(x, pos))
    row = pp.bounded("wrong layout", BACKEND, ours, ref, 1e-6)
    assert not row.passed


def test_bloom_slope_rule_differs_from_a_plain_geometric_sequence():
    """12 heads: the paper's rule (8 + every other of 16), not 2^(-8k/12)."""
    from flax_embed.positions import alibi_slopes

    naive = np.float32([2 ** (-8 * k / 12) for k in range(1, 13)])
    assert np.abs(np.asarray(alibi_slopes(12)) - naive).max() > 1e-3
