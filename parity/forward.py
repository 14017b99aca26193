"""Forward rows: the same weights in torch and Flax, the same real token ids, equal outputs.

Cases (``CASES``) by directions (torch-initialised weights into Flax, and
Flax-initialised weights into torch) by dtypes. float32 must be bit-identical: both
sides gather rows and add two float32 numbers once, which IEEE rounding makes
deterministic. bfloat16 has the tolerance described at ``bf16_tolerance``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import torch

from flax_embed.convert import params_from_torch, params_to_torch
from flax_embed.layers.linen import InputEmbedding
from parity.common import compare, on_backend, text_batch, torch_device, ulp_distance
from parity.result import CheckResult
from parity.torch_reference import TorchInputEmbedding

__all__ = ["CASES", "DIRECTIONS", "DTYPES", "ForwardCase", "bf16_tolerance", "forward_checks",
           "forward_rows", "loader_rows"]  # fmt: skip

DIRECTIONS = ("torch→flax", "flax→torch")
DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class ForwardCase:
    """One batch to embed: ``batch_size`` windows of ``seq_len`` real GPT-2 ids.

    Attributes:
      name: the row's name.
      batch_size: ``B``.
      seq_len: ``T``, tokens per window (the loader's ``max_length``).
      features: ``D``.
      context_length: ``C``, rows of the position table.
      position_offsets: per-row start positions (``B`` of them), or None for
        ``arange(T)``; with offsets, positions are ``offset_b + arange(T)``.
    """

    name: str
    batch_size: int
    seq_len: int
    features: int
    context_length: int
    position_offsets: tuple[int, ...] | None = None

    @property
    def shape(self) -> str:
        return f"{self.batch_size}x{self.seq_len}x{self.features}"

    def inputs(self) -> tuple[np.ndarray, np.ndarray | None]:
        """``(token_ids_BxT, positions_BxT or None)``."""
        ids_BxT, _ = text_batch(self.batch_size, self.seq_len)
        if self.position_offsets is None:
            return ids_BxT, None
        offsets_B = np.asarray(self.position_offsets, np.int32)
        return ids_BxT, offsets_B[:, None] + np.arange(self.seq_len, dtype=np.int32)


CASES = (
    ForwardCase("seed", batch_size=8, seq_len=4, features=256, context_length=4),
    ForwardCase("GPT-2 small", batch_size=8, seq_len=1024, features=768, context_length=1024),
    ForwardCase(
        "offset positions",
        batch_size=8,
        seq_len=4,
        features=256,
        context_length=1024,
        position_offsets=(0, 1, 17, 255, 256, 511, 768, 1020),
    ),
)


def bf16_tolerance(out: np.ndarray) -> float:
    """1 bfloat16 ULP at the largest |output|: the bound on a bfloat16 row's max |Δ|.

    Both sides compute ``round_bf16(tok + pos)`` from the same bfloat16 rows. torch
    (CPU and CUDA) adds in float32 and rounds once to bfloat16; XLA may add in
    bfloat16 directly or upcast to float32, add and round. The float32
    sum of two bfloat16 values is exact unless their exponents differ by more than
    15, and only then can the double rounding land one bfloat16 ULP away. Measured
    (see docs/parity.md): 0 ULP on CPU for every case, so 1 ULP is the analytic bound, not
    slack.
    """
    largest = float(np.max(np.abs(out.astype(np.float32)))) if out.size else 0.0
    if largest == 0.0:
        return 0.0
    return float(2.0 ** (np.floor(np.log2(largest)) - 7))  # 8 significant bits in bfloat16


def _torch_forward(module, ids_BxT, positions, device) -> np.ndarray:
    from flax_embed.convert import to_numpy

    return to_numpy(module.to(device).run(ids_BxT, positions).cpu())


def forward_rows(
    case: ForwardCase, direction: str, backend: str, *, jit: bool = True, seed: int = 0
) -> list[CheckResult]:
    """The float32 and bfloat16 rows of one case in one direction."""
    ids_BxT, positions = case.inputs()
    device = torch_device(backend)
    torch.manual_seed(seed)
    module = TorchInputEmbedding(context_length=case.context_length, emb_dim=case.features)
    rows = []
    for dtype in DTYPES:
        model = InputEmbedding(
            context_length=case.context_length,
            features=case.features,
            dtype=jnp.dtype(dtype),
            param_dtype=jnp.dtype(dtype),
        )
        apply = jax.jit(model.apply) if jit else model.apply
        # bfloat16 rows use the float32 weights rounded to bfloat16, on both sides alike.
        module = module.to(getattr(torch, dtype))
        with on_backend(backend):
            if direction == "torch→flax":
                params = params_from_torch(module.state_dict(), model=model)
            else:
                if dtype == "float32":
                    params = model.init(jax.random.key(seed), ids_BxT)
                else:
                    params = jax.tree.map(lambda x: x.astype(ml_dtypes.bfloat16), params)
                module.load_state_dict(params_to_torch(params), strict=True)
            flax_out = np.asarray(apply(params, ids_BxT, positions))
        torch_out = _torch_forward(module, ids_BxT, positions, device)
        check = f"forward {case.name} {case.shape} ({direction}{'' if jit else ', no jit'})"
        if dtype == "float32":
            rows.append(compare(check, backend, flax_out, torch_out))
        else:
            ulp = ulp_distance(flax_out, torch_out)
            # Each entry may be 1 ULP off (of its own magnitude), so max |Δ| <= 1 ULP of the
            # largest output; more than 1 ULP anywhere fails the row (tolerance 0).
            tol = bf16_tolerance(flax_out) if ulp <= 1 else 0.0
            note = f"max {ulp} ULP (≤ 1 allowed, see forward.bf16_tolerance)"
            rows.append(compare(check, backend, flax_out, torch_out, tolerance=tol, note=note))
    return rows


LOADER_SETTINGS = ((8, 4, 4), (4, 256, 128))
"""``(batch_size, max_length, stride)``: the seed's, and the book's loader defaults."""


def loader_rows(backend: str) -> list[CheckResult]:
    """Every batch of ``create_dataloader`` against the book's ``create_dataloader_v1``.

    No shuffling (the two shuffles draw from different generators); inputs and
    targets of the whole epoch, stacked, must be equal.
    """
    from flax_embed.data import create_dataloader
    from flax_embed.tokenizer import gpt2_tokenizer
    from parity.common import sample_text
    from parity.torch_reference import create_dataloader_v1

    text = sample_text()[1]
    rows = []
    for batch_size, max_length, stride in LOADER_SETTINGS:
        kw = dict(batch_size=batch_size, max_length=max_length, stride=stride, shuffle=False)
        ours = list(create_dataloader(text, **kw))
        book = list(create_dataloader_v1(text, **kw, tokenizer=gpt2_tokenizer()))
        if len(ours) != len(book):
            raise AssertionError(f"loader: {len(ours)} batches, the book's has {len(book)}")
        flax_ids = np.stack([np.stack(pair) for pair in ours])
        torch_ids = np.stack([np.stack([x.numpy(), y.numpy()]) for x, y in book])
        rows.append(
            compare(
                f"loader B={batch_size} T={max_length} stride={stride}: all batches",
                backend,
                flax_ids.astype(np.int64),
                torch_ids,
                note=f"{len(ours)} batch{'es' if len(ours) != 1 else ''} of (inputs, targets) "
                "vs the book's create_dataloader_v1",
            )
        )
    return rows


def forward_checks(backend: str) -> list[CheckResult]:
    """The loader, then every case, both directions, float32 (exact) and bfloat16 (1 ULP)."""
    rows = loader_rows(backend)
    return rows + [row for c in CASES for d in DIRECTIONS for row in forward_rows(c, d, backend)]
