"""Positional encodings: sinusoidal tables, RoPE (both layouts, partial, scaled), ALiBi.

Pure, jit-compatible functions over ``jax.Array`` in JAX's axis order, each proven
against its PyTorch original by the parity suite (``parity/positions.py``):

* ``sinusoidal_table``: the three published sinusoidal tables (Hugging Face
  DistilBERT, Marian, M2M100 / fairseq / tensor2tensor);
* ``RoPE``: rotary embeddings in the half-split layout (Hugging Face Llama,
  GPT-NeoX) or the interleaved one (Meta's Llama, GPT-J), partial rotary
  dimensions, and the scalings of ``transformers.modeling_rope_utils``
  (``LinearScaling``, ``DynamicNTKScaling``, ``Llama3Scaling``, ``YarnScaling``);
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
does. Positions of ``sinusoidal_table`` rows are table indices and are checked
by the module that looks them up (``InputEmbedding(position="sinusoidal")``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from flax_embed._validation import check_positive_int

__all__ = [
    "DynamicNTKScaling",
    "LinearScaling",
    "Llama3Scaling",
    "RoPE",
    "RopeScaling",
    "SINUSOIDAL_VARIANTS",
    "YarnScaling",
    "alibi_bias",
    "alibi_slopes",
    "rope_permute",
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


def _check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


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
    _check_choice("variant", variant, SINUSOIDAL_VARIANTS)
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


@dataclasses.dataclass(frozen=True)
class LinearScaling:
    """Position interpolation: every frequency divided by ``factor`` (HF ``"linear"``)."""

    factor: float

    def __post_init__(self):
        _check_positive("factor", self.factor)


@dataclasses.dataclass(frozen=True)
class DynamicNTKScaling:
    """Dynamic NTK (HF ``"dynamic"``): for sequences longer than
    ``original_max_position_embeddings`` (``seq_len = max(positions) + 1``, HF's
    ``max_position_embeddings``), the base grows to
    ``base·(factor·seq_len/original - (factor - 1))^(d/(d-2))``; shorter ones are unscaled.
    Stateless: each call uses its own ``seq_len`` (HF's module keeps the longest seen).
    """

    factor: float
    original_max_position_embeddings: int

    def __post_init__(self):
        _check_positive("factor", self.factor)
        check_positive_int(
            "original_max_position_embeddings", self.original_max_position_embeddings
        )


@dataclasses.dataclass(frozen=True)
class Llama3Scaling:
    """Llama 3.1's frequency-dependent scaling (HF ``"llama3"``): wavelengths longer than
    ``original/low_freq_factor`` divided by ``factor``, shorter than
    ``original/high_freq_factor`` kept, a smooth blend in between."""

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
        if self.low_freq_factor >= self.high_freq_factor:
            raise ValueError(
                f"low_freq_factor must be < high_freq_factor, got {self.low_freq_factor} "
                f">= {self.high_freq_factor}"
            )


@dataclasses.dataclass(frozen=True)
class YarnScaling:
    """YaRN (HF ``"yarn"``): interpolation by ``factor`` for low frequencies,
    extrapolation for high ones, a linear ramp between the dimensions given by
    ``beta_fast``/``beta_slow`` rotations over ``original_max_position_embeddings``;
    cos and sin are multiplied by ``attention_factor`` (default ``0.1·ln(factor) + 1``).
    ``truncate`` rounds the ramp's ends outward to integers, as HF does by default."""

    factor: float
    original_max_position_embeddings: int
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    attention_factor: float | None = None
    truncate: bool = True

    def __post_init__(self):
        for name in ("factor", "beta_fast", "beta_slow"):
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
        return 1.0 if self.factor <= 1 else 0.1 * math.log(self.factor) + 1.0


RopeScaling = LinearScaling | DynamicNTKScaling | Llama3Scaling | YarnScaling


def _default_inv_freq(base: float, rotary_dim: int) -> np.ndarray:
    """HF: ``1 / base ** (arange(0, d, 2).float() / d)`` (the exponent a float32 division)."""
    exponent = np.arange(0, rotary_dim, 2, dtype=np.float32) / np.float32(rotary_dim)
    return _f32(np.float32(1.0) / _pow32(base, exponent))


def _llama3_inv_freq(inv: np.ndarray, s: Llama3Scaling) -> np.ndarray:
    """HF ``_compute_llama3_parameters``, its float32 operations in order."""
    old = s.original_max_position_embeddings
    low_wavelen, high_wavelen = old / s.low_freq_factor, old / s.high_freq_factor
    wavelen = _f32(np.float32(2 * math.pi) / inv)
    scaled = np.where(wavelen > low_wavelen, _f32(inv / np.float32(s.factor)), inv)
    smooth = _f32(
        (_f32(np.float32(old) / wavelen) - np.float32(s.low_freq_factor))
        / np.float32(s.high_freq_factor - s.low_freq_factor)
    )
    smoothed = _f32(
        _f32(_f32(np.float32(1) - smooth) * scaled) / np.float32(s.factor) + _f32(smooth * scaled)
    )
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return _f32(np.where(medium, smoothed, scaled))


def _yarn_inv_freq(base: float, dim: int, s: YarnScaling) -> np.ndarray:
    """HF ``_compute_yarn_parameters``, its float32 operations in order."""
    pos_freqs = _pow32(base, np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim))
    extrapolation = _f32(np.float32(1) / pos_freqs)
    interpolation = _f32(np.float32(1) / _f32(np.float32(s.factor) * pos_freqs))

    def correction_dim(rotations: float) -> float:
        original = s.original_max_position_embeddings
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(s.beta_fast), correction_dim(s.beta_slow)
    if s.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # HF: "prevent singularity"
    ramp = np.clip(
        _f32(
            _f32(np.arange(dim // 2, dtype=np.float32) - np.float32(low)) / np.float32(high - low)
        ),
        0,
        1,
    )
    extrapolation_factor = _f32(np.float32(1) - ramp)
    return _f32(
        _f32(interpolation * _f32(np.float32(1) - extrapolation_factor))
        + _f32(extrapolation * extrapolation_factor)
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
      scaling: ``None`` or a ``LinearScaling``/``DynamicNTKScaling``/``Llama3Scaling``/
        ``YarnScaling``.
    """

    head_dim: int
    base: float = 10000.0
    layout: Literal["half", "interleaved"] = "half"
    rotary_dim: int | None = None
    scaling: RopeScaling | None = None

    def __post_init__(self):
        check_positive_int("head_dim", self.head_dim)
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even, got {self.head_dim}")
        _check_positive("base", self.base)
        _check_choice("layout", self.layout, LAYOUTS)
        if self.rotary_dim is not None:
            check_positive_int("rotary_dim", self.rotary_dim)
            if self.rotary_dim % 2:
                raise ValueError(f"rotary_dim must be even, got {self.rotary_dim}")
            if self.rotary_dim > self.head_dim:
                raise ValueError(
                    f"rotary_dim must be <= head_dim={self.head_dim}, got {self.rotary_dim}"
                )
        if self.scaling is not None and not isinstance(
            self.scaling, (LinearScaling, DynamicNTKScaling, Llama3Scaling, YarnScaling)
        ):
            raise TypeError(
                f"scaling must be None or a RoPE scaling, got {type(self.scaling).__name__}"
            )

    @property
    def dim(self) -> int:
        """The number of rotated features (``rotary_dim``, default ``head_dim``)."""
        return self.head_dim if self.rotary_dim is None else self.rotary_dim

    @property
    def attention_factor(self) -> float:
        """The factor on cos and sin: YaRN's ``mscale``, else 1."""
        return self.scaling.mscale if isinstance(self.scaling, YarnScaling) else 1.0

    def inv_freq_np(self) -> np.ndarray:
        """``inv_freq`` as a host NumPy float32 array (unscaled for ``DynamicNTKScaling``)."""
        s = self.scaling
        if isinstance(s, YarnScaling):
            return _yarn_inv_freq(self.base, self.dim, s)
        inv = _default_inv_freq(self.base, self.dim)
        if isinstance(s, LinearScaling):
            return _f32(inv / np.float32(s.factor))
        if isinstance(s, Llama3Scaling):
            return _llama3_inv_freq(inv, s)
        return inv

    @property
    def inv_freq(self) -> jax.Array:
        """The angular frequencies ``ω_i``, float32 ``(rotary_dim // 2,)``.

        For ``DynamicNTKScaling`` these are the unscaled ones, used while
        ``max(positions) < original_max_position_embeddings``.
        """
        return jnp.asarray(self.inv_freq_np())

    def _dynamic_inv_freq(self, positions: jax.Array) -> jax.Array:
        """HF's dynamic NTK frequencies for ``seq_len = max(positions) + 1`` (float32 ops)."""
        s = self.scaling
        assert isinstance(s, DynamicNTKScaling)
        d = self.dim
        seq_len = jnp.max(positions).astype(jnp.float32) + 1
        original = np.float32(s.original_max_position_embeddings)
        ratio = (np.float32(s.factor) * seq_len / original) - np.float32(s.factor - 1)
        # base' = base·ratio^(d/(d-2)); inv = base'^(-2i/d) = exp(-(2i/d)·ln(base')).
        log_base = np.float32(math.log(self.base)) + np.float32(d / (d - 2)) * jnp.log(ratio)
        exponent = jnp.asarray(np.arange(0, d, 2, dtype=np.float32) / np.float32(d))
        scaled = jnp.exp(-exponent * log_base)
        return jnp.where(seq_len > original, scaled, self.inv_freq)

    def cos_sin(self, positions: jax.Array) -> tuple[jax.Array, jax.Array]:
        """float32 ``(cos, sin)`` of the angles ``positions[..., None]·ω``, shape
        ``positions.shape + (rotary_dim // 2,)``, times YaRN's attention factor.

        ``positions``: any integer (or float) array; ``float32(position)`` is exact
        below ``2^24``.
        """
        positions = jnp.asarray(positions)
        if isinstance(self.scaling, DynamicNTKScaling):
            inv = self._dynamic_inv_freq(positions)
        else:
            inv = self.inv_freq
        angle = positions.astype(jnp.float32)[..., None] * inv
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
            values for packed sequences; negative ones allowed).

        Returns:
          The same shape and dtype; features past ``rotary_dim`` unchanged.
        """
        x = jnp.asarray(x)
        positions = jnp.asarray(positions)
        if x.ndim < 3 or x.shape[-1] != self.head_dim:
            raise ValueError(
                f"x must have shape (..., T, H, head_dim={self.head_dim}), got {tuple(x.shape)}"
            )
        if positions.ndim not in (1, 2) or positions.shape[-1] != x.shape[-3]:
            raise ValueError(
                f"positions must have shape (T,) or (B, T) with T={x.shape[-3]} "
                f"(x's axis -3), got {tuple(positions.shape)}"
            )
        if positions.ndim == 2 and (x.ndim < 4 or x.shape[-4] != positions.shape[0]):
            raise ValueError(
                f"positions of shape {tuple(positions.shape)} need x of shape "
                f"({positions.shape[0]}, T, H, head_dim), got {tuple(x.shape)}"
            )
        cos, sin = self.cos_sin(positions)
        return self.rotate(x, cos, sin)

    @classmethod
    def from_hf_config(cls, config: dict) -> RoPE:
        """The ``RoPE`` of a Hugging Face ``config.json`` dict.

        Reads ``rope_theta`` (or ``rope_parameters['rope_theta']``, GPT-NeoX's
        ``rotary_emb_base``), ``rope_parameters`` / ``rope_scaling`` (types
        ``default``, ``linear``, ``dynamic``, ``llama3``, ``yarn``),
        ``partial_rotary_factor`` / ``rotary_pct`` / GPT-J's ``rotary_dim``, and
        ``head_dim`` or ``hidden_size // num_attention_heads``. The layout is
        ``"interleaved"`` for GPT-J and CodeGen (``model_type``), ``"half"`` otherwise.

        Raises:
          ValueError: naming the key, for a scaling type it does not support or a
            missing size.
        """
        params = dict(config.get("rope_parameters") or {})
        scaling_key = "rope_parameters" if params else "rope_scaling"
        scaling_cfg = params if params else dict(config.get("rope_scaling") or {})
        base = (
            params.get("rope_theta")
            or config.get("rope_theta")
            or config.get("rotary_emb_base")
            or 10000.0
        )
        head_dim = config.get("head_dim")
        if head_dim is None:
            hidden = config.get("hidden_size", config.get("n_embd"))
            heads = config.get("num_attention_heads", config.get("n_head"))
            if hidden is None or heads is None:
                raise ValueError("config needs head_dim, or hidden_size and num_attention_heads")
            head_dim = hidden // heads
        model_type = config.get("model_type", "")
        layout = "interleaved" if model_type in ("gptj", "codegen") else "half"
        rotary_dim = config.get("rotary_dim") if layout == "interleaved" else None
        factor = (
            params.get("partial_rotary_factor")
            or config.get("partial_rotary_factor")
            or config.get("rotary_pct")
        )
        if rotary_dim is None and factor is not None:
            rotary_dim = int(head_dim * factor)
        rope_type = scaling_cfg.get("rope_type", scaling_cfg.get("type", "default"))
        scaling: RopeScaling | None
        original = scaling_cfg.get(
            "original_max_position_embeddings", config.get("max_position_embeddings")
        )

        def need(key: str, source: dict = scaling_cfg, where: str = scaling_key):
            if source.get(key) is None:
                raise ValueError(f"{where}['{key}'] is required for rope_type {rope_type!r}")
            return source[key]

        if rope_type == "default":
            scaling = None
        elif rope_type == "linear":
            scaling = LinearScaling(need("factor"))
        elif rope_type == "dynamic":
            # HF's dynamic NTK scales past config.max_position_embeddings.
            scaling = DynamicNTKScaling(
                need("factor"), need("max_position_embeddings", config, "config")
            )
        elif rope_type == "llama3":
            scaling = Llama3Scaling(
                need("factor"),
                need("low_freq_factor"),
                need("high_freq_factor"),
                need("original_max_position_embeddings"),
            )
        elif rope_type == "yarn":
            if original is None:
                original = need("original_max_position_embeddings")
            yarn_factor = scaling_cfg.get("factor") or (
                need("max_position_embeddings", config, "config") / original
            )
            attention_factor = scaling_cfg.get("attention_factor")
            mscale, mscale_all = scaling_cfg.get("mscale"), scaling_cfg.get("mscale_all_dim")
            if attention_factor is None and mscale and mscale_all:

                def get_mscale(scale, m):
                    return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

                attention_factor = get_mscale(yarn_factor, mscale) / get_mscale(
                    yarn_factor, mscale_all
                )
            scaling = YarnScaling(
                yarn_factor,
                original,
                beta_fast=scaling_cfg.get("beta_fast") or 32.0,
                beta_slow=scaling_cfg.get("beta_slow") or 1.0,
                attention_factor=attention_factor,
                truncate=scaling_cfg.get("truncate", True),
            )
        else:
            raise ValueError(
                f"{scaling_key}['rope_type'] = {rope_type!r} is not supported "
                "(supported: default, linear, dynamic, llama3, yarn)"
            )
        return cls(
            int(head_dim), base=float(base), layout=layout, rotary_dim=rotary_dim, scaling=scaling
        )


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
    _check_choice("to", to, LAYOUTS)
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


def alibi_bias(num_heads: int, query_len: int, key_len: int, *, offset: int = 0) -> jax.Array:
    """ALiBi's attention bias, float32 ``(num_heads, query_len, key_len)``.

    Entry ``[h, q, k]`` is ``slope_h·(k - (q + offset))``: zero on the diagonal of a
    causal cache (``offset = key_len - query_len`` for the last queries), negative
    for earlier keys. Adds to the scores before the softmax (mask future keys
    separately). Softmax-equivalent to BLOOM's ``build_alibi_tensor``
    (``slope_h·k``), which differs by ``slope_h·(q + offset)`` per query row.

    Example::

      >>> alibi_bias(1, 2, 3)[0].tolist()
      [[0.0, 0.00390625, 0.0078125], [-0.00390625, 0.0, 0.00390625]]
    """
    query_len = check_positive_int("query_len", query_len)
    key_len = check_positive_int("key_len", key_len)
    offset = check_positive_int("offset", offset, minimum=0)
    slopes = alibi_slopes(num_heads)
    distance = jnp.arange(key_len)[None, :] - (jnp.arange(query_len)[:, None] + offset)
    return slopes[:, None, None] * distance.astype(jnp.float32)
