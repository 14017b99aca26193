"""Positional encodings: sinusoidal tables, RoPE, ALiBi (see ``flax_embed.layers.positions``).

The public front module; the implementation lives in ``flax_embed.layers.positions``.
"""

from flax_embed.layers.masks import segment_mask
from flax_embed.layers.positions import (
    ROPE_SCALINGS,
    SINUSOIDAL_VARIANTS,
    DynamicNTKScaling,
    GivenFrequencies,
    LinearScaling,
    Llama3Scaling,
    LongRopeScaling,
    ProportionalScaling,
    RoPE,
    RopeScaling,
    YarnScaling,
    alibi_bias,
    alibi_slopes,
    rope_permute,
    sinusoidal_inv_freq,
    sinusoidal_table,
)

__all__ = [
    "SINUSOIDAL_VARIANTS",
    "DynamicNTKScaling",
    "GivenFrequencies",
    "LinearScaling",
    "Llama3Scaling",
    "LongRopeScaling",
    "ProportionalScaling",
    "ROPE_SCALINGS",
    "RoPE",
    "RopeScaling",
    "YarnScaling",
    "alibi_bias",
    "alibi_slopes",
    "rope_permute",
    "segment_mask",
    "sinusoidal_inv_freq",
    "sinusoidal_table",
]
