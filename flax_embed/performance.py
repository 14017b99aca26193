"""Two calling patterns that make the jitted embedding fast on a CPU host.

Measured in ``benchmarks/`` (docs/performance.md); neither changes a single output bit.

* ``use_inline_cpu_dispatch()``: XLA:CPU hands every computation whose estimated
  cost is 1,000 flops or more to a worker thread and lets the caller wait for it.
  The hand-off costs tens of microseconds, several times the whole ``(8, 4, 256)``
  lookup (a bare gather counts 0 flops and stays inline; gather + add counts 8,192
  and does not). Running computations on the calling thread removes it. It is a
  process-wide JAX setting, read once when the CPU backend starts.
* ``jit_into(fun)``: a jitted ``fun`` that writes its result into a donated buffer
  instead of fresh memory. A fresh 100 MB output is 25,000 page faults (the kernel
  zeroes each page first); reusing the buffer leaves only the gather and the add,
  a memory-bandwidth-bound pass as fast as a copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

__all__ = ["jit_into", "use_inline_cpu_dispatch"]

_ASYNC_DISPATCH = "jax_cpu_enable_async_dispatch"


def _backends_started() -> bool:
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - private module moved
        return False
    started = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(started()) if callable(started) else False


def use_inline_cpu_dispatch() -> None:
    """Runs XLA:CPU computations on the calling thread, never on a worker thread.

    Call it once at start-up, before the first JAX computation (the CPU backend
    reads the setting when it starts); it is ``jax.config.update(
    "jax_cpu_enable_async_dispatch", False)`` with that check. Calls then return
    when their result is ready, so Python no longer runs ahead of a long CPU
    computation; on accelerators nothing changes.

    Raises:
      RuntimeError: when a JAX backend has already started, so the setting would
        silently do nothing.
    """
    if _backends_started():
        raise RuntimeError(
            "use_inline_cpu_dispatch() must run before the first JAX computation: the CPU "
            "backend has already started, so the setting would have no effect"
        )
    jax.config.update(_ASYNC_DISPATCH, False)


def jit_into(fun: Callable[..., Any], **jit_kwargs: Any) -> Callable[..., Any]:
    """``jax.jit(fun)`` that writes its result into the memory of a donated buffer.

    The returned function is called as ``f(out, *args, **kwargs)`` and returns
    ``fun(*args, **kwargs)``. ``out`` must have the result's shape and dtype; its
    values are ignored and it is deleted (donated), its memory becoming the
    result's. Pass the previous result back as ``out`` in a loop::

      >>> import jax, jax.numpy as jnp
      >>> from flax_embed import InputEmbedding
      >>> model = InputEmbedding(context_length=16, features=64)
      >>> ids_BxT = jnp.zeros((8, 16), jnp.int32)
      >>> params = model.init(jax.random.key(0), ids_BxT)
      >>> apply_into = jit_into(model.apply)
      >>> x_BxTxD = apply_into(jnp.empty((8, 16, 64)), params, ids_BxT)
      >>> x_BxTxD = apply_into(x_BxTxD, params, ids_BxT + 1)   # the same memory
      >>> x_BxTxD.shape
      (8, 16, 64)

    With an ``out`` of the wrong shape or dtype JAX warns that the donated buffer
    was not usable and allocates as ``jax.jit`` would.

    Args:
      fun: the function to jit, e.g. ``model.apply``.
      **jit_kwargs: passed to ``jax.jit`` (``static_argnames`` and the like; the
        argument numbers count ``out`` as argument 0).
    """

    def fun_into(out: jax.Array, *args: Any, **kwargs: Any) -> Any:
        del out  # only its memory is used, through donation
        return fun(*args, **kwargs)

    return jax.jit(fun_into, donate_argnums=0, keep_unused=True, **jit_kwargs)
