"""The Linen ≡ NNX ≡ torch rows of the parity report, on CPU."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from parity.linen_nnx import linen_nnx_checks


@pytest.fixture(scope="module")
def rows():
    return linen_nnx_checks("cpu")


@pytest.mark.tokenizer
def test_forward_rows_are_bit_identical_in_float32(rows):
    forward = [r for r in rows if "forward" in r.check]
    assert len(forward) == 3
    for r in forward:
        assert r.dtype == "float32" and r.tolerance == 0.0
        assert r.bit_identical and r.max_abs_diff == 0.0, r


@pytest.mark.tokenizer
def test_attend_rows(rows):
    (between_apis,) = [r for r in rows if r.check.startswith("linen≡nnx attend")]
    assert between_apis.bit_identical, between_apis
    (vs_torch,) = [r for r in rows if r.check.startswith("attend vs torch")]
    assert 0.0 < vs_torch.tolerance < 1e-2
    assert vs_torch.passed, vs_torch


@pytest.mark.tokenizer
def test_every_row_passes(rows):
    assert [r.check for r in rows if not r.passed] == []


def test_the_group_is_registered_in_the_report():
    from parity.report import CHECK_GROUPS

    assert linen_nnx_checks in CHECK_GROUPS
