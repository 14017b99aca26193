"""``positions.segment_mask`` and packed ``(B, T)`` positions in ``alibi_bias``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax_embed.positions import alibi_bias, segment_mask

SEG = np.array([[1, 1, 1, 2, 2, 3, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]], np.int32)


def reference_mask(q_seg, kv_seg, causal):
    """Loop form: same non-zero segment, and k <= q (queries aligned to the end)."""
    b, tq = q_seg.shape
    tk = kv_seg.shape[1]
    out = np.zeros((b, 1, tq, tk), bool)
    for i in range(b):
        for q in range(tq):
            for k in range(tk):
                same = q_seg[i, q] == kv_seg[i, k] != 0
                out[i, 0, q, k] = same and (not causal or k <= q + tk - tq)
    return out


@pytest.mark.parametrize("causal", [True, False])
def test_mask_keeps_attention_inside_each_document(causal):
    mask = segment_mask(SEG, causal=causal)
    assert mask.shape == (2, 1, 8, 8) and mask.dtype == jnp.bool_
    np.testing.assert_array_equal(mask, reference_mask(SEG, SEG, causal))


def test_padding_is_never_attended_nor_attends():
    mask = np.asarray(segment_mask(SEG, causal=False))[0, 0]
    assert not mask[:, 6:].any() and not mask[6:, :].any()


def test_keys_of_their_own_under_jit():
    kv = np.array([[1, 1, 1, 2, 2, 3, 3, 0, 0, 3]], np.int32)
    q = kv[:, -4:]
    got = jax.jit(segment_mask)(q, kv)
    np.testing.assert_array_equal(got, reference_mask(q, kv, True))


def test_mismatched_shapes_are_an_error():
    with pytest.raises(ValueError, match="kv_segment_ids"):
        segment_mask(SEG, SEG[:1])


def test_alibi_with_packed_positions_equals_each_document_alone():
    pos = np.array([[0, 1, 2, 0, 1, 0, 0, 0]], np.int32)
    bias = np.asarray(alibi_bias(4, 8, 8, positions=pos))
    assert bias.shape == (1, 4, 8, 8)
    np.testing.assert_array_equal(bias[0, :, :3, :3], alibi_bias(4, 3, 3))
    np.testing.assert_array_equal(bias[0, :, 3:5, 3:5], alibi_bias(4, 2, 2))
    counting = np.asarray(alibi_bias(4, 8, 8, positions=np.arange(8)[None]))
    np.testing.assert_array_equal(counting[0], alibi_bias(4, 8, 8))


@pytest.mark.parametrize(
    "kwargs", [{"positions": np.zeros((1, 5), np.int32)}, {"positions": np.zeros(8, np.int32)},
               {"positions": np.zeros((1, 8), np.int32), "offset": 1}],
)  # fmt: skip
def test_alibi_positions_of_the_wrong_shape_are_an_error(kwargs):
    with pytest.raises(ValueError, match="positions"):
        alibi_bias(4, 8, 8, **kwargs)
