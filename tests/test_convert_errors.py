"""``params_from_torch`` given something other than a state dict (issue 12, case 9)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from flax_embed.convert import detect_layout, params_from_torch  # noqa: E402
from parity.torch_reference import TorchInputEmbedding  # noqa: E402


def _module():
    return TorchInputEmbedding(vocab_size=8, context_length=4, emb_dim=2)


@pytest.mark.parametrize(
    "value",
    [[("tok_emb.weight", np.zeros((8, 2)))], None, "model.pt", torch.zeros(8, 2), "module"],
    ids=["list", "None", "str", "tensor", "module"],
)
def test_not_a_state_dict_says_pass_model_state_dict(value):
    if value == "module":
        value = _module()
    for call in (params_from_torch, detect_layout):
        with pytest.raises(TypeError, match=r"pass model\.state_dict\(\)"):
            call(value)


def test_meta_tensors_are_refused_by_name():
    with torch.device("meta"):
        module = _module()
    with pytest.raises(ValueError, match=r"'tok_emb.weight' is a meta tensor"):
        params_from_torch(module.state_dict())


def test_a_real_state_dict_still_converts():
    params = params_from_torch(_module().state_dict())
    assert params["params"]["tok_emb"]["embedding"].shape == (8, 2)


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ([[0.5, 0.25], [1.0, 2.0]], r"'tok_emb.weight' is a list, not a tensor or array"),
        ((0.5, 0.25), r"'tok_emb.weight' is a tuple, not a tensor or array"),
        (0.5, r"'tok_emb.weight' is a float, not a tensor or array"),
        (torch.eye(8, 2).to_sparse(), r"'tok_emb.weight' is a sparse_coo tensor.*to_dense\(\)"),
        (
            torch.quantize_per_tensor(torch.ones(8, 2), 0.1, 0, torch.qint8),
            r"'tok_emb.weight' is a quantized tensor \(torch.qint8\).*dequantize\(\)",
        ),
    ],
    ids=["list", "tuple", "float", "sparse", "quantized"],
)
def test_a_table_that_is_not_a_dense_array_is_refused_by_name(table, match):
    state = {"tok_emb.weight": table, "pos_emb.weight": torch.zeros(4, 2)}
    with pytest.raises(ValueError, match=match):
        params_from_torch(state)
