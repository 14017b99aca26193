"""Accelerator readiness: parity and speed on a GPU, in one command that leaves files.

    PYTHONPATH=. python benchmarks/device_check.py OUTDIR            # < 5 min on one GPU
    PYTHONPATH=. python benchmarks/device_check.py OUTDIR --quick    # < 1 min
    PYTHONPATH=. python benchmarks/device_check.py OUTDIR --dry-run  # CPU, tiny sizes (tests)

Needs jax (CUDA), flax, optax, numpy, torch (CUDA), tiktoken, safetensors, tqdm and
transformers, nothing else (no network, no ``pip install``), and the GPT-2 BPE files
offline: ``FLAX_EMBED_BPE_DIR`` (a folder with ``encoder.json`` and ``vocab.bpe``) or
``TIKTOKEN_CACHE_DIR`` (a tiktoken cache that holds them). In order:

1. the whole parity report (``parity.report.run_report``) on the ``gpu`` backend,
   torch on ``cuda`` (``parity.common.torch_device``), with the numerics settings
   the results depend on: ``jax_default_matmul_precision`` and torch's TF32 flags;
2. the forward, side by side in one process, interleaved, warmed up, medians
   (``common.interleaved``): the jitted ``InputEmbedding`` against the book's
   torch module eager and under ``torch.compile``, and against a device-to-device
   copy of the output (``jax.jit(jnp.copy)`` and ``torch.clone``, the faster of the
   two: the bandwidth limit), at each shape in float32 and bfloat16; a timed unit
   launches a burst of calls and waits for them (``block_until_ready`` /
   ``torch.cuda.synchronize``), so the time per call is the device's, not a host
   round trip's; the first call (trace + compile) of both is timed apart;
3. the loader → device pipeline in batches/s with and without
   ``prefetch_to_device`` (``pipeline.pipeline_row``).

It prints one Markdown table and writes ``device_check.md`` and
``device_check.json`` into OUTDIR, rewritten after every stage, so a run cut short
leaves what it measured. Targets (judged in the table, never in tests): the
forward at the two large shapes reaches ≥ 80% of the copy's bandwidth (it reads
the rows once and writes the output once, as the copy reads and writes once) and
is ≥ 2x torch eager; float32 outputs are bit-identical to torch's.

``--dry-run`` runs every code path on the CPU (JAX cpu, torch cpu) with tiny sizes,
two rounds and four groups of the parity report (the test suite runs every row
itself); its times mean nothing. Exit status: 0 when everything ran and
parity passed (a missed speed target is not a failure), 1 otherwise, 2 when the
machine cannot run the check at all (a missing package, no GPU, no BPE files).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import importlib.util
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Row, fmt_time, interleaved, machine, markdown_table

# JAX takes 75% of the GPU's memory when it starts unless told not to; torch needs room too.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

REQUIRED = ("jax", "flax", "optax", "numpy", "torch", "tiktoken", "safetensors", "tqdm",
            "transformers")  # fmt: skip
"""Everything the check imports; ``grain`` and the test tools are not needed."""
VOCAB = 50257
TARGET_SHAPES = ((32, 1024, 768), (16, 4096, 4096))
"""The shapes whose forward rows carry the bandwidth and torch-eager targets."""
BANDWIDTH_TARGET, EAGER_TARGET = 0.80, 2.0
TIKTOKEN_GPT2_URLS = tuple(
    f"https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/{name}"
    for name in ("vocab.bpe", "encoder.json")
)
"""Where tiktoken fetches GPT-2's files from: its cache names them by these URLs' sha1."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one mode measures: ``(shape, judged)`` pairs, dtypes, rounds, the pipeline size."""

    mode: str
    backend: str
    shapes: tuple[tuple[tuple[int, int, int], bool], ...]
    dtypes: tuple[str, ...]
    rounds: int
    pipeline: dict
    parity_groups: tuple[str, ...] | None = None
    """The report's groups by name; None: all of them (``parity.report.CHECK_GROUPS``)."""

    def calls(self, shape: tuple[int, int, int]) -> int:
        """Calls per timed burst: enough that a burst of a small shape is not all overhead."""
        if self.mode == "dry-run":
            return 2
        return 50 if shape[0] * shape[1] * shape[2] < 1 << 20 else 10


PLANS = {
    "full": Plan(
        "full", "gpu",
        (((8, 4, 256), False), ((8, 1024, 768), False), *((s, True) for s in TARGET_SHAPES)),
        ("float32", "bfloat16"), 15, {"size": 2_000_000, "features": 768, "rounds": 5},
    ),
    "quick": Plan(
        "quick", "gpu", tuple((s, True) for s in TARGET_SHAPES), ("float32",), 7,
        {"size": 500_000, "features": 768, "rounds": 3},
    ),
    # (2, 32, 64) stands in for the target shapes: their rows, untimed judgement.
    "dry-run": Plan(
        "dry-run", "cpu", (((8, 4, 256), False), ((2, 32, 64), True)),
        ("float32", "bfloat16"), 2,
        {"size": 20_000, "features": 64, "rounds": 2, "max_length": 32},
        # The groups its tests look for; the test suite runs every row itself
        # (tests/parity/), so the dry run does not run the whole report a second time.
        ("forward_checks", "gradient_checks", "training_checks", "linen_nnx_checks"),
    ),
}  # fmt: skip


class CheckError(Exception):
    """The machine cannot run the check; the message is one line saying why."""


# --- preflight ----------------------------------------------------------------------------


def preflight(plan: Plan) -> None:
    """Fails early, with one line, on a missing package, a missing GPU or missing BPE files."""
    missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
    if missing:
        raise CheckError(f"missing packages: {', '.join(missing)} (needs {', '.join(REQUIRED)})")
    from flax_embed.tokenizer import BPE_DIR_ENV, TokenizerUnavailableError, gpt2_tokenizer

    if not (os.environ.get(BPE_DIR_ENV) or os.environ.get("TIKTOKEN_CACHE_DIR")):
        raise CheckError(
            f"set {BPE_DIR_ENV} to a folder holding GPT-2's encoder.json and vocab.bpe, or "
            "TIKTOKEN_CACHE_DIR to a tiktoken cache holding them (the check runs offline)"
        )
    cache = os.environ.get("TIKTOKEN_CACHE_DIR")
    if not os.environ.get(BPE_DIR_ENV) and cache:
        # tiktoken names its cache files by the sha1 of their URL and downloads the ones
        # missing, with no timeout: on a machine without network, fail here instead.
        missing = [
            url.rsplit("/", 1)[1]
            for url in TIKTOKEN_GPT2_URLS
            if not (Path(cache) / hashlib.sha1(url.encode()).hexdigest()).is_file()
        ]
        if missing:
            raise CheckError(
                f"TIKTOKEN_CACHE_DIR={cache} lacks GPT-2's {' and '.join(missing)} (tiktoken "
                f"would download them; the check runs offline): fill it, or set {BPE_DIR_ENV}"
            )
    try:
        gpt2_tokenizer()
    except TokenizerUnavailableError as e:
        raise CheckError(str(e)) from None
    if plan.backend == "gpu":
        import jax
        import torch

        try:
            jax.devices("gpu")
        except RuntimeError as e:
            raise CheckError(f"JAX has no gpu backend ({e}); --dry-run runs on the CPU") from None
        if not torch.cuda.is_available():
            raise CheckError(f"torch {torch.__version__} has no CUDA; --dry-run runs on the CPU")


# --- numerics and parity ------------------------------------------------------------------


def numerics() -> dict:
    """The settings float32 results depend on: JAX's matmul precision, torch's TF32 use."""
    import jax
    import torch

    with warnings.catch_warnings():  # newer torch deprecates the allow_tf32 flags
        warnings.simplefilter("ignore")
        settings = {
            "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision),
            "torch.backends.cuda.matmul.allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
            "torch.backends.cudnn.allow_tf32": bool(torch.backends.cudnn.allow_tf32),
            "torch.get_float32_matmul_precision()": torch.get_float32_matmul_precision(),
        }
    return settings


def parity_section(plan: Plan, results: dict) -> list[Row]:
    from parity.common import device_kind, torch_device
    from parity.report import CHECK_GROUPS, format_table, run_report

    names = plan.parity_groups
    groups = [g for g in CHECK_GROUPS if names is None or g.__name__ in names]
    report = run_report([plan.backend], groups)
    results["parity"] = report.to_json()
    results["parity_table"] = format_table(report)
    failed = [r.check for r in report.results if not r.passed]
    passed = len(report.results) - len(failed)
    where = f"{plan.backend} ({device_kind(plan.backend)}), torch on {torch_device(plan.backend)}"
    settings = results["numerics"]
    on = {True: "on", False: "off"}
    tf32 = (
        f"torch TF32: matmul {on[settings['torch.backends.cuda.matmul.allow_tf32']]}, "
        f"cuDNN {on[settings['torch.backends.cudnn.allow_tf32']]}"
    )
    return [
        Row(
            "parity",
            (
                "the whole parity report"
                if plan.parity_groups is None
                else f"the parity report's {', '.join(plan.parity_groups)}"
            )
            + f" on {where}",
            f"{passed}/{len(report.results)} checks passed",
            "PyTorch reference",
            None,
            ratio_label="",
            target="all pass",
            met=not failed,
            note=f"{report.seconds:.1f} s" + (f"; FAILED: {'; '.join(failed)}" if failed else ""),
        ),
        Row(
            "parity",
            "numerics settings",
            f"jax_default_matmul_precision={settings['jax_default_matmul_precision']}",
            tf32,
            None,
            ratio_label="",
            note="; ".join(f"{k} = {v}" for k, v in settings.items()),
        ),
    ]


# --- forward ------------------------------------------------------------------------------


def _synchronizer(device: str) -> Callable[[], None]:
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else lambda: None


def _compiled(module, ids, sync) -> tuple[Callable | None, float, str]:
    """``(forward, seconds of the first call, "")`` of ``torch.compile(module)``, or a reason."""
    import torch

    try:
        # Each shape compiles from scratch, statically: no dynamic-shape kernel reused from an
        # earlier shape, and no recompile limit reached (past it dynamo runs eager, silently).
        import torch._dynamo

        torch._dynamo.reset()
        compiled = torch.compile(module, dynamic=False)
        start = time.perf_counter()
        with torch.no_grad():
            compiled(ids)
        sync()
        return compiled, time.perf_counter() - start, ""
    except Exception as e:  # no C++ compiler or Triton, an unsupported platform, ...
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:120] if str(e) else ''}"
        return None, float("nan"), f"skipped: torch.compile failed ({reason})"


def measure_forward(
    shape: tuple[int, int, int], dtype: str, plan: Plan, device: str, *, seed: int = 0
) -> dict:
    """Seconds per call of jit, torch eager, torch.compile and both copies; identity; compiles.

    Both sides get the same tables (the torch module's, initialized on ``device``)
    and the same random ids; JAX runs on its default device (``parity.common.on_backend``).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from flax_embed.convert import params_from_torch, to_numpy
    from flax_embed.layers.linen import InputEmbedding
    from parity.common import ulp_distance
    from parity.torch_reference import TorchInputEmbedding

    B, T, D = shape
    sync = _synchronizer(device)
    torch.manual_seed(seed)
    with torch.device(device):  # initialized where it runs: no host copy of a 0.8 GB table
        module = TorchInputEmbedding(VOCAB, T, D).to(getattr(torch, dtype)).eval()
    model = InputEmbedding(vocab_size=VOCAB, context_length=T, features=D,
                           dtype=jnp.dtype(dtype), param_dtype=jnp.dtype(dtype))  # fmt: skip
    params = jax.device_put(params_from_torch(module.state_dict(), model=model))
    ids_BxT = np.random.default_rng(seed).integers(0, VOCAB, (B, T), dtype=np.int32)
    ids = jax.device_put(ids_BxT)
    ids_torch = torch.from_numpy(ids_BxT.astype(np.int64)).to(device)

    apply = jax.jit(model.apply)
    start = time.perf_counter()
    out = apply(params, ids).block_until_ready()
    jax_first = time.perf_counter() - start
    with torch.no_grad():
        out_torch = module(ids_torch)
    sync()
    # Compared where they are (dlpack shares the buffer); to the host only when they differ.
    identical = bool(torch.equal(torch.from_dlpack(out), out_torch))
    max_ulp = 0 if identical else ulp_distance(np.asarray(out), to_numpy(out_torch))
    compiled, compile_first, skipped = _compiled(module, ids_torch, sync)
    copy = jax.jit(jnp.copy)

    n = plan.calls(shape)

    # Each timed unit launches n calls back to back and waits once for the last: the
    # device's throughput, not n host round trips (one stream runs them in order).
    def jax_burst(fn, *args):
        for _ in range(n):
            result = fn(*args)
        result.block_until_ready()

    def torch_burst(fn, *args):
        with torch.no_grad():
            for _ in range(n):
                fn(*args)
        sync()

    variants = {
        "jit": lambda: jax_burst(apply, params, ids),
        "torch eager": lambda: torch_burst(module, ids_torch),
        "jax copy": lambda: jax_burst(copy, out),
        "torch clone": lambda: torch_burst(torch.clone, out_torch),
    }
    if compiled is not None:
        variants["torch.compile"] = lambda: torch_burst(compiled, ids_torch)
    per_burst = interleaved(variants, rounds=plan.rounds, warmup=2)
    seconds = {name: t / n for name, t in per_burst.items()}
    return {
        "shape": list(shape),
        "dtype": dtype,
        "seconds": seconds,
        "bit_identical": identical,
        "max_ulp": max_ulp,
        "first_call_seconds": {"jit": jax_first, "torch.compile": compile_first},
        "torch_compile": skipped or "ok",
        "itemsize": jnp.dtype(dtype).itemsize,
        "calls_per_burst": n,
    }


def traffic(m: dict) -> tuple[int, int]:
    """Bytes one forward and one copy of its output move through device memory.

    The forward reads B*T token rows and the T position rows, reads the int32 ids
    and writes the output; the copy reads the output and writes it once.
    """
    (B, T, D), s = m["shape"], m["itemsize"]
    return 2 * B * T * D * s + T * D * s + B * T * 4, 2 * B * T * D * s


def forward_rows(m: dict, judged: bool, plan: Plan) -> list[Row]:
    """The rows of one measured shape and dtype: vs torch eager, vs the copy, vs torch.compile."""
    t = m["seconds"]
    what = f"{tuple(m['shape'])} {m['dtype']}"
    judge = judged and plan.mode != "dry-run"
    forward_bytes, copy_bytes = traffic(m)
    copy_seconds = min(t["jax copy"], t["torch clone"])
    gbps, copy_gbps = forward_bytes / t["jit"] / 1e9, copy_bytes / copy_seconds / 1e9
    fraction = gbps / copy_gbps
    eager = t["torch eager"] / t["jit"]
    same = "bit-identical to torch" if m["bit_identical"] else f"max {m['max_ulp']} ULP from torch"
    rows = [
        Row(
            "forward",
            f"{what}: jit vs torch eager",
            fmt_time(t["jit"]),
            f"{fmt_time(t['torch eager'])} torch eager",
            eager,
            target=f"≥ {EAGER_TARGET:g}x" if judged else "",
            met=eager >= EAGER_TARGET if judge else None,
            note=same,
        ),
        Row(
            "forward",
            f"{what}: jit vs device copy of the output",
            f"{gbps:,.1f} GB/s",
            f"{copy_gbps:,.1f} GB/s copy",
            fraction,
            ratio_label=" of copy",
            target=f"≥ {BANDWIDTH_TARGET:.2f}" if judged else "",
            met=fraction >= BANDWIDTH_TARGET if judge else None,
            note=f"{forward_bytes / 1e6:,.1f} MB per forward; jax.jit(jnp.copy) "
            f"{fmt_time(t['jax copy'])}, torch clone {fmt_time(t['torch clone'])} "
            f"({copy_bytes / 1e6:,.1f} MB)",
        ),
    ]
    if "torch.compile" in t:
        compiled = t["torch.compile"] / t["jit"]
        rows.append(Row("forward", f"{what}: jit vs torch.compile", fmt_time(t["jit"]),
                        f"{fmt_time(t['torch.compile'])} torch.compile", compiled))  # fmt: skip
    else:
        rows.append(Row("forward", f"{what}: jit vs torch.compile", fmt_time(t["jit"]),
                        m["torch_compile"], None, ratio_label=""))  # fmt: skip
    return rows


def summary_rows(measured: list[dict], plan: Plan) -> list[Row]:
    """Outputs vs torch per dtype (all shapes), and the first calls (trace + compile)."""
    rows = []
    for dtype in plan.dtypes:
        ms = [m for m in measured if m["dtype"] == dtype]
        if not ms:
            continue
        same = sum(m["bit_identical"] for m in ms)
        worst = max(m["max_ulp"] for m in ms)
        exact = dtype == "float32"
        rows.append(
            Row(
                "forward",
                f"{dtype} outputs vs torch eager, {len(ms)} shapes",
                f"bit-identical at {same}/{len(ms)}",
                f"max {worst} ULP",
                None,
                ratio_label="",
                target="bit-identical" if exact else "≤ 1 ULP",
                met=(same == len(ms)) if exact else worst <= 1,
                note="" if exact else "bfloat16 sums may round twice (see parity forward rows)",
            )
        )
    if measured:
        first = next((m for m in measured if m["judged"]), measured[-1])
        f = first["first_call_seconds"]
        compiled = first["torch_compile"] == "ok"
        rows.append(
            Row(
                "compile",
                f"first call (trace + compile), {tuple(first['shape'])} {first['dtype']}",
                f"{fmt_time(f['jit'])} jit",
                f"{fmt_time(f['torch.compile'])} torch.compile" if compiled else "no torch.compile",
                f["torch.compile"] / f["jit"] if compiled else None,
                note="; ".join(_first_calls(m) for m in measured),
            )
        )
    return rows


def _first_calls(m: dict) -> str:
    first = m["first_call_seconds"]
    text = f"{tuple(m['shape'])} {m['dtype']}: jit {fmt_time(first['jit'])}"
    if m["torch_compile"] == "ok":
        text += f", torch.compile {fmt_time(first['torch.compile'])}"
    return text


def forward_section(plan: Plan, results: dict, progress: Callable[[str], None]) -> list[Row]:
    import torch

    from parity.common import on_backend, torch_device

    device = torch_device(plan.backend)
    rows, measured = [], results.setdefault("forward", [])
    for dtype in plan.dtypes:
        for shape, judged in plan.shapes:
            progress(f"forward {shape} {dtype}")
            try:
                with on_backend(plan.backend):
                    m = measure_forward(shape, dtype, plan, device)
            except Exception as e:  # out of memory at one shape leaves the others
                rows.append(Row("forward", f"{shape} {dtype}", "failed", "", None,
                                note=f"{type(e).__name__}: {str(e)[:160]}"))  # fmt: skip
                continue
            finally:
                gc.collect()
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
            measured.append({**m, "judged": judged})
            rows += forward_rows(m, judged, plan)
    return rows + summary_rows(measured, plan)


def pipeline_section(plan: Plan, results: dict) -> list[Row]:
    from pipeline import pipeline_row

    from parity.common import on_backend

    with on_backend(plan.backend):
        row = pipeline_row(**plan.pipeline)
    results["pipeline"] = dataclasses.asdict(row)
    return [row]


# --- the report ---------------------------------------------------------------------------


def header(plan: Plan) -> str:
    """One line: the date (UTC), the device, jax and torch versions, the mode."""
    import jax
    import torch

    from parity.common import device_kind, torch_device

    device = torch_device(plan.backend)
    torch_on = torch.cuda.get_device_name() if device.startswith("cuda") else device
    return (
        f"flax-embed device check ({plan.mode}), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{plan.backend}: {device_kind(plan.backend)} (torch on {torch_on}), "
        f"jax {jax.__version__}, torch {torch.__version__}"
    )


def render(results: dict) -> str:
    """``device_check.md``: the header, the machine, the table, then the parity report."""
    rows = [Row(**r) for r in results["rows"]]
    lines = [
        "# " + results["header"],
        "",
        "; ".join(f"{k}: {v}" for k, v in results["machine"].items()),
        "",
        markdown_table(rows),
        "",
        f"Total time: {results['seconds']:.0f} s"
        + ("" if results["finished"] else " (unfinished: the run stopped early)") + ".",
    ]  # fmt: skip
    if "parity_table" in results:
        lines += ["", "## Parity report", "", "```text", results["parity_table"], "```"]
    return "\n".join(lines) + "\n"


def write_outputs(outdir: Path, results: dict) -> None:
    """Writes ``device_check.md`` and ``device_check.json`` (atomically: whole or not at all)."""
    from flax_embed._io import atomic_open

    with atomic_open(outdir / "device_check.json", "w") as f:
        json.dump(results, f, indent=2, allow_nan=False, default=_json_default)
        f.write("\n")
    with atomic_open(outdir / "device_check.md", "w") as f:
        f.write(render(results))


def _json_default(value: object) -> object:
    raise TypeError(f"not JSON: {type(value).__name__}")


def _finite(value: object) -> object:
    """``value`` with NaN and infinities as None (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("outdir", type=Path, help="folder for device_check.md and .json")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the target shapes, float32: < 1 min")
    mode.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: every code path")
    args = parser.parse_args(argv)
    plan = PLANS["dry-run" if args.dry_run else "quick" if args.quick else "full"]
    start = time.perf_counter()

    def progress(stage: str) -> None:
        print(f"[{time.perf_counter() - start:5.0f} s] {stage} ...", file=sys.stderr, flush=True)

    try:
        args.outdir.mkdir(parents=True, exist_ok=True)
        preflight(plan)
    except (CheckError, OSError) as e:
        print(f"device_check: error: {e}", file=sys.stderr)
        return 2
    results: dict = {
        "header": header(plan),
        "mode": plan.mode,
        "machine": machine(),
        "numerics": numerics(),
        "rows": [],
        "seconds": 0.0,
        "stage_seconds": {},
        "finished": False,
    }
    stages = (
        ("parity", lambda: parity_section(plan, results)),
        ("forward", lambda: forward_section(plan, results, progress)),
        ("pipeline", lambda: pipeline_section(plan, results)),
    )
    for name, stage in stages:
        progress(name)
        stage_start = time.perf_counter()
        try:
            rows = stage()
        except Exception as e:  # the next stages still run, and the files say what failed
            rows = [Row(name, f"{name} stage", "failed", "", None,
                        note=f"{type(e).__name__}: {str(e)[:160]}")]  # fmt: skip
        results["rows"] += [dataclasses.asdict(r) for r in rows]
        results["stage_seconds"][name] = round(time.perf_counter() - stage_start, 2)
        results["seconds"] = time.perf_counter() - start
        write_outputs(args.outdir, _finite(results))
    results["finished"] = True
    results = _finite(results)
    write_outputs(args.outdir, results)
    print(render(results))
    print(f"wrote {args.outdir / 'device_check.md'} and device_check.json", file=sys.stderr)
    rows = [Row(**r) for r in results["rows"]]
    failed = any(r.ours == "failed" for r in rows) or not results.get("parity", {}).get("passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
