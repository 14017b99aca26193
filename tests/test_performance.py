import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax_embed.layers.linen import InputEmbedding
from flax_embed.performance import jit_into, use_inline_cpu_dispatch


@pytest.fixture(scope="module")
def model_params_ids():
    model = InputEmbedding(vocab_size=100, context_length=8, features=16)
    ids_BxT = jnp.asarray(np.random.default_rng(0).integers(0, 100, (4, 8)), jnp.int32)
    return model, model.init(jax.random.key(0), ids_BxT), ids_BxT


def test_jit_into_equals_jit(model_params_ids):
    model, params, ids = model_params_ids
    apply_into = jit_into(model.apply)
    x = apply_into(jnp.zeros((4, 8, 16)), params, ids)
    x = apply_into(x, params, ids[::-1])
    np.testing.assert_array_equal(x, jax.jit(model.apply)(params, ids[::-1]))


def test_jit_into_writes_into_the_donated_buffer(model_params_ids):
    model, params, ids = model_params_ids
    apply_into = jit_into(model.apply)
    out = jnp.zeros((4, 8, 16))
    address = out.unsafe_buffer_pointer()
    x = apply_into(out, params, ids)
    assert out.is_deleted()
    assert x.unsafe_buffer_pointer() == address


def test_jit_into_passes_jit_options(model_params_ids):
    model, params, ids = model_params_ids
    apply_into = jit_into(model.apply, static_argnames="deterministic")
    x = apply_into(jnp.zeros((4, 8, 16)), params, ids, deterministic=True)
    np.testing.assert_array_equal(x, model.apply(params, ids))


def test_use_inline_cpu_dispatch_refuses_a_started_backend():
    jnp.zeros(()).block_until_ready()  # this process's backend is running
    with pytest.raises(RuntimeError, match="before the first JAX computation"):
        use_inline_cpu_dispatch()


def test_use_inline_cpu_dispatch_in_a_fresh_process():
    script = textwrap.dedent(
        """
        from flax_embed.performance import use_inline_cpu_dispatch
        use_inline_cpu_dispatch()
        import jax, jax.numpy as jnp
        from jax._src import xla_bridge
        assert xla_bridge._CPU_ENABLE_ASYNC_DISPATCH.value is False
        x = jnp.arange(4096.0)
        assert float((x * 2).sum()) == 4096.0 * 4095.0
        print("ok")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
