"""Host-side checks of token ids and positions.

JAX does not raise for an out-of-range gather: it returns NaN rows, clamps or
wraps, depending on the mode. These checks run on concrete arrays before the
lookup so that bad input is reported the way torch reports it, with more detail.
Under ``jax.jit`` the values are not known; see ``InputEmbedding`` for the
checked path (``jax.experimental.checkify``).
"""

from __future__ import annotations

import numpy as np
from jax.core import Tracer

__all__ = [
    "check_ids_1d",
    "check_positive_int",
    "first_out_of_range",
    "check_index_dtype",
    "check_indices_in_range",
    "check_inputs",
    "check_module_options",
    "is_concrete",
]


def is_concrete(x) -> bool:
    """Whether ``x``'s values are known now (not a tracer inside ``jit``/``grad``)."""
    # A global array spread over several hosts is not a tracer, but its values are not
    # all here: it is checked like a traced one (shapes only).
    return not isinstance(x, Tracer) and getattr(x, "is_fully_addressable", True)


def check_positive_int(
    name: str, value: int, *, minimum: int = 1, maximum: int | None = None
) -> int:
    """``value`` as an int: the one integer check of flax-embed.

    TypeError unless ``value`` is an int or NumPy integer (not a bool); ValueError
    outside ``[minimum, maximum]``.

    >>> check_positive_int("batch_size", 0)
    Traceback (most recent call last):
    ValueError: batch_size must be at least 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")
    return int(value)


def check_ids_1d(name: str, ids_N: np.ndarray) -> None:
    """Raises unless ``ids_N`` is a rank-1 array of integers (an empty one of any dtype is).

    Raises:
      ValueError: another rank. TypeError: a non-integer dtype.
    """
    if ids_N.ndim != 1:
        raise ValueError(f"{name} must have rank 1, got shape {ids_N.shape}")
    if ids_N.size and not np.issubdtype(ids_N.dtype, np.integer):
        raise TypeError(f"{name} must be integers, got dtype {ids_N.dtype}")


def check_index_dtype(name: str, x) -> None:
    """Raises TypeError unless ``x`` is an array of integers (bool is not accepted)."""
    if not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be an integer array (NumPy or JAX), got {type(x).__name__}")
    dtype = np.dtype(x.dtype)
    if not np.issubdtype(dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {dtype}")


def first_out_of_range(values: np.ndarray, upper: int) -> tuple[int, int] | None:
    """``(flat index, count)`` of the entries of ``values`` outside ``[0, upper)``.

    Returns None when there are none: then it costs two reductions and no temporary
    array, so that checking good ids, the common case, stays cheap.
    """
    if values.size == 0 or (values.min() >= 0 and values.max() < upper):
        return None
    bad = (values < 0) | (values >= upper)
    return int(np.argmax(bad)), int(bad.sum())


def check_indices_in_range(name: str, x, upper: int) -> None:
    """Raises ValueError naming the first entry of ``x`` outside ``[0, upper)``.

    ``x`` must be concrete. The error names the value and its index, e.g.
    ``token_ids[3, 1] = 50300 is outside [0, 50257)``.
    """
    values = np.asarray(x)
    found = first_out_of_range(values, upper)
    if found is not None:
        flat, count = found
        where = np.unravel_index(flat, values.shape)
        index = ", ".join(str(int(i)) for i in where)
        raise ValueError(
            f"{name}[{index}] = {values[where]} is outside [0, {upper}) "
            f"({count} of {values.size} entries are out of range)"
        )


def check_inputs(token_ids, positions, *, vocab_size: int, context_length: int) -> None:
    """Checks an embedding call's arguments (``positions=None`` means ``arange(T)``).

    Shapes and dtypes are checked always (they are static under ``jit``), values
    only when concrete.

    Args:
      token_ids: ``(B, T)`` or ``(T,)`` ints in ``[0, vocab_size)``.
      positions: ``None``, ``(T,)`` or ``token_ids.shape`` ints in ``[0, context_length)``.

    Raises:
      TypeError: non-integer ids or positions.
      ValueError: a wrong rank or shape, ``T > context_length``, or a value out of range.
    """
    check_index_dtype("token_ids", token_ids)
    if token_ids.ndim not in (1, 2):
        raise ValueError(f"token_ids must have shape (B, T) or (T,), got {tuple(token_ids.shape)}")
    seq_len = token_ids.shape[-1]
    if seq_len > context_length:
        raise ValueError(
            f"sequence length {seq_len} is longer than the context: context_length={context_length}"
        )
    if is_concrete(token_ids):
        check_indices_in_range("token_ids", token_ids, vocab_size)
    if positions is None:
        return
    check_index_dtype("positions", positions)
    if tuple(positions.shape) not in ((seq_len,), tuple(token_ids.shape)):
        raise ValueError(
            f"positions must have shape ({seq_len},) or {tuple(token_ids.shape)} "
            f"to match token_ids, got {tuple(positions.shape)}"
        )
    if is_concrete(positions):
        check_indices_in_range("positions", positions, context_length)


def check_module_options(
    vocab_size: int, context_length: int, features: int, dropout_rate: float
) -> None:
    """Checks an ``InputEmbedding``'s sizes (ints >= 1) and dropout rate (in ``[0, 1]``)."""
    for name, value in [
        ("vocab_size", vocab_size),
        ("context_length", context_length),
        ("features", features),
    ]:
        check_positive_int(name, value)
    if not 0.0 <= dropout_rate <= 1.0:  # also rejects NaN
        raise ValueError(f"dropout_rate must be in [0, 1], got {dropout_rate}")
