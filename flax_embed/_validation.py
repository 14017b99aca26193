"""Host-side checks of token ids and positions.

JAX does not raise for an out-of-range gather: it returns NaN rows, clamps or
wraps, depending on the mode. These checks run on concrete arrays before the
lookup so that bad input is reported the way torch reports it, with more detail.
Under ``jax.jit`` the values are not known; see ``InputEmbedding`` for the
checked path (``jax.experimental.checkify``) and ``as_token_ids`` for the host-side
check that must come before ``jit`` (JAX narrows 64-bit ids to int32, wrapping them,
at the ``jit`` boundary, before any code of ours sees them).
"""

from __future__ import annotations

import os
import sys

import numpy as np

__all__ = [
    "as_token_ids",
    "available_memory",
    "check_memory",
    "check_float_dtype",
    "check_ids_1d",
    "check_positive_int",
    "first_out_of_range",
    "check_index_dtype",
    "check_indices_in_range",
    "check_inputs",
    "check_module_options",
    "check_one_of",
    "is_concrete",
]


_Tracer: type | None = None  # jax.core.Tracer, once JAX is loaded


def _is_tracer(x) -> bool:
    """Whether ``x`` is a JAX tracer, without importing JAX.

    A tracer exists only once JAX is imported; while it is not, nothing is one. So
    this module (and the data pipeline, which uses ``check_positive_int`` and
    ``as_token_ids``) stays JAX-free: ``import flax_embed.data`` loads no JAX.
    """
    global _Tracer
    if _Tracer is None:
        if "jax" not in sys.modules:
            return False
        from jax.core import Tracer  # JAX is loaded already: no import cost

        _Tracer = Tracer
    return isinstance(x, _Tracer)


def is_concrete(x) -> bool:
    """Whether ``x``'s values are known now (not a tracer inside ``jit``/``grad``)."""
    # A global array spread over several hosts is not a tracer, but its values are not
    # all here: it is checked like a traced one (shapes only).
    return not _is_tracer(x) and getattr(x, "is_fully_addressable", True)


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


def check_one_of(name: str, value, choices, *, error: type[Exception] = ValueError):
    """``value`` if it is one of ``choices``: the one "must be one of" check of flax-embed.

    >>> check_one_of("layout", "diagonal", ("half", "interleaved"))
    Traceback (most recent call last):
    ValueError: layout must be one of 'half', 'interleaved', got 'diagonal'
    """
    if value not in choices:
        raise error(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_ids_1d(name: str, ids_N: np.ndarray) -> None:
    """Raises unless ``ids_N`` is a rank-1 array of integers (an empty one of any dtype is).

    Raises:
      ValueError: another rank. TypeError: a non-integer dtype.
    """
    if ids_N.ndim != 1:
        raise ValueError(f"{name} must have rank 1, got shape {ids_N.shape}")
    if ids_N.size and not np.issubdtype(ids_N.dtype, np.integer):
        raise TypeError(f"{name} must be integers, got dtype {ids_N.dtype}")


def check_float_dtype(name: str, dtype) -> None:
    """TypeError unless ``dtype`` (None allowed) is a floating-point dtype (bfloat16 included).

    An integer table would hold truncated weights: ``InputEmbedding(dtype=jnp.int32)``
    is refused rather than silently rounding every entry toward zero.
    """
    if dtype is None:
        return
    from jax import numpy as jnp  # JAX's dtypes (bfloat16); only the layers call this

    try:
        ok = jnp.issubdtype(dtype, jnp.floating)
    except TypeError:
        ok = False
    if not ok:
        raise TypeError(f"{name} must be a floating-point dtype (e.g. jnp.float32), got {dtype}")


def as_token_ids(token_ids, *, vocab_size: int, name: str = "token_ids") -> np.ndarray:
    """``token_ids`` as an int32 NumPy array, on the host, checked against ``[0, vocab_size)``.

    Call it on ids from outside flax-embed (``encode``, the loaders and token files
    already give int32 or uint16 ids) before they reach ``jax.jit``: with JAX's
    default ``jax_enable_x64=False``, ``jit`` narrows an int64 argument to int32
    *before* the module sees it, so an id of ``2**32 + 5`` arrives as ``5`` and no
    check inside the module can tell. This check sees the 64-bit values.

    >>> as_token_ids(np.array([[1, 2]], np.int64), vocab_size=50257)
    array([[1, 2]], dtype=int32)
    >>> as_token_ids(np.array([1, 2**32 + 5]), vocab_size=50257)
    Traceback (most recent call last):
    ...
    ValueError: token_ids[1] = 4294967301 is outside [0, 50257) (1 of 2 entries are out of range)

    Raises:
      TypeError: a non-integer array, or a tracer (call it outside ``jit``).
      ValueError: an id outside ``[0, vocab_size)``, named with its index.
    """
    check_positive_int("vocab_size", vocab_size, maximum=2**31)
    if _is_tracer(token_ids):
        raise TypeError(f"{name} must be concrete: call as_token_ids outside jit/vmap")
    values = token_ids if hasattr(token_ids, "dtype") else np.asarray(token_ids)
    check_index_dtype(name, values)
    values = np.asarray(values)
    check_indices_in_range(name, values, vocab_size)
    return values.astype(np.int32, copy=False)


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


def _batched_value(x):
    """The concrete array behind ``vmap``'s tracers (``vmap`` outside ``jit``), else None.

    Best effort, through an attribute of JAX's ``BatchTracer`` (``.val``) that JAX does
    not document: when a JAX version lacks it, ids under ``vmap`` are unchecked,
    as under ``jit``. Under ``jit`` the value is a tracer too and None is returned.
    """
    for _ in range(64):  # nested vmaps
        if not (_is_tracer(x) and type(x).__name__ == "BatchTracer"):
            break
        x = getattr(x, "val", None)
    return x if x is not None and hasattr(x, "dtype") and is_concrete(x) else None


def _check_values(name: str, x, upper: int) -> None:
    """Checks ``x``'s values when known: concrete, or batched by ``vmap`` outside ``jit``."""
    if is_concrete(x):
        check_indices_in_range(name, x, upper)
        return
    batched = _batched_value(x)
    if batched is not None:
        check_indices_in_range(f"{name} (all of vmap's batch)", batched, upper)


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
    _check_values("token_ids", token_ids, vocab_size)
    if positions is None:
        return
    check_index_dtype("positions", positions)
    if tuple(positions.shape) not in ((seq_len,), tuple(token_ids.shape)):
        raise ValueError(
            f"positions must have shape ({seq_len},) or {tuple(token_ids.shape)} "
            f"to match token_ids, got {tuple(positions.shape)}"
        )
    _check_values("positions", positions, context_length)


def check_module_options(
    vocab_size: int,
    context_length: int,
    features: int,
    dropout_rate: float,
    *,
    dtype=None,
    param_dtype=None,
) -> None:
    """Checks an ``InputEmbedding``'s sizes (ints >= 1), dropout rate (in [0, 1]), float dtypes."""
    check_float_dtype("dtype", dtype)
    check_float_dtype("param_dtype", param_dtype)
    for name, value in [
        ("vocab_size", vocab_size),
        ("context_length", context_length),
        ("features", features),
    ]:
        check_positive_int(name, value)
    if not 0.0 <= dropout_rate <= 1.0:  # also rejects NaN
        raise ValueError(f"dropout_rate must be in [0, 1], got {dropout_rate}")


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def check_memory(what: str, nbytes: int) -> None:
    """ValueError if ``nbytes`` (for ``what``) exceed the available memory, before allocating."""
    available = available_memory()
    if available is not None and nbytes > available:
        raise ValueError(
            f"{what} need {nbytes / 2**30:.1f} GiB, but only {available / 2**30:.1f} GiB "
            "of memory are available"
        )
