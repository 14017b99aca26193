"""The Linen module on the seed's batch. Behaviour shared with the NNX twin is tested
once for both APIs in test_linen_apis.py."""

import jax
import numpy as np
import pytest

from flax_embed import InputEmbedding, create_dataloader


@pytest.mark.tokenizer
def test_seed_batch_from_the_real_loader(sample_text):
    inputs_BxT, _ = next(iter(create_dataloader(sample_text, 8, 4, 4, shuffle=False)))
    model = InputEmbedding(context_length=4, features=256)
    params = model.init(jax.random.key(0), inputs_BxT)
    out = jax.jit(model.apply)(params, inputs_BxT)
    assert out.shape == (8, 4, 256)
    tok = np.asarray(params["params"]["tok_emb"]["embedding"])
    pos = np.asarray(params["params"]["pos_emb"]["embedding"])
    np.testing.assert_array_equal(out, tok[inputs_BxT] + pos[:4])
