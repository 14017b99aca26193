import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax_embed._validation import check_indices_in_range, check_inputs


@pytest.mark.parametrize("array", [np.asarray, jnp.asarray], ids=["numpy", "jax"])
def test_names_the_first_bad_entry_and_where(array):
    ids = np.zeros((3, 5), np.int32)
    ids[1, 4] = 50300
    ids[2, 0] = -1
    with pytest.raises(ValueError, match=r"token_ids\[1, 4\] = 50300 is outside \[0, 50257\)"):
        check_indices_in_range("token_ids", array(ids), 50257)


def test_negative_ids_are_out_of_range():
    with pytest.raises(ValueError, match=r"token_ids\[2\] = -7 .*1 of 3 entries"):
        check_indices_in_range("token_ids", np.array([0, 1, -7]), 10)


@pytest.mark.parametrize("dtype", [np.float32, np.bool_])
def test_non_integer_ids_raise_type_error(dtype):
    with pytest.raises(TypeError, match="token_ids must be an integer array"):
        check_inputs(np.zeros((2, 3), dtype), None, vocab_size=10, context_length=4)


@pytest.mark.parametrize("positions", [None, np.arange(1, 4), np.ones((2, 3), np.int64)])
def test_good_input_passes(positions):
    check_inputs(np.zeros((2, 3), np.int32), positions, vocab_size=10, context_length=4)


@pytest.mark.parametrize(
    ("shape", "positions_shape", "match"),
    [
        ((2, 5), None, "sequence length 5 is longer than the context: context_length=4"),
        ((2, 3, 1), None, r"shape \(B, T\) or \(T,\)"),
        ((2, 3), (4,), r"positions must have shape \(3,\) or \(2, 3\)"),
        ((2, 3), (3, 2), r"positions must have shape"),
    ],
)
def test_bad_shapes_raise_value_error(shape, positions_shape, match):
    positions = None if positions_shape is None else np.zeros(positions_shape, np.int32)
    with pytest.raises(ValueError, match=match):
        check_inputs(np.zeros(shape, np.int32), positions, vocab_size=10, context_length=4)


def test_positions_out_of_context_raise():
    with pytest.raises(ValueError, match=r"positions\[1, 2\] = 4 is outside \[0, 4\)"):
        check_inputs(
            np.zeros((2, 3), np.int32),
            np.array([[0, 1, 2], [1, 2, 4]]),
            vocab_size=10,
            context_length=4,
        )


def test_traced_values_are_not_checked_but_shapes_are():
    def f(ids):
        check_inputs(ids, None, vocab_size=10, context_length=4)
        return ids

    np.testing.assert_array_equal(jax.jit(f)(jnp.full((2, 3), 99)), np.full((2, 3), 99))
    with pytest.raises(ValueError, match="longer than the context"):
        jax.jit(f)(jnp.zeros((2, 5), jnp.int32))
