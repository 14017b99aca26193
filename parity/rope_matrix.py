"""The RoPE coverage matrix: ``RoPE.from_hf_config`` against each family's own code.

For every model type whose ``transformers`` modeling module defines a rotary
embedding (plus the ALiBi families ``bloom``, ``falcon`` with ``alibi=True``, ``mpt``),
the family's default config (``AutoConfig.for_model``) goes through

* the family's own rotary module (its ``*RotaryEmbedding`` class, instantiated with
  the config, for each layer type when the parameters are per layer type) and its
  own ``apply_rotary_pos_emb`` (or ``apply_rotary_emb`` with complex ``freqs_cis``,
  or GPT-J's sinusoidal table), on random float32 q/k ``(1, 2 heads, 48, head_dim)``
  at short positions (``0..47``) and at positions spread over ``[0, P]``, ``P`` =
  131,071 or the config's maximum, whichever is larger (the long regime of dynamic
  NTK and LongRoPE); M-RoPE families get three distinct position rows ``(3, 1, T)``;
* ``RoPE.from_hf_config(config)`` (with ``layer_type``), jitted ``apply``.

Only the rotary module is built, not the model: no shrinking is needed, and models
that need image or audio inputs are reached too. Each model type ends in one state:

* ``equal``: every entry within the bound of ``parity.positions`` (``|Δo| <=
  (|x|+|r|)·(Δcs + 4U·g)``, ``Δcs = g·(θ·(rho+2U) + 4U) + 2U·g``, ``rho`` the inverse-
  frequency bound of the scaling, 16U for LongRoPE and given frequencies);
* ``refused``: ``from_hf_config`` raised a ``ValueError`` (its message is the reason);
* ``not harnessable``: the family's code could not be driven this way (the reason);
* ``DIFFERENT``: a silently wrong result. There must be none.

Run: ``python -m parity.rope_matrix`` (prints the table), ``--write-docs`` (writes
``docs/results/rope_matrix.md``), ``--only llama,cohere`` (a subset).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import signal
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np

from flax_embed import positions as P
from parity.common import on_backend
from parity.positions import bounded, inv_freq_bound, sincos_slack
from parity.result import CheckResult

U = 2.0**-24
MAX_POSITION = 131_071
T = 48
ALIBI = ("bloom", "mpt")
_PHI3_128K = {
    "rope_type": "longrope",
    "rope_theta": 10000.0,
    "short_factor": [1.0 + 0.05 * i for i in range(48)],
    "long_factor": [1.0 + 0.8 * i for i in range(48)],
}
VARIANTS = {
    # name: (model_type, config overrides): the scalings flagship checkpoints use.
    "falcon-alibi": ("falcon", {"alibi": True}),
    "llama+llama3": ("llama", {"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5,
        "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}}),
    "llama4_text+llama3 l=h": ("llama4_text", {"rope_parameters": {"rope_type": "llama3",
        "rope_theta": 5e5, "factor": 16.0, "low_freq_factor": 1.0, "high_freq_factor": 1.0,
        "original_max_position_embeddings": 8192}}),
    "llama+dynamic": ("llama", {"rope_parameters": {"rope_type": "dynamic", "rope_theta": 1e4,
        "factor": 4.0}}),
    "qwen2+yarn": ("qwen2", {"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6,
        "factor": 4.0, "original_max_position_embeddings": 32768}}),
    "deepseek_v3+yarn mscale": ("deepseek_v3", {"rope_interleave": True, "rope_parameters": {
        "rope_type": "yarn", "rope_theta": 1e4, "factor": 40.0, "mscale": 1.0,
        "mscale_all_dim": 1.0, "beta_fast": 32, "beta_slow": 1,
        "original_max_position_embeddings": 4096}, "max_position_embeddings": 163840}),
    "phi3+longrope (128k)": ("phi3", {"hidden_size": 3072, "num_attention_heads": 32,
        "max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
        "rope_parameters": _PHI3_128K}),
    "phi3+longrope partial (Phi-4-mini)": ("phi3", {"hidden_size": 3072,
        "num_attention_heads": 24, "partial_rotary_factor": 0.75,
        "max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
        "rope_parameters": {**_PHI3_128K, "partial_rotary_factor": 0.75,
            "short_factor": _PHI3_128K["short_factor"][:48],
            "long_factor": _PHI3_128K["long_factor"][:48]}}),
    "glm4_moe (GLM-4.5)": ("glm4_moe", {"hidden_size": 5120, "num_attention_heads": 96,
        "head_dim": 128, "max_position_embeddings": 131072, "rope_parameters": {
        "rope_type": "default", "rope_theta": 1e6, "partial_rotary_factor": 0.5}}),
    "zamba2+use_mem_rope": ("zamba2", {"use_mem_rope": True}),
    "gemma3_text+linear full": ("gemma3_text", {"rope_parameters": {
        "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
        "full_attention": {"rope_type": "linear", "rope_theta": 1e6, "factor": 8.0}}}),
}  # fmt: skip
DOCS = Path(__file__).resolve().parent.parent / "docs" / "results" / "rope_matrix.md"
_SKIP_CLASS_WORDS = ("Vision", "Audio", "Patch", "2D", "Vit", "Image", "Video", "Encoder", "Speech")


@dataclasses.dataclass
class Row:
    model_type: str
    status: str
    layout: str = ""
    rotary_dim: str = ""
    scaling: str = ""
    max_ratio: float = 0.0  # max |Δ| / bound over all entries
    max_abs: float = 0.0
    note: str = ""


def model_types() -> list[str]:
    """The model types whose modeling module defines a rotary embedding, plus ALiBi ones."""
    import transformers

    root = Path(transformers.__file__).parent / "models"
    found = set()
    for path in root.glob("*/modeling_*.py"):
        text = path.read_text(encoding="utf-8", errors="replace")
        if "RotaryEmbedding(" in text or "def apply_rotary_pos_emb" in text:
            found.add(path.parent.name)
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    names = set(CONFIG_MAPPING_NAMES)
    types = []
    for folder in sorted(found):
        # The folder's model types: the folder itself and its *_text sub-config if any.
        # (model types may spell the folder's "_" as "-": modernbert-decoder).
        types += [t for t in (folder, folder.replace("_", "-")) if t in names][:1] or [folder]
    return types + [t for t in ALIBI if t not in types] + list(VARIANTS)


class _Timeout(Exception):
    pass


def _alarm(_signum, _frame):
    raise _Timeout


def _modeling_module(config):
    """The modeling module of ``config``'s model type."""
    module = type(config).__module__.replace(".configuration_", ".modeling_")
    return importlib.import_module(module)


def _rotary_classes(module):
    classes = [
        obj
        for name, obj in vars(module).items()
        if inspect.isclass(obj)
        and name.endswith("RotaryEmbedding")
        and obj.__module__ == module.__name__
    ]
    classes.sort(
        key=lambda c: (any(w in c.__name__ for w in _SKIP_CLASS_WORDS), "Text" not in c.__name__)
    )
    return classes


def _text_config(config):
    for name in ("text_config", "language_config", "llm_config"):
        sub = getattr(config, name, None)
        if sub is not None and hasattr(sub, "to_dict"):
            return sub
    return config


def _positions(max_position: int, mrope: bool) -> list[np.ndarray]:
    short = np.arange(T, dtype=np.int64)[None]
    long = np.linspace(0, max_position, T).astype(np.int64)[None]
    out = [short, long]
    if mrope:  # three distinct rows: t, h, w
        out = [np.stack([p, p // 2, p // 3]) for p in out]
    return out


def _bound(rope: P.RoPE, pos: np.ndarray, x: np.ndarray, backend: str = "cpu") -> np.ndarray:
    """The entry-wise bound of ``parity.positions`` for ``rope.apply(x, pos)`` (x (1,T,H,D))."""

    known = (type(None), P.LinearScaling, P.YarnScaling, P.Llama3Scaling, P.DynamicNTKScaling)
    rho = inv_freq_bound(rope, pos) if isinstance(rope.scaling, known) else 16 * U
    g = rope.attention_factor
    inv = np.maximum(np.asarray(rope.inv_freq_at(pos)), rope.inv_freq_np()).astype(np.float64)
    p = (
        np.abs(pos.astype(np.float64)).max(axis=0)[0]
        if pos.ndim == 3
        else np.abs(pos[0].astype(np.float64))
    )
    theta = p[:, None] * inv
    cs = g * (theta * (rho + 2 * U) + 4 * U + sincos_slack(backend)) + 2 * U * g
    d = rope.dim
    per = np.concatenate([cs, cs], -1) if rope.layout == "half" else np.repeat(cs, 2, -1)
    xr = x[..., :d]
    if rope.layout == "half":
        partner = np.concatenate([xr[..., d // 2 :], xr[..., : d // 2]], -1)
    else:
        partner = xr.reshape(*xr.shape[:-1], -1, 2)[..., ::-1].reshape(xr.shape)
    rot = (np.abs(xr) + np.abs(partner)) * (per[None, :, None, :] + 4 * U * g)
    return np.concatenate([rot, np.zeros(x[..., d:].shape)], -1)


def _hf_apply(module, config, rotary, x_BHTD, pos, layer_type):
    """The family's rotated x ``(B, T, H, D)`` and whether its output is de-interleaved."""
    import torch

    with torch.no_grad():
        return _hf_apply_no_grad(module, config, rotary, x_BHTD, pos, layer_type)


def _hf_apply_no_grad(module, config, rotary, x_BHTD, pos, layer_type):
    import torch

    q = torch.from_numpy(x_BHTD)
    kwargs = {"layer_type": layer_type} if layer_type else {}
    out = rotary(q, torch.from_numpy(pos), **kwargs)
    if isinstance(out, torch.Tensor) and out.is_complex():  # freqs_cis (Llama 4, DeepSeek V2)
        apply = module.apply_rotary_emb
        try:
            return apply(q, q, out)[0].transpose(1, 2).numpy(), False
        except RuntimeError:
            qt = q.transpose(1, 2)
            return apply(qt, qt, out)[0].numpy(), False
    cos, sin = out[0], out[1]
    only_interleave = not hasattr(module, "apply_rotary_pos_emb")
    if hasattr(module, "apply_rotary_pos_emb_interleave") and (
        only_interleave or getattr(config, "rope_interleave", False)
    ):
        res = module.apply_rotary_pos_emb_interleave(q, q, cos, sin)
        return res[0].transpose(1, 2).numpy(), True
    if _one_tensor(module.apply_rotary_pos_emb):  # (x, cos, sin): Gemma 3n/4, DeepSeek V4
        return module.apply_rotary_pos_emb(q, cos, sin).transpose(1, 2).numpy(), False
    d = cos.shape[-1]
    if d < q.shape[-1]:  # partial rotary that the caller splits (Phi, Persimmon, StableLM)
        try:
            res = module.apply_rotary_pos_emb(q, q, cos, sin)
        except RuntimeError:
            rot = module.apply_rotary_pos_emb(q[..., :d], q[..., :d], cos, sin)[0]
            res = (torch.cat([rot, q[..., d:]], -1),)
    else:
        res = module.apply_rotary_pos_emb(q, q, cos, sin)
    return res[0].transpose(1, 2).numpy(), False


def _one_tensor(apply) -> bool:
    """Whether a family's ``apply_rotary_pos_emb`` rotates one tensor ``(x, cos, sin)``."""
    names = list(inspect.signature(apply).parameters)
    return names[:3] == ["x", "cos", "sin"]


def _gptj_apply(module, config, x_BHTD, pos):
    import torch

    d = config.rotary_dim or x_BHTD.shape[-1]
    table = module.create_sinusoidal_positions(int(pos.max()) + 1, d)
    sin, cos = torch.split(table[torch.from_numpy(pos)], d // 2, dim=-1)
    x = torch.from_numpy(x_BHTD).transpose(1, 2)  # (B, T, H, D)
    rot = module.apply_rotary_pos_emb(x[..., :d], sin, cos)
    return torch.cat([rot, x[..., d:]], -1).numpy()


def _describe(rope: P.RoPE) -> tuple[str, str, str]:
    scaling = "default" if rope.scaling is None else type(rope.scaling).__name__
    if rope.mrope_section:
        scaling += f" + M-RoPE {list(rope.mrope_section)}" + (
            " interleaved" if rope.mrope_interleaved else ""
        )
    return rope.layout, f"{rope.dim}/{rope.head_dim}", scaling


def check(model_type: str, collect: list | None = None, backend: str = "cpu") -> Row:
    """One model type's row; ``collect`` receives ``(label, ours, ref, bound)`` per comparison."""
    from transformers import AutoConfig

    try:
        base_type, overrides = VARIANTS.get(model_type, (model_type, {}))
        config = AutoConfig.for_model(base_type, **overrides)
    except Exception as e:
        return Row(model_type, "not harnessable", note=f"no default config: {type(e).__name__}")
    text = _text_config(config)
    rp = getattr(text, "rope_parameters", None)
    layer_types = (
        [k for k, v in (rp or {}).items() if isinstance(v, dict)] if isinstance(rp, dict) else []
    )
    used = getattr(text, "layer_types", None)
    if layer_types and isinstance(used, list) and set(layer_types) & set(used):
        layer_types = [t for t in layer_types if t in used]  # HF builds only the used ones
    try:
        ropes = {lt: P.RoPE.from_hf_config(config, layer_type=lt) for lt in (layer_types or [None])}
    except ValueError as e:
        return Row(model_type, "refused", note=str(e).split("\n")[0][:160])
    try:
        module = _modeling_module(text)
    except Exception as e:
        return Row(model_type, "not harnessable", note=f"modeling module: {type(e).__name__}")
    rng = np.random.default_rng(0)
    ratio = max_abs = 0.0
    notes = []
    for lt, rope in ropes.items():
        layout, dims, scaling = _describe(rope)
        max_pos = max(MAX_POSITION, int(getattr(text, "max_position_embeddings", 0) or 0) - 1)
        max_pos = min(max_pos, 2**24 - 1)
        x = rng.standard_normal((1, 2, T, rope.head_dim), dtype=np.float32)
        for pos in _positions(max_pos, rope.mrope_section is not None):
            try:
                if base_type in ("gptj", "codegen"):
                    ref, deinterleaved = _gptj_apply(module, text, x, pos), False
                else:
                    ref = None
                    errors = []
                    for cls in _rotary_classes(module):
                        try:
                            rotary = cls(config=text)
                            ref, deinterleaved = _hf_apply(module, text, rotary, x, pos, lt)
                            break
                        except Exception as e:
                            errors.append(f"{cls.__name__}: {type(e).__name__}: {str(e)[:60]}")
                    if ref is None:
                        reason = errors[0] if errors else "no *RotaryEmbedding class"
                        return Row(
                            model_type, "not harnessable", layout, dims, scaling, note=reason
                        )
            except _Timeout:
                raise
            except Exception as e:
                return Row(
                    model_type,
                    "not harnessable",
                    layout,
                    dims,
                    scaling,
                    note=f"{type(e).__name__}: {str(e)[:80]}",
                )
            x_BTHD = x.transpose(0, 2, 1, 3)
            ours = np.asarray(jax.jit(rope.apply)(x_BTHD, pos))
            if deinterleaved:
                d = rope.dim
                ours = np.concatenate([ours[..., 0:d:2], ours[..., 1:d:2], ours[..., d:]], -1)
                notes.append("HF de-interleaves its output (same scores)")
            if ref.shape != ours.shape:
                return Row(
                    model_type,
                    "DIFFERENT",
                    layout,
                    dims,
                    scaling,
                    note=f"shape {ref.shape} vs {ours.shape}",
                )
            bound = _bound(rope, pos, x_BTHD, backend)
            if deinterleaved:
                d = rope.dim
                bound = np.concatenate([bound[..., 0:d:2], bound[..., 1:d:2], bound[..., d:]], -1)
            if collect is not None:
                label = f"{model_type}{f' {lt}' if lt else ''} positions ≤ {int(pos.max())}"
                collect.append((label, ours, ref, bound))
            diff = np.abs(ours.astype(np.float64) - ref.astype(np.float64))
            over = diff > bound
            max_abs = max(max_abs, float(diff.max()))
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.where(bound > 0, diff / bound, np.where(diff > 0, np.inf, 0.0))
            ratio = max(ratio, float(r.max()))
            if over.any():
                where = f" (layer_type {lt})" if lt else ""
                return Row(
                    model_type,
                    "DIFFERENT",
                    layout,
                    dims,
                    scaling,
                    ratio,
                    max_abs,
                    f"positions ≤ {int(pos.max())}{where}",
                )
    if layer_types:
        notes.append("layer types: " + ", ".join(layer_types))
    described = [_describe(r) for r in ropes.values()]
    layout, dims, scaling = ("/".join(dict.fromkeys(c)) for c in zip(*described, strict=True))
    note = "; ".join(dict.fromkeys(notes))
    return Row(model_type, "equal", layout, dims, scaling, ratio, max_abs, note)


FAMILY_CASES = (
    "cohere",
    "glm4",
    "deepseek_v2",
    "deepseek_v3+yarn mscale",
    "gemma3_text",
    "gemma4",
    "lfm3",
    "phi3+longrope (128k)",
    "phi3+longrope partial (Phi-4-mini)",
    "llama4_text",
    "llama4_text+llama3 l=h",
    "qwen2_vl",
)
"""The families whose rows run ``RoPE.from_hf_config`` against their own transformers
code (the matrix's cases; Phi-3.5-mini has Phi-3-128k's shapes)."""


def family_rows(name: str, backend: str) -> list[CheckResult]:
    """``RoPE.from_hf_config(config)`` (jit ``apply``) against the family's own rotary
    module and ``apply_rotary_pos_emb``, short positions and positions to 131,071 (M-RoPE:
    three distinct rows), each entry within the bound of ``rope_apply_rows``."""
    collected: list = []
    with on_backend(backend):
        row = check(name, collect=collected, backend=backend)
    rows = []
    if row.status != "equal":
        rows.append(
            CheckResult(
                check=f"RoPE from_hf_config {name} vs its transformers code",
                backend=backend,
                device_kind="",
                dtype="float32",
                shape=(),
                max_abs_diff=float("nan"),
                tolerance=0.0,
                bit_identical=False,
                note=f"{row.status}: {row.note}",
            )
        )
    return rows + [
        bounded(
            f"RoPE from_hf_config {label} vs its transformers code",
            backend,
            ours,
            ref,
            bound,
            what="|Δo| <= (|x|+|r|)·(Δcs + 4U·g)",
        )
        for label, ours, ref, bound in collected
    ]


def family_checks(backend: str) -> list[CheckResult]:
    """The parity report's group: ``family_rows`` of every ``FAMILY_CASES`` entry."""
    return [row for name in FAMILY_CASES for row in family_rows(name, backend)]


def run(types: list[str], timeout_s: int = 120, verbose: bool = False) -> list[Row]:
    rows = []
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for mt in types:
            start = time.perf_counter()
            signal.alarm(timeout_s)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    row = check(mt)
            except _Timeout:
                row = Row(mt, "not harnessable", note=f"timed out after {timeout_s} s")
            except Exception as e:
                row = Row(
                    mt, "not harnessable", note=f"harness error {type(e).__name__}: {e}"[:160]
                )
            finally:
                signal.alarm(0)
            rows.append(row)
            if verbose:
                print(
                    f"{mt:32s} {row.status:16s} {time.perf_counter() - start:5.1f}s {row.note}",
                    file=sys.stderr,
                )
    finally:
        signal.signal(signal.SIGALRM, old)
    return rows


def table(rows: list[Row]) -> str:
    import transformers

    counts = {
        s: sum(r.status == s for r in rows)
        for s in ("equal", "refused", "not harnessable", "DIFFERENT")
    }
    lines = [
        "<!-- generated by `python -m parity.rope_matrix --write-docs`; do not edit -->",
        "",
        f"`RoPE.from_hf_config` against each family's own rotary code, transformers "
        f"{transformers.__version__}, {len(rows)} model types: "
        + ", ".join(f"**{n} {s}**" for s, n in counts.items())
        + ". Max |Δ|: the largest entry error, and in brackets its ratio to the derived bound "
        "(≤ 1 is equal).",
        "",
        "| model type | layout | rotary dim | scaling | status | max \\|Δ\\| (ratio) | note |",
        "|---|---|---|---|---|---|---|",
    ]
    notes = []  # below the table, so that it fits the page
    for r in rows:
        note = r.note.replace("\n", " ").replace("[", "\\[").replace("]", "\\]")
        if note:
            n = len(notes) + 1
            notes.append(f'{n}. <a id="note-{n}"></a>**{r.model_type}**: {note}')
        ratio = f"{r.max_abs:.2g} ({r.max_ratio:.2f})" if r.status in ("equal", "DIFFERENT") else ""
        ref = f"[{len(notes)}](#note-{len(notes)})" if note else ""
        cells = (r.model_type, r.layout, r.rotary_dim, r.scaling, r.status, ratio, ref)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Notes", ""]
    lines += notes
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m parity.rope_matrix", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--only", help="comma-separated model types (default: all)")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per model type")
    parser.add_argument(
        "--write-docs", action="store_true", help=f"write {DOCS.relative_to(DOCS.parents[2])}"
    )
    args = parser.parse_args(argv)
    types = args.only.split(",") if args.only else model_types()
    rows = run(types, args.timeout, verbose=True)
    text = table(rows)
    if args.write_docs:
        from flax_embed._io import atomic_open

        with atomic_open(DOCS, "w") as f:
            f.write("# RoPE coverage matrix\n\n" + text)
    print(text)
    return 1 if any(r.status == "DIFFERENT" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
