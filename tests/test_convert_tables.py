"""flax_embed.convert: the tables a model has, and reading only those of a big file (issue 17)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax_embed.convert import (
    LAYOUTS,
    load_params,
    params_from_torch,
    params_to_numpy,
    save_params,
)
from flax_embed.layers.linen import InputEmbedding

V, C, D = 64, 16, 8


def _model(position: str) -> InputEmbedding:
    return InputEmbedding(vocab_size=V, context_length=C, features=D, position=position)


def _params(position: str) -> dict:
    return _model(position).init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))


# --- position="sinusoidal" / "none": the token table alone ---------------------------------


@pytest.mark.parametrize("position", ["sinusoidal", "none"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_model_without_position_table_round_trips_through_safetensors(tmp_path, position, layout):
    params = _params(position)
    save_params(tmp_path / "e.safetensors", params, layout=layout)
    assert list(params_to_numpy(params, layout)) == [LAYOUTS[layout].tok_emb]
    back = load_params(tmp_path / "e.safetensors", model=_model(position))
    jax.tree.map(np.testing.assert_array_equal, back, jax.tree.map(np.asarray, params))
    ids = np.arange(12, dtype=np.int32).reshape(2, 6)
    np.testing.assert_array_equal(
        _model(position).apply(back, ids), _model(position).apply(params, ids)
    )


@pytest.mark.parametrize("position", ["sinusoidal", "none"])
def test_model_without_position_table_round_trips_through_torch(position):
    pytest.importorskip("torch")
    from flax_embed.convert import params_to_torch

    params = _params(position)
    state = params_to_torch(params)
    assert list(state) == ["tok_emb.weight"]
    back = params_from_torch(state, model=_model(position))
    jax.tree.map(np.testing.assert_array_equal, back, jax.tree.map(np.asarray, params))


def test_model_without_position_table_ignores_a_given_one():
    learned = jax.tree.map(np.asarray, _params("learned"))
    state = params_to_numpy(learned)
    back = params_from_torch(state, model=_model("sinusoidal"))
    assert list(back["params"]) == ["tok_emb"]
    np.testing.assert_array_equal(
        back["params"]["tok_emb"]["embedding"], learned["params"]["tok_emb"]["embedding"]
    )


def test_token_table_alone_into_a_learned_model_is_refused_with_a_hint(tmp_path):
    save_params(tmp_path / "e.safetensors", _params("none"))
    with pytest.raises(ValueError, match=r"no 'pos_emb.weight'.*position='sinusoidal' or 'none'"):
        load_params(tmp_path / "e.safetensors", model=_model("learned"))


# --- a whole model's file: only the tables are read --------------------------------------


def _whole_model_file(path: Path, big_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    """A safetensors file: a ``big_bytes`` tensor (a sparse hole, no disk) then the two tables.

    Written by hand (8-byte header length, JSON header, data) so that the big tensor
    costs neither memory nor disk here; safetensors' own parser checks the result.
    """
    rng = np.random.default_rng(0)
    tok = rng.standard_normal((V, D), np.float32)
    pos = rng.standard_normal((C, D), np.float32)
    entries, offset = {}, 0
    shapes = {
        "lm_head.weight": [big_bytes // 4],
        "tok_emb.weight": [V, D],
        "pos_emb.weight": [C, D],
    }
    for name, shape in shapes.items():
        nbytes = 4 * int(np.prod(shape))
        entries[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header = json.dumps(entries).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        f.seek(big_bytes, os.SEEK_CUR)
        f.write(tok.tobytes() + pos.tobytes())
    return tok, pos


_MEASURE = """
import sys
import numpy as np
from flax_embed.convert import load_params
from flax_embed.layers.linen import InputEmbedding

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

small, big = sys.argv[1:3]
model = InputEmbedding(vocab_size={V}, context_length={C}, features={D})
load_params(small, model=model)  # imports and first-call allocations, before measuring
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak (VmHWM) to the resident size now
rss = status("VmRSS")
params = load_params(big, model=model)
peak = status("VmHWM")
np.save(sys.argv[3], params["params"]["tok_emb"]["embedding"])
print(peak - rss)
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="measures RSS in /proc")
def test_load_params_reads_only_the_tables_of_a_whole_model_file(tmp_path):
    big = 256 << 20
    tok, _ = _whole_model_file(tmp_path / "model.safetensors", big)
    _whole_model_file(tmp_path / "small.safetensors", 8)
    from safetensors import safe_open

    with safe_open(tmp_path / "model.safetensors", framework="numpy") as f:  # a valid file
        assert sorted(f.keys()) == ["lm_head.weight", "pos_emb.weight", "tok_emb.weight"]
    code = _MEASURE.format(V=V, C=C, D=D)
    args = [tmp_path / "small.safetensors", tmp_path / "model.safetensors", tmp_path / "tok.npy"]
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    growth = int(done.stdout.split()[-1])
    # The tables are 2.5 KB; reading the file whole costs >= 256 MB. A quarter of it is
    # a wide margin for allocator noise either way.
    assert growth < big // 4, f"peak RSS grew {growth / 2**20:.0f} MiB for a {big >> 20} MiB file"
    np.testing.assert_array_equal(np.load(tmp_path / "tok.npy"), tok)
