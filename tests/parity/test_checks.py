"""The parity report's checks, run through pytest: every case of every group on CPU.

Each case of the groups below is its own test (groups registered in
``parity.report.CHECK_GROUPS`` by other modules have their own test files).
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("torch")

from parity import behaviour, conversion_checks, forward, gradients, training
from parity.report import CHECK_GROUPS

BACKEND = "cpu"

_OWN_GROUPS = {
    forward.forward_checks,
    conversion_checks.conversion_checks,
    gradients.gradient_checks,
    training.training_checks,
    behaviour.behaviour_checks,
}


def _units():
    yield pytest.param(lambda: forward.loader_rows(BACKEND), id="loader")
    for case in forward.CASES:
        for direction in forward.DIRECTIONS:
            jits = (True,) if case.seq_len > 64 else (True, False)  # no-jit: small cases only
            for jit in jits:
                name = f"forward-{case.name}-{direction}{'' if jit else '-nojit'}"
                marks = [pytest.mark.slow] if case.seq_len > 64 else []
                yield pytest.param(
                    lambda c=case, d=direction, j=jit: forward.forward_rows(c, d, BACKEND, jit=j),
                    id=name.replace(" ", "_"),
                    marks=marks,
                )
    for model in conversion_checks.MODELS:
        yield pytest.param(
            lambda m=model: conversion_checks.state_dict_roundtrip(m, BACKEND),
            id=f"convert-{model}".replace(" ", "_"),
        )
    yield pytest.param(lambda: conversion_checks.safetensors_roundtrips(BACKEND), id="safetensors")
    for case in gradients.GRADIENT_CASES:
        yield pytest.param(
            lambda c=case: gradients.gradient_rows(c, BACKEND),
            id=f"gradient-{case.name}".replace(" ", "_"),
        )
    yield pytest.param(lambda: training.adamw_semantics_rows(BACKEND), id="adamw-semantics")
    yield pytest.param(lambda: training.training_rows(BACKEND), id="adamw-training")
    for name in behaviour.PINNED:
        yield pytest.param(
            lambda n=name: [behaviour._pinned_row(n, behaviour.pinned_ids(n), BACKEND)],
            id=f"pinned-{name}".replace(" ", "_"),
        )


@pytest.mark.tokenizer
@pytest.mark.parametrize("rows", list(_units()))
def test_check_passes(rows):
    results = rows()
    assert results
    for row in results:
        assert row.passed, f"{row.check}: max |Δ| {row.max_abs_diff}, {row.note}"
        if row.pinned is None and row.tolerance == 0.0:
            assert row.bit_identical and row.max_abs_diff == 0.0, row


def test_the_groups_are_registered():
    assert set(CHECK_GROUPS) >= _OWN_GROUPS


@pytest.mark.tokenizer
def test_the_loader_notes_count_batches_in_english():
    notes = [row.note for row in forward.loader_rows(BACKEND)]
    assert all(re.match(r"(1 batch|\d+ batches) of \(inputs, targets\)", n) for n in notes), notes
    assert any(n.startswith("1 batch of") for n in notes)  # the book's defaults: one batch
