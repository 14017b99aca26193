"""The checks can fail: each one's measure notices a deliberate difference."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import optax

from parity import behaviour, training
from parity.common import compare, ulp_distance
from parity.forward import bf16_tolerance
from parity.gradients import gradient_bound


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_one_ulp_fails_an_exact_row(dtype):
    a = np.linspace(-3, 3, 11, dtype=dtype)
    b = a.copy()
    b[4] = np.nextafter(b[4], dtype(np.inf))
    row = compare("x", "cpu", a, b)
    assert not row.passed and not row.bit_identical and row.max_abs_diff > 0
    assert ulp_distance(a, b) == 1


def test_nan_fails_a_row():
    a = np.ones(3, np.float32)
    b = a.copy()
    b[1] = np.nan
    assert not compare("x", "cpu", a, b, tolerance=1.0).passed


@pytest.mark.parametrize(
    ("a", "b", "ulps"),
    [(0.0, -0.0, 0), (1.0, -1.0, 2 * 0x3F800000), (-1e-45, 1e-45, 2), (1.0, 1.0, 0)],
)
def test_ulp_distance(a, b, ulps):
    assert ulp_distance(np.float32([a]), np.float32([b])) == ulps


def test_bf16_tolerance_is_one_ulp_at_the_largest_output():
    import ml_dtypes

    out = np.array([0.1, -1.5, 1.0], ml_dtypes.bfloat16)
    assert bf16_tolerance(out) == 2.0**-7  # ULP of bfloat16 in [1, 2)


def test_gradient_bound_is_zero_without_duplicates_and_grows_with_them():
    w = np.ones((4, 2), np.float32)
    assert gradient_bound(np.array([0, 1, 2, 3]), w, 5).max() == 0.0
    bound = gradient_bound(np.array([1, 1, 1, 3]), w, 5)
    assert bound[1, 0] == 2 * 2 * 2.0**-24 * 3 and bound[3, 0] == 0.0


@pytest.mark.parametrize(
    "wrong",
    [
        optax.chain(optax.add_decayed_weights(0.1), optax.adam(1e-2)),  # Adam + L2, coupled
        optax.adamw(1e-2, eps=0.0, eps_root=1e-8, weight_decay=0.1),  # eps inside the root
        optax.adamw(1e-2, weight_decay=1e-4),  # optax's default decay, not torch's
    ],
    ids=["coupled-l2", "eps-root", "optax-default-decay"],
)
def test_adamw_semantics_rows_catch_wrong_semantics(wrong):
    expected = training.adamw_reference(
        training.SEMANTICS_PARAM, list(training.SEMANTICS_GRADS), training.SEMANTICS_CONFIG
    )
    got = training.optax_steps(wrong, training.SEMANTICS_PARAM, training.SEMANTICS_GRADS, "cpu")
    assert np.abs(got - expected).max() > 100 * training.SEMANTICS_ATOL


def test_torch_adam_with_weight_decay_is_not_adamw():
    import torch

    cfg = training.SEMANTICS_CONFIG
    expected = training.adamw_reference(
        training.SEMANTICS_PARAM, list(training.SEMANTICS_GRADS), cfg
    )

    def coupled(params):
        return torch.optim.Adam(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

    got = training.torch_steps(coupled, training.SEMANTICS_PARAM, training.SEMANTICS_GRADS)
    assert np.abs(got - expected).max() > 100 * training.SEMANTICS_ATOL


def test_observe_notices_a_clamping_lookup():
    table = np.arange(12, dtype=np.float32).reshape(6, 2)
    ids = np.array([[0, 9]])
    clamped = table[np.clip(ids, 0, 5)]
    assert behaviour.observe(lambda: clamped, table, ids) == "other"
    negative = np.array([[0, -1]])
    assert behaviour.observe(lambda: table[negative % 6], table, negative) == "row V-1"

    def raises():
        raise IndexError("index out of range in self")

    assert behaviour.observe(raises, table, ids) == "IndexError"
