"""Positional encodings: sinusoidal tables, RoPE (both layouts, partial, scaled), ALiBi.

Pure, jit-compatible functions over ``jax.Array`` in JAX's axis order, each proven
against its PyTorch original by the parity suite (``parity/positions.py``):

* ``sinusoidal_table``: the three published sinusoidal tables (Hugging Face
  DistilBERT, Marian, M2M100 / fairseq / tensor2tensor);
* ``RoPE``: rotary embeddings in the half-split layout (Hugging Face Llama,
  GPT-NeoX) or the interleaved one (Meta's Llama, GPT-J), partial rotary
  dimensions, M-RoPE, and the scalings of ``transformers.modeling_rope_utils``
  (``ROPE_SCALINGS``: ``LinearScaling``, ``DynamicNTKScaling``, ``Llama3Scaling``,
  ``YarnScaling``, ``LongRopeScaling``, ``ProportionalScaling``), read from a config by
  ``RoPE.from_hf_config``;
* ``rope_permute``: the q/k weight permutation between the two layouts;
* ``alibi_slopes`` / ``alibi_bias``: ALiBi's per-head linear biases.

Numerics. Frequencies depend only on the (static) configuration, so they are
computed on the host with NumPy, following the reference's float32 operations
one for one, except that each transcendental call (``pow``, ``exp``, ``log``) is
evaluated in float64 and rounded once to float32 (so, 0.5 ULP, where the
reference's float32 libm is within 1 ULP). They become constants of the jitted
computation: no XLA constant folding that could round differently from eager
mode. Angles, ``sin``/``cos`` and the rotation run in JAX. ``docs/positions.md``
derives the tolerances the parity rows use.

Negative RoPE positions are accepted: the rotation is defined for every integer
and Hugging Face's ``LlamaRotaryEmbedding`` accepts them too (useful for relative
offsets); ``DynamicNTKScaling`` reads only the largest position, as Hugging Face
does. Concrete RoPE positions are checked on the host (outside int32 they would
wrap when JAX narrows them), as are ALiBi offsets and the size of a sinusoidal table
(against the available memory, before allocating). Positions of ``sinusoidal_table``
rows are table indices and are checked by the module that looks them up
(``InputEmbedding(position="sinusoidal")``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from flax_embed._validation import check_memory, check_one_of, check_positive_int, is_concrete

__all__ = [
    "DynamicNTKScaling",
    "GivenFrequencies",
    "LinearScaling",
    "Llama3Scaling",
    "LongRopeScaling",
    "ProportionalScaling",
    "ROPE_SCALINGS",
    "RoPE",
    "RopeScaling",
    "SINUSOIDAL_VARIANTS",
    "YarnScaling",
    "alibi_bias",
    "alibi_slopes",
    "rope_permute",
    "segment_mask",
    "sinusoidal_inv_freq",
    "sinusoidal_table",
]

SINUSOIDAL_VARIANTS = ("interleaved", "concat", "tensor2tensor")
"""The ``variant`` values of ``sinusoidal_table``."""
LAYOUTS = ("half", "interleaved")
"""The ``layout`` values of ``RoPE`` and the ``to`` values of ``rope_permute``."""

Dtype = Any


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _pow32(base, exponent) -> np.ndarray:
    """float32 ``base ** exponent``, evaluated in float64 and rounded once."""
    return _f32(np.power(np.asarray(base, np.float64), np.asarray(exponent, np.float64)))


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value > 0 or not math.isfinite(value):  # also rejects NaN
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)


# --- sinusoidal tables ---------------------------------------------------------------------


def sinusoidal_inv_freq(features: int, variant: str = "interleaved") -> np.ndarray:
    """The float32 angular frequencies of ``sinusoidal_table``'s sin columns, ``(ceil(D/2),)``.

    ``"interleaved"`` and ``"concat"``: ``1 / 10000^(2i/D)``; ``"tensor2tensor"``:
    ``exp(-i·ln(10000)/(D//2 - 1))`` for ``i < D//2``. A NumPy array (host constant).
    """
    features = check_positive_int("features", features)
    check_one_of("variant", variant, SINUSOIDAL_VARIANTS)
    if variant == "tensor2tensor":
        half = features // 2
        if half < 2:
            raise ValueError(
                f"features must be at least 4 for variant='tensor2tensor', got {features}"
            )
        # M2M100: exp(arange(half).float() * -(ln(10000) / (half - 1))) in float32.
        step = _f32(-(math.log(10000) / (half - 1)))
        return _f32(np.exp(np.float64(_f32(np.arange(half, dtype=np.float32) * step))))
    i = np.arange((features + 1) // 2, dtype=np.float64)
    return _f32(1.0 / np.power(10000.0, 2.0 * i / features))


def sinusoidal_table(
    num_positions: int,
    features: int,
    *,
    variant: str = "interleaved",
    dtype: Dtype = jnp.float32,
) -> jax.Array:
    """The fixed sinusoidal position table, ``(num_positions, features)``.

    Row ``p`` encodes position ``p`` with angles ``p·ω_i`` (``sinusoidal_inv_freq``):

    * ``"interleaved"``: ``sin`` in even columns, ``cos`` in odd ones (Vaswani et al.
      §3.5; Hugging Face DistilBERT ``create_sinusoidal_embeddings``);
    * ``"concat"``: ``[sin | cos]``, the same frequencies, ``ceil(D/2)`` sin columns
      (Hugging Face ``MarianSinusoidalPositionalEmbedding``);
    * ``"tensor2tensor"``: ``[sin | cos]`` with ``ω_i = exp(-i·ln(10000)/(D/2 - 1))``,
      an odd ``D`` zero-padded in its last column (tensor2tensor, fairseq, Hugging
      Face M2M100 ``get_embedding``).

    Angles are float32 products ``float32(p)·ω_i`` (exact for ``p < 2^24`` up to one
    rounding), then ``sin``/``cos`` in float32, then cast to ``dtype``.

    Example::

      >>> sinusoidal_table(4, 6).shape
      (4, 6)
      >>> float(sinusoidal_table(2, 2)[1, 0]) == float(jnp.sin(1.0))
      True
    """
    num_positions = check_positive_int("num_positions", num_positions)
    features = check_positive_int("features", features)
    # The float32 angles and the table are each num_positions·features·4 bytes: refuse up
    # front what cannot be allocated, rather than failing (or swapping) at first use.
    check_memory(f"sinusoidal_table({num_positions}, {features})", 2 * num_positions * features * 4)
    inv_freq = jnp.asarray(sinusoidal_inv_freq(features, variant))
    pos = jnp.arange(num_positions, dtype=jnp.float32)[:, None]
    if variant == "tensor2tensor":
        angle = pos * inv_freq
        parts = [jnp.sin(angle), jnp.cos(angle)]
        if features % 2:
            parts.append(jnp.zeros((num_positions, 1), jnp.float32))
        return jnp.concatenate(parts, axis=1).astype(dtype)
    n_cos = features // 2
    if variant == "concat":
        return jnp.concatenate(
            [jnp.sin(pos * inv_freq), jnp.cos(pos * inv_freq[:n_cos])], axis=1
        ).astype(dtype)
    # interleaved: column 2i is sin(p·ω_i), column 2i+1 is cos(p·ω_i).
    column_freq = jnp.repeat(inv_freq, 2)[:features]
    angle = pos * column_freq
    is_sin = (jnp.arange(features) % 2) == 0
    return jnp.where(is_sin, jnp.sin(angle), jnp.cos(angle)).astype(dtype)


# --- RoPE ----------------------------------------------------------------------------------
#
# Design (issue 18): each scaling is a frozen dataclass that computes its own frequencies
# (``inv_freq_np`` on the host, ``inv_freq_at`` for the ones that depend on the sequence
# length), its attention factor (on cos and sin) and its softmax-scale factor, and reads
# itself from a Hugging Face ``rope_parameters`` dict (``from_hf``). ``ROPE_SCALINGS`` maps
# HF's ``rope_type`` to the class, as ``modeling_rope_utils.ROPE_INIT_FUNCTIONS`` maps it
# to a function: adding a scaling is one class and one registry line.


class _HFParams:
    """One family's RoPE parameters as read from a config: the dict, where it was found
    and the family, so that every error names the key and the model type."""

    def __init__(self, params: dict, config: dict, where: str, family: str, rope_type: str):
        self.params, self.config, self.where = params, config, where
        self.family, self.rope_type = family, rope_type

    def get(self, key: str, default: Any = None) -> Any:
        value = self.params.get(key)
        return default if value is None else value

    def need(self, key: str, *, in_config: bool = False) -> Any:
        source, where = (self.config, "config") if in_config else (self.params, self.where)
        if source.get(key) is None:
            raise ValueError(
                f"{where}['{key}'] is required for rope_type {self.rope_type!r} ({self.family})"
            )
        return source[key]

    def original_max(self) -> int:
        """HF ``standardize_rope_params``: a top-level ``original_max_position_embeddings``
        (Phi-3) wins, then the parameters', then ``max_position_embeddings``."""
        for source in (self.config, self.params):
            if source.get("original_max_position_embeddings") is not None:
                return source["original_max_position_embeddings"]
        return self.need("max_position_embeddings", in_config=True)


@dataclasses.dataclass(frozen=True)
class _Scaling:
    """The interface of a RoPE scaling (and its default behaviour: none)."""

    def inv_freq_np(self, base: float, dim: int) -> np.ndarray:
        """The float32 frequencies ``(dim // 2,)`` on the host (the ones used at short
        lengths by the length-dependent scalings)."""
        return _default_inv_freq(base, dim)

    def inv_freq_at(self, base: float, dim: int, positions: jax.Array) -> jax.Array:
        """The frequencies used for ``positions`` (a constant unless length-dependent)."""
        return jnp.asarray(self.inv_freq_np(base, dim))

    @property
    def mscale(self) -> float:
        """The factor on cos and sin (HF ``attention_scaling``)."""
        return 1.0

    def softmax_factor(self) -> float:
        """The factor the family's attention multiplies its softmax scale by."""
        return 1.0

    spans_head_dim: ClassVar[bool] = False
    """Whether it rotates the whole head and reads ``partial_rotary_factor`` itself
    (``ProportionalScaling``), instead of ``rotary_dim`` shrinking."""

    @classmethod
    def from_hf(cls, p: _HFParams) -> _Scaling:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class LinearScaling(_Scaling):
    """Position interpolation: every frequency divided by ``factor`` (HF ``"linear"``)."""

    factor: float

    def __post_init__(self):
        _check_positive("factor", self.factor)

    def inv_freq_np(self, base: float, dim: int) -> np.ndarray:
        return _f32(_default_inv_freq(base, dim) / np.float32(self.factor))

    @classmethod
    def from_hf(cls, p: _HFParams) -> LinearScaling:
        return cls(p.need("factor"))


@dataclasses.dataclass(frozen=True)
class ProportionalScaling(_Scaling):
    """Gemma 4's and LFM3's proportional RoPE (HF ``"proportional"``): the first
    ``int(fraction·dim // 2)`` frequencies are ``base^(-2i/dim)`` over the whole head
    (``dim``, not the rotated width, in the exponent), the rest are 0 (those pairs pass
    through unrotated, as cos 0 = 1, sin 0 = 0), all divided by ``factor``. The pairs
    are HF's half layout over the whole head: ``(i, i + dim/2)``. It reads
    ``partial_rotary_factor`` itself, so ``rotary_dim`` stays the head dim."""

    fraction: float = 1.0
    factor: float = 1.0
    spans_head_dim: ClassVar[bool] = True

    def __post_init__(self):
        _check_positive("factor", self.factor)
        if not (isinstance(self.fraction, (int, float)) and 0.0 <= self.fraction <= 1.0):
            raise ValueError(f"partial_rotary_factor must be in [0, 1], got {self.fraction!r}")

    def inv_freq_np(self, base: float, dim: int) -> np.ndarray:
        """HF ``_compute_proportional_rope_parameters``, its float32 operations in order."""
        angles = int(self.fraction * dim // 2)
        exponent = np.arange(0, 2 * angles, 2, dtype=np.float32) / np.float32(dim)
        rotated = _f32(np.float32(1.0) / _pow32(base, exponent))
        inv = np.concatenate([rotated, np.zeros(dim // 2 - angles, np.float32)])
        return _f32(inv / np.float32(self.factor))

    @classmethod
    def from_hf(cls, p: _HFParams) -> ProportionalScaling:
        fraction = p.get("partial_rotary_factor", 1.0)
        return cls(fraction, p.get("factor", 1.0))


def _dynamic_inv_freq_host(base: float, dim: int, factor: float, original: int, seq_len):
    """HF's dynamic NTK frequencies for ``seq_len``, in float64, rounded once to float32."""
    seq = float(np.asarray(seq_len))
    if seq <= original:  # HF's original_inv_freq: the default one
        return _default_inv_freq(base, dim)
    new_base = base * (factor * seq / original - (factor - 1)) ** (dim / (dim - 2))
    exponent = np.arange(0, dim, 2, dtype=np.float64) / dim
    return _f32(np.power(new_base, -exponent))


@dataclasses.dataclass(frozen=True)
class DynamicNTKScaling(_Scaling):
    """Dynamic NTK (HF ``"dynamic"``): for sequences longer than
    ``original_max_position_embeddings`` (``seq_len = max(positions) + 1``, HF's
    ``max_position_embeddings``), the base grows to
    ``base·(factor·seq_len/original - (factor - 1))^(d/(d-2))``; shorter ones are unscaled.
    Stateless: each call uses its own ``seq_len`` (HF's module keeps the longest seen).

    The scaled frequencies are computed in float64 on the host and rounded once (within
    0.5 ULP of exact; HF's float32 ``pow`` within 2): under ``jit`` through
    ``jax.pure_callback`` on the one scalar ``seq_len``.
    """

    factor: float
    original_max_position_embeddings: int

    def __post_init__(self):
        _check_positive("factor", self.factor)
        check_positive_int(
            "original_max_position_embeddings", self.original_max_position_embeddings
        )

    def inv_freq_at(self, base: float, dim: int, positions: jax.Array) -> jax.Array:
        seq_len = jnp.max(positions).astype(jnp.int32) + 1

        def host(n):
            return _dynamic_inv_freq_host(
                base, dim, self.factor, self.original_max_position_embeddings, n
            )

        if is_concrete(seq_len):
            return jnp.asarray(host(seq_len))
        out = jax.ShapeDtypeStruct((dim // 2,), jnp.float32)
        return jax.pure_callback(host, out, seq_len)

    @classmethod
    def from_hf(cls, p: _HFParams) -> DynamicNTKScaling:
        # HF's dynamic NTK scales past config.max_position_embeddings.
        return cls(p.need("factor"), p.need("max_position_embeddings", in_config=True))


@dataclasses.dataclass(frozen=True)
class Llama3Scaling(_Scaling):
    """Llama 3.1's frequency-dependent scaling (HF ``"llama3"``): wavelengths longer than
    ``original/low_freq_factor`` divided by ``factor``, shorter than
    ``original/high_freq_factor`` kept, a smooth blend in between (none when the two
    factors are equal, as in Llama 4, which HF accepts)."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192

    def __post_init__(self):
        for name in ("factor", "low_freq_factor", "high_freq_factor"):
            _check_positive(name, getattr(self, name))
        check_positive_int(
            "original_max_position_embeddings", self.original_max_position_embeddings
        )
        if self.low_freq_factor > self.high_freq_factor:
            raise ValueError(
                f"low_freq_factor must be <= high_freq_factor, got {self.low_freq_factor} "
                f"> {self.high_freq_factor}"
            )

    def inv_freq_np(self, base: float, dim: int) -> np.ndarray:
        """HF ``_compute_llama3_parameters``, its float32 operations in order."""
        inv = _default_inv_freq(base, dim)
        old = self.original_max_position_embeddings
        low, high = self.low_freq_factor, self.high_freq_factor
        low_wavelen, high_wavelen = old / low, old / high
        wavelen = _f32(np.float32(2 * math.pi) / inv)
        scaled = np.where(wavelen > low_wavelen, _f32(inv / np.float32(self.factor)), inv)
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        if not medium.any():  # low == high: no band to blend (and HF's blend divides by 0)
            return _f32(scaled)
        smooth = _f32((_f32(np.float32(old) / wavelen) - np.float32(low)) / np.float32(high - low))
        smoothed = _f32(
            _f32(_f32(np.float32(1) - smooth) * scaled) / np.float32(self.factor)
            + _f32(smooth * scaled)
        )
        return _f32(np.where(medium, smoothed, scaled))

    @classmethod
    def from_hf(cls, p: _HFParams) -> Llama3Scaling:
        return cls(
            p.need("factor"),
            p.need("low_freq_factor"),
            p.need("high_freq_factor"),
            p.original_max(),
        )


def _yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


@dataclasses.dataclass(frozen=True)
class YarnScaling(_Scaling):
    """YaRN (HF ``"yarn"``): interpolation by ``factor`` for low frequencies,
    extrapolation for high ones, a linear ramp between the dimensions given by
    ``beta_fast``/``beta_slow`` rotations over ``original_max_position_embeddings``;
    cos and sin are multiplied by ``attention_factor`` (default ``0.1·ln(factor) + 1``,
    or DeepSeek's ``mscale(factor, mscale)/mscale(factor, mscale_all_dim)``).
    ``truncate`` rounds the ramp's ends outward to integers, as HF does by default.
    ``softmax_scale``: the factor DeepSeek's attention multiplies ``1/√d`` by
    (``mscale(factor, mscale_all_dim)²``); 1 for other families."""

    factor: float
    original_max_position_embeddings: int
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    attention_factor: float | None = None
    truncate: bool = True
    softmax_scale: float = 1.0

    def __post_init__(self):
        for name in ("factor", "beta_fast", "beta_slow", "softmax_scale"):
            _check_positive(name, getattr(self, name))
        check_positive_int(
            "original_max_position_embeddings", self.original_max_position_embeddings
        )
        if self.attention_factor is not None:
            _check_positive("attention_factor", self.attention_factor)

    @property
    def mscale(self) -> float:
        """The factor on cos and sin: ``attention_factor``, or ``0.1·ln(factor) + 1``."""
        if self.attention_factor is not None:
            return float(self.attention_factor)
        return _yarn_get_mscale(self.factor)

    def softmax_factor(self) -> float:
        return float(self.softmax_scale)

    def inv_freq_np(self, base: float, dim: int) -> np.ndarray:
        """HF ``_compute_yarn_parameters``, its float32 operations in order."""
        pos_freqs = _pow32(base, np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim))
        extrapolation = _f32(np.float32(1) / pos_freqs)
        interpolation = _f32(np.float32(1) / _f32(np.float32(self.factor) * pos_freqs))

        def correction_dim(rotations: float) -> float:
            original = self.original_max_position_embeddings
            return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

        low, high = correction_dim(self.beta_fast), correction_dim(self.beta_slow)
        if self.truncate:
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001  # HF: "prevent singularity"
        ramp = np.clip(
            _f32(
                _f32(np.arange(dim // 2, dtype=np.float32) - np.float32(low))
                / np.float32(high - low)
            ),
            0,
            1,
        )
        extrapolation_factor = _f32(np.float32(1) - ramp)
        return _f32(
            _f32(interpolation * _f32(np.float32(1) - extrapolation_factor))
            + _f32(extrapolation * extrapolation_factor)
        )

    @classmethod
    def from_hf(cls, p: _HFParams) -> YarnScaling:
        original = p.original_max()
        factor = p.get("factor")
        if factor is None:  # DeepSeek V3: max_position_embeddings / original
            factor = p.need("max_position_embeddings", in_config=True) / original
        attention_factor = p.get("attention_factor")
        mscale, mscale_all = p.get("mscale"), p.get("mscale_all_dim")
        if attention_factor is None and mscale and mscale_all:
            attention_factor = _yarn_get_mscale(factor, mscale) / _yarn_get_mscale(
                factor, mscale_all
            )
        softmax_scale = 1.0
        if _family(p.config.get("model_type", "")) in _MSCALE_SOFTMAX_FAMILIES and mscale_all:
            softmax_scale = _yarn_get_mscale(factor, mscale_all) ** 2
        return cls(
            factor,
            original,
            beta_fast=float(p.get("beta_fast", 32.0)),
            beta_slow=float(p.get("beta_slow", 1.0)),
            attention_factor=attention_factor,
            truncate=bool(p.get("truncate", True)),
            softmax_scale=softmax_scale,
        )


@dataclasses.dataclass(frozen=True)
class LongRopeScaling(_Scaling):
    """LongRoPE (HF ``"longrope"``; Phi-3-128k, Phi-3.5, Phi-4-mini): frequency ``i`` is
    ``1/(ext_i·base^(2i/d))`` with ``ext = short_factor`` while
    ``seq_len = max(positions) + 1 <= original_max_position_embeddings`` and
    ``long_factor`` past it (HF 5.24.0 picks one set per call, for all its positions);
    cos and sin are multiplied by ``attention_factor``, default
    ``√(1 + ln(factor)/ln(original))`` (``factor`` defaults to ``max/original``)."""

    short_factor: tuple[float, ...]
    long_factor: tuple[float, ...]
    original_max_position_embeddings: int
    factor: float = 1.0
    attention_factor: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "short_factor", tuple(map(float, self.short_factor)))
        object.__setattr__(self, "long_factor", tuple(map(float, self.long_factor)))
        for name in ("short_factor", "long_factor"):
            for v in getattr(self, name):
                _check_positive(name, v)
        if len(self.short_factor) != len(self.long_factor):
            raise ValueError(
                f"short_factor and long_factor must have the same length, got "
                f"{len(self.short_factor)} and {len(self.long_factor)}"
            )
        _check_positive("factor", self.factor)
        check_positive_int(
            "original_max_position_embeddings", self.original_max_position_embeddings
        )
        if self.attention_factor is not None:
            _check_positive("attention_factor", self.attention_factor)

    def _inv(self, base: float, dim: int, ext) -> np.ndarray:
        if len(ext) != dim // 2:
            raise ValueError(
                f"LongRoPE factors have {len(ext)} entries; rotary_dim {dim} needs {dim // 2}"
            )
        shape = np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)
        return _f32(np.float32(1) / _f32(_f32(ext) * _pow32(base, shape)))

    def inv_freq_np(self, base: float, dim: int) -> np.ndarray:
        return self._inv(base, dim, self.short_factor)

    def inv_freq_at(self, base: float, dim: int, positions: jax.Array) -> jax.Array:
        seq_len = jnp.max(positions).astype(jnp.int32) + 1
        long = jnp.asarray(self._inv(base, dim, self.long_factor))
        short = jnp.asarray(self._inv(base, dim, self.short_factor))
        return jnp.where(seq_len > self.original_max_position_embeddings, long, short)

    @property
    def mscale(self) -> float:
        """The factor on cos and sin: ``attention_factor``, or HF's default."""
        if self.attention_factor is not None:
            return float(self.attention_factor)
        if self.factor <= 1.0:
            return 1.0
        return math.sqrt(
            1 + math.log(self.factor) / math.log(self.original_max_position_embeddings)
        )

    @classmethod
    def from_hf(cls, p: _HFParams) -> LongRopeScaling:
        original = p.original_max()
        factor = p.get("factor")
        if factor is None:
            factor = p.need("max_position_embeddings", in_config=True) / original
        return cls(
            p.need("short_factor"),
            p.need("long_factor"),
            original,
            factor=factor,
            attention_factor=p.get("attention_factor"),
        )


@dataclasses.dataclass(frozen=True)
class GivenFrequencies(_Scaling):
    """Frequencies given as they are (``RoPE.from_inv_freq``): ``values`` ``(dim // 2,)``
    float32, cos and sin times ``scaling``."""

    values: tuple[float, ...]
    scaling: float = 1.0

    def __post_init__(self):
        values = _f32(self.values)
        if values.ndim != 1 or not values.size or not np.all(np.isfinite(values)):
            raise ValueError(f"inv_freq must be a non-empty finite 1-D array, got {self.values!r}")
        object.__setattr__(self, "values", tuple(float(v) for v in values))
        _check_positive("attention_scaling", self.scaling)

    def inv_freq_np(self, base: float, dim: int) -> np.ndarray:
        if len(self.values) != dim // 2:
            raise ValueError(
                f"inv_freq has {len(self.values)} entries; rotary_dim {dim} needs {dim // 2}"
            )
        return _f32(self.values)

    @property
    def mscale(self) -> float:
        return float(self.scaling)


ROPE_SCALINGS: dict[str, type[_Scaling]] = {
    "linear": LinearScaling,
    "dynamic": DynamicNTKScaling,
    "llama3": Llama3Scaling,
    "yarn": YarnScaling,
    "longrope": LongRopeScaling,
    "proportional": ProportionalScaling,
}
"""HF ``rope_type`` → the scaling class that reads it (``"default"``: no scaling)."""

RopeScaling = (
    LinearScaling
    | DynamicNTKScaling
    | Llama3Scaling
    | YarnScaling
    | LongRopeScaling
    | ProportionalScaling
    | GivenFrequencies
)

# Families whose own code pairs features (2i, 2i+1) (verified by parity/rope_matrix.py).
_INTERLEAVED_FAMILIES = frozenset(
    {
        "bailing_hybrid",
        "codegen",
        "cohere",
        "cohere2",
        "cohere2_moe",
        "deepseek_v2",
        "deepseek_v4",  # on the trailing qk_rope_head_dim features of each head
        "ernie4_5",
        "ernie4_5_moe",
        "ernie4_5_vl_moe",
        "glm",
        "glm4",
        "glm_moe_dsa",
        "glm_ocr",
        "gptj",
        "helium",
        "hy_v4_vl",
        "llama4",
        "llama4_text",
        "longcat_flash",
        "mistral_large4",
        "moonshine_streaming",
        "openai_privacy_filter",
    }
)
# Families that multiply the softmax scale by mscale(factor, mscale_all_dim)².
_MSCALE_SOFTMAX_FAMILIES = frozenset(
    {
        "axk1",
        "axk2",
        "bailing_hybrid",
        "deepseek_v2",
        "deepseek_v3",
        "deepseek_v32",
        "glm4_moe_lite",
        "glm_moe_dsa",
        "hy_v4",
        "hy_v4_vl",
        "longcat_flash",
        "minicpm3",
        "mistral4",
        "mistral_large4",
        "youtu",
    }
)
# Families whose own code is not a RoPE of this module: refused, with the reason.
_REFUSED_FAMILIES = {
    # Hybrid Mamba models whose attention layers apply no positional encoding at all.
    "jamba": "applies no positional encoding in its attention (no RoPE; Mamba carries order)",
    "nemotron_h": "applies no positional encoding in its attention (no RoPE; Mamba carries order)",
    "ernie4_5_vl_moe": "has an M-RoPE of its own (h and w alternate over the first "
    "mrope_section[0] + [1] frequencies, t on the last), which RoPE does not support",
    "nanochat": "rotates by -θ (its rotate_half returns (x2, -x1)); use RoPE.apply at -positions",
}
# Families whose "full_attention" layers apply no positional encoding (NoPE) when the
# predicate of the config holds: from_hf_config(..., layer_type="full_attention") refuses.
_NOPE_FULL_ATTENTION = {
    "cohere2": lambda cfg: True,
    "flint": lambda cfg: True,
    # RoPE on full layers only where dense and prefix_dense_sliding_window_pattern == 1.
    "cohere2_moe": lambda cfg: cfg.get("prefix_dense_sliding_window_pattern") != 1,
    # "global NoPE for hybrid attention": full layers rotate only without sliding windows.
    "exaone4": lambda cfg: cfg.get("sliding_window") is not None,
    "exaone_moe": lambda cfg: cfg.get("sliding_window") is not None,
    "kolibri1": lambda cfg: cfg.get("sliding_window") is not None,
}
# ALiBi families: refused by from_hf_config, pointed to alibi_slopes / alibi_bias.
_ALIBI_FAMILIES = frozenset({"bloom", "mpt"})


def _default_inv_freq(base: float, rotary_dim: int) -> np.ndarray:
    """HF: ``1 / base ** (arange(0, d, 2).float() / d)`` (the exponent a float32 division)."""
    exponent = np.arange(0, rotary_dim, 2, dtype=np.float32) / np.float32(rotary_dim)
    return _f32(np.float32(1.0) / _pow32(base, exponent))


def _as_config_dict(config) -> dict:
    """A config.json dict from a dict or any object with ``to_dict()`` (a ``PretrainedConfig``)."""
    if isinstance(config, dict):
        return config
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        out = to_dict()
        if isinstance(out, dict):
            return out
    raise TypeError(
        f"config must be a dict or have to_dict() (a PretrainedConfig), got {type(config).__name__}"
    )


def _mrope_axes(section: tuple[int, ...], interleaved: bool, half: int) -> np.ndarray:
    """For each of the ``half`` frequencies, which of the (t, h, w) position rows it reads."""
    if not interleaved:  # Qwen2-VL / Qwen2.5-VL: contiguous chunks, chunk i reads row i % 3
        if sum(section) != half:
            raise ValueError(f"mrope_section {list(section)} must sum to rotary_dim // 2 = {half}")
        return np.concatenate([np.full(n, i % 3) for i, n in enumerate(section)]).astype(np.int32)
    # Qwen3-VL: t, then h at 1, 4, ... < 3·section[1], w at 2, 5, ... < 3·section[2] (HF's
    # slices, so the sections need not sum to half: the frequencies past them read t).
    axes = np.zeros(half, np.int32)
    for row, offset in ((1, 1), (2, 2)):
        axes[offset : section[row] * 3 : 3] = row
    return axes


_MROPE_DEFAULT_SECTIONS = {
    "qwen2_vl": (16, 24, 24),
    "qwen2_vl_text": (16, 24, 24),
    "qwen2_5_vl": (16, 24, 24),
    "qwen2_5_vl_text": (16, 24, 24),
    "qwen3_vl": (24, 20, 20),
    "qwen3_vl_text": (24, 20, 20),
    "qwen3_vl_moe": (24, 20, 20),
    "qwen3_vl_moe_text": (24, 20, 20),
    # The sections the other families' modeling code assumes when the config has none.
    "cohere_compass": (24, 20, 20),
    "glm4v": (8, 12, 12),
    "glm4v_moe": (8, 12, 12),
    "glm_image": (8, 12, 12),
    "glm_ocr": (8, 12, 12),
    "paddleocr_vl": (16, 24, 24),
    "qwen2_5_omni": (16, 24, 24),
    "qwen2_5_omni_thinker": (16, 24, 24),
    "qwen3_5": (11, 11, 10),
    "qwen3_5_moe": (11, 11, 10),
    "qwen3_omni_moe": (24, 20, 20),
    "qwen3_omni_moe_thinker": (24, 20, 20),
    "qwen4_exp": (11, 11, 10),
}
_MROPE_INTERLEAVED_FAMILIES = frozenset(
    {
        "cohere_compass",
        "cosmos3_edge",
        "hy_v4_vl",
        "qwen3_5",
        "qwen3_5_moe",
        "qwen3_omni_moe",
        "qwen3_vl",
        "qwen3_vl_moe",
        "qwen4_exp",
    }
)


# The config keys from_hf_config reads (a per-layer override of any other key, such as a
# sliding window, does not change the RoPE).
_ROPE_CONFIG_KEYS = frozenset(
    {
        "attention_head_dim",
        "head_dim",
        "hidden_size",
        "kv_channels",
        "mrope_section",
        "num_attention_heads",
        "partial_rotary_factor",
        "qk_rope_head_dim",
        "rope_interleave",
        "rope_parameters",
        "rope_scaling",
        "rope_theta",
        "rotary_pct",
    }
)


def _layer_overrides(cfg: dict, layer_type: str | None, family: str) -> dict:
    """The config keys that the layers of ``layer_type`` override (HF ``per_layer_config``,
    keyed by layer index; Gemma 4's config.json ``global_head_dim`` of its full layers)."""
    if layer_type is None:
        return {}
    per_layer = cfg.get("per_layer_config")
    types = cfg.get("layer_types")
    if isinstance(per_layer, dict) and per_layer and isinstance(types, list):
        by_index = {int(k): v for k, v in per_layer.items() if str(k).isdigit()}  # "05": {...}
        overrides = [
            {k: v for k, v in (by_index.get(i) or {}).items() if k in _ROPE_CONFIG_KEYS}
            for i, t in enumerate(types)
            if t == layer_type
        ]
        if any(o != overrides[0] for o in overrides):
            raise ValueError(
                f"per_layer_config gives the {layer_type!r} layers of {family} different "
                "overrides; one RoPE cannot serve them all"
            )
        return overrides[0] if overrides else {}
    if layer_type == "full_attention" and cfg.get("global_head_dim"):
        return {"head_dim": cfg["global_head_dim"]}
    return {}


_SUB_CONFIG_PREFERENCE = ("decoder_config", "decoder", "text_config", "thinker_config")


def _no_attention_shape(cfg: dict, family: str) -> str:
    """Why ``cfg`` gives no head dim: a nested config (named as such, with its sub-configs
    and the one to pass), an encoder-decoder one with per-side shapes, or missing keys."""
    subs = [
        k
        for k, v in cfg.items()
        if isinstance(v, dict) and any(x in v for x in ("model_type", "hidden_size", "d_model"))
    ]
    enc_dec = bool(cfg.get("is_encoder_decoder")) or {"encoder", "decoder"} <= set(subs)
    kind = "an encoder-decoder config" if enc_dec else "a composite config"
    if subs:
        pick = next((k for k in _SUB_CONFIG_PREFERENCE if k in subs), None)
        hint = f", e.g. config[{pick!r}]" if pick else ""
        return (
            f"{family}: {kind} of sub-configs ({', '.join(subs)}) with no attention shape of "
            f"its own: pass the sub-config whose attention uses RoPE{hint}"
        )
    sides = sorted(k for k in cfg if k.endswith("attention_heads") and cfg.get(k))
    if sides:
        side = next((k for k in sides if "decoder" in k), sides[0])
        return (
            f"{family}: {kind} with per-side attention shapes ({', '.join(sides)}) and no "
            "num_attention_heads: pass the side that uses RoPE, e.g. {**config, "
            f"'num_attention_heads': config[{side!r}]}}"
        )
    missing = [k for k in ("hidden_size", "num_attention_heads") if not cfg.get(k)]
    return (
        f"config needs head_dim, or hidden_size and num_attention_heads ({family}); "
        f"missing: {', '.join(missing)}"
    )


def _family(model_type: str) -> str:
    """The family of a model type: a multimodal model's ``*_text`` config is its family's."""
    return model_type.removesuffix("_text")


_INT32 = (-(2**31), 2**31 - 1)


def _check_positions(positions) -> None:
    """Host check of concrete positions before JAX narrows them to int32 (wrapping)."""
    if isinstance(positions, Tracer) or (
        not hasattr(positions, "dtype")
        and not isinstance(positions, (list, tuple, int, np.integer))
    ):
        return
    if not getattr(positions, "is_fully_addressable", True):
        return
    values = np.asarray(positions)
    if values.dtype == bool or not (
        np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)
    ):
        raise TypeError(f"positions must be integers, got dtype {values.dtype}")
    if not values.size:
        return
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)):
            raise ValueError("positions must be finite, got NaN or infinity")
        return
    lo, hi = _INT32
    bad = np.flatnonzero((values < lo) | (values > hi))
    if bad.size:
        index = np.unravel_index(int(bad[0]), values.shape)
        raise ValueError(
            f"positions{list(map(int, index))} = {int(values[index])} is outside the int32 "
            f"range [{lo}, {hi}] ({bad.size} of {values.size} entries are)"
        )


@dataclasses.dataclass(frozen=True)
class RoPE:
    """Rotary position embedding of ``(..., T, H, head_dim)`` queries and keys.

    Feature pairs of the first ``rotary_dim`` features rotate by ``position·ω_i``,
    ``ω_i = base^(-2i/rotary_dim)`` (scaled by ``scaling``); the rest pass through.

    * ``layout="half"``: pair ``i`` is features ``(i, i + rotary_dim/2)`` (Hugging
      Face Llama ``rotate_half``, GPT-NeoX);
    * ``layout="interleaved"``: pair ``i`` is features ``(2i, 2i + 1)`` (Meta's Llama,
      GPT-J ``rotate_every_two``, torchtune). ``rope_permute`` converts weights.

    Example::

      >>> rope = RoPE(64)
      >>> q_BxTxHxD = jnp.ones((2, 16, 4, 64))
      >>> rope.apply(q_BxTxHxD, jnp.arange(16)).shape
      (2, 16, 4, 64)

    Calling pattern for speed: jit the function that applies it to q and k, e.g.
    ``jax.jit(lambda q, k, pos: (rope.apply(q, pos), rope.apply(k, pos)))``; the
    angles are computed once and the rotation fuses into one pass over each. On CPU,
    ``performance.jit_into`` of the same function also saves the fresh output
    memory (benchmarks/positions.py).

    Attributes:
      head_dim: features per head, even.
      base: ``θ`` (HF ``rope_theta``), > 0.
      layout: ``"half"`` or ``"interleaved"``.
      rotary_dim: the rotated features (even, ``<= head_dim``); default ``head_dim``.
      scaling: ``None`` or one of ``ROPE_SCALINGS``' classes (``LinearScaling``,
        ``DynamicNTKScaling``, ``Llama3Scaling``, ``YarnScaling``, ``LongRopeScaling``,
        ``ProportionalScaling``), or ``GivenFrequencies`` (``from_inv_freq``).
      mrope_section: M-RoPE (Qwen2-VL family): how many of the ``rotary_dim // 2``
        frequencies read each of the (temporal, height, width) position rows; positions
        may then be ``(3, B, T)``.
      mrope_interleaved: Qwen3-VL's interleaved M-RoPE (rows alternate t, h, w) instead
        of Qwen2-VL's contiguous chunks.
    """

    head_dim: int
    base: float = 10000.0
    layout: Literal["half", "interleaved"] = "half"
    rotary_dim: int | None = None
    scaling: RopeScaling | None = None
    mrope_section: tuple[int, ...] | None = None
    mrope_interleaved: bool = False

    def __post_init__(self):
        check_positive_int("head_dim", self.head_dim)
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even, got {self.head_dim}")
        _check_positive("base", self.base)
        check_one_of("layout", self.layout, LAYOUTS)
        if self.rotary_dim is not None:
            check_positive_int("rotary_dim", self.rotary_dim, maximum=self.head_dim)
            if self.rotary_dim % 2:
                raise ValueError(f"rotary_dim must be even, got {self.rotary_dim}")
        if self.scaling is not None and not isinstance(self.scaling, _Scaling):
            raise TypeError(
                f"scaling must be None or a RoPE scaling, got {type(self.scaling).__name__}"
            )
        if self.mrope_section is not None:
            section = tuple(check_positive_int("mrope_section", s) for s in self.mrope_section)
            if len(section) != 3:
                raise ValueError(f"mrope_section must have 3 entries, got {list(section)}")
            object.__setattr__(self, "mrope_section", section)
            _mrope_axes(section, self.mrope_interleaved, self.dim // 2)
        self.inv_freq_np()  # sizes of given/LongRoPE frequencies are checked here

    @property
    def dim(self) -> int:
        """The number of rotated features (``rotary_dim``, default ``head_dim``)."""
        return self.head_dim if self.rotary_dim is None else self.rotary_dim

    @property
    def attention_factor(self) -> float:
        """The factor on cos and sin (YaRN's or LongRoPE's ``mscale``), else 1."""
        return 1.0 if self.scaling is None else self.scaling.mscale

    @property
    def softmax_scale(self) -> float:
        """The factor by which the family multiplies its softmax scale ``1/√d_qk``:
        DeepSeek's YaRN ``mscale(factor, mscale_all_dim)²``; 1.0 where it does not."""
        return 1.0 if self.scaling is None else self.scaling.softmax_factor()

    def inv_freq_np(self) -> np.ndarray:
        """``inv_freq`` as a host NumPy float32 array (the short-length one for
        ``DynamicNTKScaling`` and ``LongRopeScaling``)."""
        if self.scaling is None:
            return _default_inv_freq(self.base, self.dim)
        return self.scaling.inv_freq_np(self.base, self.dim)

    @property
    def inv_freq(self) -> jax.Array:
        """The angular frequencies ``ω_i``, float32 ``(rotary_dim // 2,)``.

        For ``DynamicNTKScaling`` and ``LongRopeScaling`` these are the ones used while
        ``max(positions) < original_max_position_embeddings``.
        """
        return jnp.asarray(self.inv_freq_np())

    def inv_freq_at(self, positions: jax.Array) -> jax.Array:
        """The frequencies used for ``positions`` (length-dependent scalings read
        ``seq_len = max(positions) + 1``, as Hugging Face does)."""
        if self.scaling is None:
            return self.inv_freq
        return self.scaling.inv_freq_at(self.base, self.dim, jnp.asarray(positions))

    def _dynamic_inv_freq(self, positions: jax.Array) -> jax.Array:
        """HF's dynamic NTK frequencies for ``seq_len = max(positions) + 1``."""
        assert isinstance(self.scaling, DynamicNTKScaling)
        return self.inv_freq_at(positions)

    def cos_sin(self, positions: jax.Array) -> tuple[jax.Array, jax.Array]:
        """float32 ``(cos, sin)`` of the angles ``positions[..., None]·ω``, shape
        ``positions.shape + (rotary_dim // 2,)``, times the attention factor.

        ``positions``: any integer (or float) array; ``float32(position)`` is exact
        below ``2^24``. With ``mrope_section``, ``(3, B, T)`` positions give ``(B, T,
        rotary_dim // 2)``: frequency ``i`` reads the row its section names.
        """
        _check_positions(positions)
        positions = jnp.asarray(positions)
        inv = self.inv_freq_at(positions)
        pos = positions.astype(jnp.float32)
        if self.mrope_section is not None and positions.ndim == 3:
            axes = _mrope_axes(self.mrope_section, self.mrope_interleaved, self.dim // 2)
            angle = jnp.moveaxis(pos[axes], 0, -1) * inv  # (B, T, d/2), row axes[i] for ω_i
        else:
            angle = pos[..., None] * inv
        cos, sin = jnp.cos(angle), jnp.sin(angle)
        factor = self.attention_factor
        if factor != 1.0:
            cos, sin = cos * np.float32(factor), sin * np.float32(factor)
        return cos, sin

    def rotate(self, x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
        """Rotates ``x`` ``(..., T, H, head_dim)`` by precomputed ``(cos, sin)``.

        ``cos``/``sin``: ``(T, rotary_dim // 2)`` or ``(B, T, rotary_dim // 2)`` as from
        ``cos_sin``; they are cast to ``x.dtype`` first, as Hugging Face does. Computes
        ``x·cos + rotate(x)·sin`` over the rotated features, exactly the Hugging Face
        expression (``rotate_half`` / GPT-J's ``rotate_every_two``).
        """
        d = self.dim
        half = d // 2
        cos = cos.astype(x.dtype)[..., None, :]  # broadcast over heads
        sin = sin.astype(x.dtype)[..., None, :]
        x_rot, x_pass = x[..., :d], x[..., d:]
        if self.layout == "half":
            cos_d = jnp.concatenate([cos, cos], axis=-1)
            sin_d = jnp.concatenate([sin, sin], axis=-1)
            # rotate_half: (-x2, x1). Built as the sum of two zero-padded halves (padded with
            # -0.0, the exact additive identity, so every value and sign is kept): XLA:CPU
            # fuses this ~1.5x faster than a concatenate (benchmarks/positions.py).
            no_pad = [(0, 0)] * (x_rot.ndim - 1)
            rotated = jnp.pad(
                -x_rot[..., half:], [*no_pad, (0, half)], constant_values=-0.0
            ) + jnp.pad(x_rot[..., :half], [*no_pad, (half, 0)], constant_values=-0.0)
        else:
            cos_d = jnp.repeat(cos, 2, axis=-1)
            sin_d = jnp.repeat(sin, 2, axis=-1)
            # GPT-J's rotate_every_two: (-x[2i+1], x[2i]) at (2i, 2i+1). Reversing each pair
            # and multiplying by (-1, 1) (exact) is the same array; XLA:CPU fuses it ~3x
            # faster than a stack of strided slices.
            pairs = x_rot.reshape(*x_rot.shape[:-1], half, 2)[..., ::-1]
            rotated = (pairs * jnp.array([-1, 1], x.dtype)).reshape(x_rot.shape)
        out = x_rot * cos_d + rotated * sin_d
        if x_pass.shape[-1] == 0:
            return out
        return jnp.concatenate([out, x_pass], axis=-1)

    def apply(self, x: jax.Array, positions: jax.Array) -> jax.Array:
        """Rotates ``x`` of shape ``(..., T, H, head_dim)`` at ``positions``.

        Args:
          x: queries or keys, ``(..., T, H, head_dim)``, any float dtype.
          positions: ``(T,)`` or ``(B, T)`` integers (offsets for decoding, any
            values for packed sequences; negative ones allowed), or ``(3, B, T)`` with
            ``mrope_section``. Concrete ones are checked on the host: outside int32
            they would wrap.

        Returns:
          The same shape and dtype; features past ``rotary_dim`` unchanged.
        """
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}")
        _check_positions(positions)
        positions = jnp.asarray(positions)
        if x.ndim < 3 or x.shape[-1] != self.head_dim:
            raise ValueError(
                f"x must have shape (..., T, H, head_dim={self.head_dim}), got {tuple(x.shape)}"
            )
        batched = positions.ndim == 2 or (self.mrope_section is not None and positions.ndim == 3)
        if positions.ndim == 3 and (self.mrope_section is None or positions.shape[0] != 3):
            raise ValueError(
                f"positions of shape {tuple(positions.shape)}: (3, B, T) positions need "
                "mrope_section (M-RoPE)"
            )
        if positions.ndim not in (1, 2, 3) or positions.shape[-1] != x.shape[-3]:
            raise ValueError(
                f"positions must have shape (T,) or (B, T) with T={x.shape[-3]} "
                f"(x's axis -3), got {tuple(positions.shape)}"
            )
        if batched and (x.ndim < 4 or x.shape[-4] != positions.shape[-2]):
            raise ValueError(
                f"positions of shape {tuple(positions.shape)} need x of shape "
                f"({positions.shape[-2]}, T, H, head_dim), got {tuple(x.shape)}"
            )
        cos, sin = self.cos_sin(positions)
        return self.rotate(x, cos, sin)

    @classmethod
    def from_inv_freq(
        cls,
        inv_freq,
        *,
        layout: Literal["half", "interleaved"] = "half",
        rotary_dim: int | None = None,
        head_dim: int | None = None,
        attention_scaling: float = 1.0,
    ) -> RoPE:
        """A ``RoPE`` with a model's own frequencies ``inv_freq`` ``(rotary_dim // 2,)``
        (e.g. a checkpoint's ``inv_freq`` buffer), cos and sin times ``attention_scaling``.

        ``rotary_dim`` defaults to ``2·len(inv_freq)``, ``head_dim`` to ``rotary_dim``.

        Example::

          >>> rope = RoPE.from_inv_freq(RoPE(8).inv_freq_np())
          >>> rope.apply(jnp.ones((1, 2, 1, 8)), jnp.arange(2)).shape
          (1, 2, 1, 8)
        """
        scaling = GivenFrequencies(tuple(_f32(inv_freq).ravel().tolist()), attention_scaling)
        if _f32(inv_freq).ndim != 1:
            raise ValueError(f"inv_freq must be 1-D, got shape {_f32(inv_freq).shape}")
        dim = 2 * len(scaling.values) if rotary_dim is None else rotary_dim
        return cls(head_dim or dim, layout=layout, rotary_dim=dim, scaling=scaling)

    @classmethod
    def from_hf_config(cls, config, *, layer_type: str | None = None) -> RoPE:
        """The ``RoPE`` of a Hugging Face config: a ``config.json`` dict or any object
        with ``to_dict()`` (a ``PretrainedConfig``). Multimodal configs are read from
        their ``text_config``.

        Reads ``rope_parameters`` / legacy ``rope_scaling`` (``rope_type`` or legacy
        ``type``: ``default`` or a key of ``ROPE_SCALINGS``), ``rope_theta`` (GPT-NeoX's
        ``rotary_emb_base``), ``partial_rotary_factor`` / ``rotary_pct`` / GPT-J's
        ``rotary_dim``, DeepSeek's ``qk_rope_head_dim``, ``head_dim`` or
        ``hidden_size // num_attention_heads``, and ``mrope_section``. The layout is
        ``"interleaved"`` for the families whose code pairs ``(2i, 2i+1)`` (GPT-J,
        CodeGen, Cohere, GLM, Llama 4, DeepSeek V2, ``rope_interleave``), else
        ``"half"`` (parity/rope_matrix.py checks each family against its own code).

        Per-layer-type parameters (nested ``rope_parameters``, Gemma 3's legacy
        ``rope_local_base_freq``) need ``layer_type`` (e.g. ``"full_attention"``), which
        also selects that layer type's ``per_layer_config`` head dim (Gemma 4's
        ``global_head_dim``).

        Raises:
          ValueError: naming the key and the family: an unsupported ``rope_type``, a
            missing key, a per-layer config without ``layer_type``, an ALiBi config
            (use ``alibi_slopes`` / ``alibi_bias``), layers that apply no RoPE (Cohere 2's
            full-attention layers, Jamba), a nested config (naming the sub-config to pass).
        """
        cfg = _as_config_dict(config)
        model_type = cfg.get("model_type") or "unknown"
        family = f"model_type {model_type!r}"
        if (
            model_type in _ALIBI_FAMILIES
            or cfg.get("alibi") is True
            or (isinstance(cfg.get("attn_config"), dict) and cfg["attn_config"].get("alibi"))
        ):
            raise ValueError(
                f"{family} uses ALiBi, not RoPE: use flax_embed.positions.alibi_slopes / alibi_bias"
            )
        rope_keys = ("rope_parameters", "rope_scaling", "rope_theta", "head_dim", "hidden_size")
        text = cfg.get("text_config")
        own = ("rope_parameters", "rope_scaling", "rope_theta")
        if (
            isinstance(text, dict)
            and any(cfg.get(k) is not None for k in own)
            and any(text.get(k) is not None for k in own)
        ):
            raise ValueError(
                f"{family} has RoPE parameters both at its top level and in text_config: pass "
                "config['text_config'] for the language model, or the sub-config you port"
            )
        if isinstance(text, dict) and not any(cfg.get(k) is not None for k in rope_keys):
            cfg = text
            model_type = cfg.get("model_type") or model_type
            family = f"model_type {model_type!r} (text_config)"
        if cfg.get("use_mem_rope") is False:  # Zamba 2: RoPE only with use_mem_rope
            raise ValueError(
                f"{family}: use_mem_rope is false, so its attention applies no positional "
                "encoding (no RoPE)"
            )
        nope = _NOPE_FULL_ATTENTION.get(_family(model_type))
        if layer_type == "full_attention" and nope is not None and nope(cfg):
            raise ValueError(
                f"{family}: its 'full_attention' layers use no positional encoding (NoPE, "
                "no RoPE): leave their q and k unrotated; RoPE is for its sliding_attention layers"
            )
        cfg = {**cfg, **_layer_overrides(cfg, layer_type, family)}
        params, where = cls._hf_params(cfg, family, layer_type)
        type_key = "rope_type" if "rope_type" in params or "type" not in params else "type"
        rope_type = params.get(type_key) or "default"
        if rope_type == "mrope":  # legacy Qwen2-VL: default frequencies, sections
            rope_type = "default"
        base = (
            params.get("rope_theta")
            or cfg.get("rope_theta")
            or cfg.get("rotary_emb_base")
            or (cfg.get("attn_config") or {}).get("rope_theta")  # DBRX
            or 10000.0
        )
        if cfg.get("qk_rope_head_dim"):  # DeepSeek (MLA): RoPE on the qk_rope part only
            head_dim = cfg["qk_rope_head_dim"]
        else:
            # Zamba 2's attention_head_dim (its kv_channels is Mamba's), JetMoe's kv_channels.
            head_dim = (
                cfg.get("head_dim") or cfg.get("attention_head_dim") or cfg.get("kv_channels")
            )
            if not head_dim:
                hidden = cfg.get("hidden_size", cfg.get("n_embd", cfg.get("d_model")))
                heads = cfg.get("num_attention_heads", cfg.get("n_head", cfg.get("n_heads")))
                if not hidden or not heads:
                    raise ValueError(_no_attention_shape(cfg, family))
                head_dim = hidden // heads
        if _family(model_type) in _REFUSED_FAMILIES:
            raise ValueError(f"{family} {_REFUSED_FAMILIES[_family(model_type)]}")
        interleaved = _family(model_type) in _INTERLEAVED_FAMILIES or bool(
            cfg.get("rope_interleave")
        )
        layout = "interleaved" if interleaved else "half"
        rotary_dim = cfg.get("rotary_dim") if model_type in ("gptj", "codegen") else None
        factor = (
            params.get("partial_rotary_factor")
            or cfg.get("partial_rotary_factor")
            or cfg.get("rotary_pct")
        )
        if cfg.get("qk_rope_head_dim"):
            factor = None  # HF: int(head_dim·partial_rotary_factor) is the qk_rope slice
        if rotary_dim is None and factor is not None:
            rotary_dim = int(head_dim * factor)
        scaling: _Scaling | None = None
        if rope_type != "default":
            scaling_cls = ROPE_SCALINGS.get(rope_type)
            if scaling_cls is None:
                raise ValueError(
                    f"{where}['{type_key}'] = {rope_type!r} is not supported ({family}); "
                    f"supported: default, {', '.join(ROPE_SCALINGS)}"
                )
            scaling = scaling_cls.from_hf(_HFParams(params, cfg, where, family, rope_type))
            if scaling_cls.spans_head_dim:
                rotary_dim = None
        if rotary_dim is not None and rotary_dim % 2:
            # HF: arange(0, d, 2) / d gives (d + 1) // 2 frequencies with exponents over the
            # odd d, and cat((freqs, freqs)) rotates d + 1 features (GLM-4-MoE's default
            # config: int(42 · 0.5) = 21). The same frequencies, given, rotate d + 1 features.
            kind = _Scaling() if scaling is None else scaling
            if type(kind).inv_freq_at is not _Scaling.inv_freq_at:
                raise ValueError(
                    f"{where}: rotary width int(head_dim · partial_rotary_factor) = "
                    f"{rotary_dim} is odd, which rope_type {rope_type!r} (length-dependent) "
                    f"does not support ({family})"
                )
            scaling = GivenFrequencies(
                tuple(kind.inv_freq_np(float(base), rotary_dim)), kind.mscale
            )
            rotary_dim += 1
        section = params.get("mrope_section") or cfg.get("mrope_section")
        if section is None:
            section = _MROPE_DEFAULT_SECTIONS.get(_family(model_type))
        try:
            return cls(
                int(head_dim),
                base=float(base),
                layout=layout,
                rotary_dim=rotary_dim,
                scaling=scaling,  # type: ignore[arg-type]
                mrope_section=tuple(section) if section is not None else None,
                mrope_interleaved=bool(
                    params.get("mrope_interleaved")
                    or _family(model_type) in _MROPE_INTERLEAVED_FAMILIES
                ),
            )
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e} ({family})") from None

    @staticmethod
    def _hf_params(cfg: dict, family: str, layer_type: str | None) -> tuple[dict, str]:
        """The RoPE parameters dict of ``cfg`` (for ``layer_type``) and where it is."""
        rp = cfg.get("rope_parameters")
        rs = cfg.get("rope_scaling")
        nested = isinstance(rp, dict) and any(isinstance(v, dict) for v in rp.values())
        if nested or cfg.get("rope_local_base_freq") is not None:
            if nested:
                assert isinstance(rp, dict)
                types = {k: dict(v) for k, v in rp.items() if isinstance(v, dict)}
                source = "rope_parameters"
            else:  # legacy Gemma 3: sliding layers use rope_local_base_freq, no scaling
                full = dict(rs or rp or {})
                full.setdefault("rope_theta", cfg.get("rope_theta"))
                types = {
                    "sliding_attention": {
                        "rope_type": "default",
                        "rope_theta": cfg["rope_local_base_freq"],
                    },
                    "full_attention": full,
                }
                source = "rope_scaling" if rs else "rope_parameters"
            if layer_type is None:
                raise ValueError(
                    f"{family} has RoPE parameters per layer type ({', '.join(types)}): "
                    "pass layer_type=..."
                )
            if layer_type not in types:
                raise ValueError(
                    f"layer_type {layer_type!r} is not one of {family}'s layer types "
                    f"({', '.join(types)})"
                )
            where = (
                f"{source}['{layer_type}']"
                if nested
                else ("rope_local_base_freq" if layer_type == "sliding_attention" else source)
            )
            return types[layer_type], where
        if layer_type is not None:
            known = cfg.get("layer_types")
            if isinstance(known, list) and known and layer_type not in known:
                raise ValueError(
                    f"layer_type {layer_type!r} is not one of {family}'s layer types "
                    f"({', '.join(dict.fromkeys(known))})"
                )
        if isinstance(rp, dict) and rp:
            return dict(rp), "rope_parameters"
        return dict(rs or {}), "rope_scaling"


def rope_permute(w: jax.Array, num_heads: int, *, to: str = "half") -> jax.Array:
    """Permutes q/k projection rows between the interleaved and half RoPE layouts.

    ``w``: a torch ``nn.Linear`` weight ``(num_heads·head_dim, d_model)`` (or a bias
    ``(num_heads·head_dim,)``). ``to="half"`` turns a checkpoint trained with
    interleaved pairs (Meta's Llama) into one that gives the same attention scores
    with the half layout (Hugging Face's ``permute`` in ``convert_llama_weights_to_hf``):
    within each head, row ``2i`` moves to ``i`` and row ``2i+1`` to ``i + head_dim/2``.
    ``to="interleaved"`` is its inverse. A pure permutation: exact in every dtype.

    Example::

      >>> w = jnp.arange(8.0)[:, None]
      >>> rope_permute(w, 1)[:, 0].tolist()
      [0.0, 2.0, 4.0, 6.0, 1.0, 3.0, 5.0, 7.0]
    """
    num_heads = check_positive_int("num_heads", num_heads)
    check_one_of("to", to, LAYOUTS)
    w = jnp.asarray(w)
    if w.ndim not in (1, 2):
        raise ValueError(f"w must be a weight (out, in) or a bias (out,), got shape {w.shape}")
    rows = w.shape[0]
    if rows % num_heads or (rows // num_heads) % 2:
        raise ValueError(
            f"w's first dimension {rows} must be num_heads={num_heads} times an even head_dim"
        )
    half = rows // num_heads // 2
    rest = w.shape[1:]
    if to == "half":
        return w.reshape(num_heads, half, 2, *rest).swapaxes(1, 2).reshape(w.shape)
    return w.reshape(num_heads, 2, half, *rest).swapaxes(1, 2).reshape(w.shape)


# --- ALiBi ---------------------------------------------------------------------------------


def _slopes_f64(n: int) -> list[float]:
    """The ALiBi paper's ``get_slopes`` (Press et al., reference code), in float64."""

    def power_of_2(m: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(m) - 3)))
        return [start * start**i for i in range(m)]

    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + _slopes_f64(2 * closest)[0::2][: n - closest]


def alibi_slopes(num_heads: int) -> jax.Array:
    """ALiBi's per-head slopes, float32 ``(num_heads,)``.

    For ``n`` a power of two, the geometric sequence ``2^(-8/n·k)``, ``k = 1..n``;
    otherwise the ``2^⌊log2 n⌋`` slopes of that power of two followed by every other
    slope of the next power of two (the paper's rule; Hugging Face BLOOM's
    ``_get_alibi_slopes``). Powers of two computed exactly in float64, rounded once.

    Example::

      >>> alibi_slopes(8).tolist()
      [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625]
    """
    num_heads = check_positive_int("num_heads", num_heads)
    return jnp.asarray(_f32(_slopes_f64(num_heads)))


def alibi_bias(
    num_heads: int,
    query_len: int,
    key_len: int,
    *,
    offset: int = 0,
    positions: jax.Array | None = None,
) -> jax.Array:
    """ALiBi's attention bias, float32 ``(num_heads, query_len, key_len)``.

    Entry ``[h, q, k]`` is ``slope_h·(k - (q + offset))``: zero on the diagonal of a
    causal cache (``offset = key_len - query_len`` for the last queries), negative
    for earlier keys. Adds to the scores before the softmax (mask future keys
    separately). Softmax-equivalent to BLOOM's ``build_alibi_tensor``
    (``slope_h·k``), which differs by ``slope_h·(q + offset)`` per query row.

    Example::

      >>> alibi_bias(1, 2, 3)[0].tolist()
      [[0.0, 0.00390625, 0.0078125], [-0.00390625, 0.0, 0.00390625]]

    Packed rows: ``positions`` ``(B, T)`` (``inputs_positions``, restarting per
    document; ``query_len == key_len == T``, ``offset`` 0) gives ``(B, num_heads, T,
    T)`` with entry ``slope_h·(positions[b, k] - positions[b, q])``: within a
    document the same as the document alone; pair it with ``segment_mask``, which
    masks the entries across documents.
    """
    query_len = check_positive_int("query_len", query_len, maximum=2**31 - 1)
    key_len = check_positive_int("key_len", key_len, maximum=2**31 - 1)
    # Distances are int32 (JAX's default): the last query's position, offset + query_len - 1,
    # must fit, or it wraps and flips the bias's sign.
    offset = check_positive_int("offset", offset, minimum=0, maximum=2**31 - query_len)
    slopes = alibi_slopes(num_heads)
    if positions is not None:
        pos_BxT = jnp.asarray(positions)
        if pos_BxT.ndim != 2 or query_len != key_len or pos_BxT.shape[1] != key_len or offset:
            raise ValueError(
                f"positions must have shape (B, T) with T == query_len == key_len and "
                f"offset 0, got {tuple(pos_BxT.shape)}, query_len={query_len}, "
                f"key_len={key_len}, offset={offset}"
            )
        distance_BxTxT = pos_BxT[:, None, :] - pos_BxT[:, :, None]
        return slopes[None, :, None, None] * distance_BxTxT[:, None].astype(jnp.float32)
    distance = jnp.arange(key_len)[None, :] - (jnp.arange(query_len)[:, None] + offset)
    return slopes[:, None, None] * distance.astype(jnp.float32)


def segment_mask(
    q_segment_ids: jax.Array, kv_segment_ids: jax.Array | None = None, *, causal: bool = True
) -> jax.Array:
    """The boolean attention mask of packed rows, ``(B, 1, Tq, Tk)`` (True: attend).

    Query ``q`` may attend key ``k`` when both belong to the same segment (document
    piece), that segment is not padding (segment id 0 is never attended, nor does a
    padding query attend anything) and, with ``causal=True``, ``k <= q``. A padding
    query's row is all False: give its scores a large negative value (not ``-inf``)
    or ignore its output, as its targets are padding too.

    Example::

      >>> seg = jnp.array([[1, 1, 2, 0]])
      >>> segment_mask(seg)[0, 0].astype(int).tolist()
      [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]

    Args:
      q_segment_ids: ``(B, Tq)`` integer segment ids (``inputs_segment_ids``).
      kv_segment_ids: ``(B, Tk)``; default ``q_segment_ids``.
      causal: also mask future keys (key index > query index; with ``Tq != Tk`` the
        queries are the last ``Tq`` of the keys' positions).

    Returns:
      ``(B, 1, Tq, Tk)`` bool, broadcasting over heads.
    """
    q_BxT = jnp.asarray(q_segment_ids)
    kv_BxS = q_BxT if kv_segment_ids is None else jnp.asarray(kv_segment_ids)
    if q_BxT.ndim != 2 or kv_BxS.ndim != 2 or q_BxT.shape[0] != kv_BxS.shape[0]:
        raise ValueError(
            "q_segment_ids and kv_segment_ids must have shapes (B, Tq) and (B, Tk), got "
            f"{tuple(q_BxT.shape)} and {tuple(kv_BxS.shape)}"
        )
    same = q_BxT[:, :, None] == kv_BxS[:, None, :]
    mask = same & (q_BxT[:, :, None] != 0) & (kv_BxS[:, None, :] != 0)
    if causal:
        tq, tk = q_BxT.shape[1], kv_BxS.shape[1]
        q_pos = jnp.arange(tq)[:, None] + (tk - tq)
        mask = mask & (jnp.arange(tk)[None, :] <= q_pos)
    return mask[:, None, :, :]
