"""``save_params`` / ``load_params`` with NumPy and safetensors alone: no torch needed.

The lower-bounds step of .ci/run runs this with the declared minimum safetensors.
"""

import ml_dtypes
import numpy as np
import pytest

from flax_embed import load_params, save_params


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
def test_safetensors_round_trip_is_bit_exact_without_torch(tmp_path, dtype):
    rng = np.random.default_rng(0)
    tok = rng.standard_normal((5, 3)).astype(dtype)
    pos = rng.standard_normal((4, 3)).astype(dtype)
    tables = {"tok_emb": {"embedding": tok}, "pos_emb": {"embedding": pos}}
    save_params(tmp_path / "e.safetensors", {"params": tables})
    back = load_params(tmp_path / "e.safetensors")["params"]
    for name, table in tables.items():
        loaded = np.asarray(back[name]["embedding"])
        assert loaded.dtype == table["embedding"].dtype
        assert loaded.tobytes() == table["embedding"].tobytes()
