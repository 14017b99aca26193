"""Training-step rows: ``optax.adamw`` against ``torch.optim.AdamW``.

Two parts:

* ``adamw_semantics_rows``: a few steps on one small tensor whose gradients are of
  the order of ``eps`` (and zero), checked against the AdamW algorithm written out
  in float64 (``adamw_reference``). They fail if either library put ``eps`` inside
  the square root, coupled the weight decay into the gradient (Adam + L2), or did
  not scale it by the learning rate; so the two libraries' hyper-parameters mean
  the same thing: optax ``adamw(lr, b1, b2, eps, eps_root=0.0, weight_decay=wd,
  mask=None)`` is torch ``AdamW(lr, betas=(b1, b2), eps, weight_decay=wd)``.
* ``training_rows``: ``STEPS`` steps of a tiny next-token objective, logits from the
  tied token table (``InputEmbedding.attend``, i.e. ``emb @ tok_emb.T``) and mean
  cross-entropy, over real batches of the book's loader; per-step losses and the
  final tables are compared.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import optax
import torch

from flax_embed.convert import params_from_torch
from flax_embed.data import create_dataloader
from flax_embed.layers.linen import InputEmbedding
from parity.common import compare, on_backend, sample_text, torch_device
from parity.result import CheckResult
from parity.torch_reference import TorchInputEmbedding

__all__ = [
    "SEMANTICS_ATOL",
    "SEMANTICS_CONFIG",
    "SEMANTICS_GRADS",
    "SEMANTICS_PARAM",
    "AdamWConfig",
    "LOSS_RTOL",
    "STEPS",
    "WEIGHT_ATOL",
    "adamw_reference",
    "adamw_semantics_rows",
    "optax_steps",
    "torch_steps",
    "training_checks",
    "training_rows",
]

STEPS = 12

LOSS_RTOL = 4e-6
"""|Δloss| ≤ LOSS_RTOL·max|loss| at every step. The two sides sum the logits' dot
products and the log-sum-exp over 50,257 logits in different orders, and the
weights drift apart by a few ULP per step, so the gap grows over the steps.
Measured on CPU over seeds 0-5: at most 4.6e-5 at a loss of ~65 (7e-7 relative,
6 float32 ULP of 65), so 4e-6 leaves a 5x margin."""

WEIGHT_ATOL = 5e-4
"""max |Δ| of the final tables. The loss's ULP-level gradient differences go through
Adam's ``m / (sqrt(v) + eps)``, which normalises them to the step size, and add up
over the steps. Measured on CPU over seeds 0-5 (lr 1e-2, 12 steps): 3.2e-6 to
9.7e-5 while the tables move by up to STEPS·lr = 0.12, so 5e-4 is 5x the worst seed."""


@dataclasses.dataclass(frozen=True)
class AdamWConfig:
    """The hyper-parameters both libraries get; ``weight_decay`` is torch's default."""

    learning_rate: float = 1e-2
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 1e-2

    def optax(self) -> optax.GradientTransformation:
        return optax.adamw(
            self.learning_rate,
            b1=self.b1,
            b2=self.b2,
            eps=self.eps,
            eps_root=0.0,
            weight_decay=self.weight_decay,  # optax's default is 1e-4: always pass it
            mask=None,
        )

    def torch(self, parameters) -> torch.optim.AdamW:
        return torch.optim.AdamW(
            parameters,
            lr=self.learning_rate,
            betas=(self.b1, self.b2),
            eps=self.eps,
            weight_decay=self.weight_decay,
            amsgrad=False,
            foreach=False,
        )


def adamw_reference(param: np.ndarray, grads: list[np.ndarray], cfg: AdamWConfig) -> np.ndarray:
    """AdamW (Loshchilov & Hutter; torch's documented algorithm) in float64.

    Per step ``t``: ``p -= lr·wd·p``; ``m = b1·m + (1-b1)·g``; ``v = b2·v + (1-b2)·g²``;
    ``p -= lr · (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)``.
    """
    p = param.astype(np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    lr, wd = cfg.learning_rate, cfg.weight_decay
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        p = p - lr * wd * p
        m = cfg.b1 * m + (1 - cfg.b1) * g
        v = cfg.b2 * v + (1 - cfg.b2) * g * g
        p = p - lr * (m / (1 - cfg.b1**t)) / (np.sqrt(v / (1 - cfg.b2**t)) + cfg.eps)
    return p


SEMANTICS_PARAM = np.array([1.0, -2.0, 0.5, 3.0, -0.25], np.float32)
SEMANTICS_GRADS = (
    np.array([1e-8, -3e-8, 0.0, 1.0, 2e-9], np.float32),
    np.array([1e-8, 1e-8, 0.0, -0.5, -2e-9], np.float32),
    np.array([-2e-8, 1e-8, 0.0, 0.25, 1e-9], np.float32),
)
"""Gradients of the order of eps, zero, and of order 1, for ``adamw_semantics_rows``."""
SEMANTICS_CONFIG = AdamWConfig(weight_decay=0.1)  # large enough to be seen in 3 steps
SEMANTICS_ATOL = 2e-6
"""float32 steps against the float64 formula: a few float32 ULP of |p| <= 3."""


def optax_steps(opt: optax.GradientTransformation, param: np.ndarray, grads, backend: str):
    """``param`` after one ``opt`` step per gradient, jit-compiled, on ``backend``."""

    @jax.jit
    def run(p, grads):
        state = opt.init(p)
        for g in grads:
            updates, state = opt.update(g, state, p)
            p = optax.apply_updates(p, updates)
        return p

    with on_backend(backend):
        return np.asarray(run(param, list(grads)))


def torch_steps(make_optimizer, param: np.ndarray, grads) -> np.ndarray:
    """``param`` after one torch step per gradient; ``make_optimizer(params)`` builds it."""
    p = torch.nn.Parameter(torch.from_numpy(param.copy()))
    opt = make_optimizer([p])
    for g in grads:
        p.grad = torch.from_numpy(g.copy())
        opt.step()
    return p.detach().numpy()


def adamw_semantics_rows(backend: str) -> list[CheckResult]:
    """optax and torch against ``adamw_reference`` on gradients of the order of eps.

    With ``|g| = eps`` the step is ``lr/2`` (eps outside the root) rather than
    ``~lr·1e-4`` (eps inside); decoupled decay shrinks ``p`` by ``lr·wd·p`` whatever
    ``g`` is, where Adam + L2 would move the coordinates with ``g = 0`` by ~``lr``.
    """
    cfg, param, grads = SEMANTICS_CONFIG, SEMANTICS_PARAM, SEMANTICS_GRADS
    expected = adamw_reference(param, list(grads), cfg).astype(np.float32)
    flax_p = optax_steps(cfg.optax(), param, grads, backend)
    torch_p = torch_steps(cfg.torch, param, grads)
    note = "3 steps, |g| ~ eps and g = 0, wd 0.1; tolerance: a few float32 ULP of |p| <= 3"
    tol = SEMANTICS_ATOL
    return [
        compare("adamw semantics: optax vs AdamW formula", backend, flax_p, expected,
                tolerance=tol, note=note),
        compare("adamw semantics: torch vs AdamW formula", backend, torch_p, expected,
                tolerance=tol, note=note),
    ]  # fmt: skip


def training_rows(
    backend: str, *, steps: int = STEPS, seed: int = 0, cfg: AdamWConfig = AdamWConfig()
) -> list[CheckResult]:
    """``steps`` AdamW steps on both sides from the same weights and batches.

    Rows: the per-step losses ``(steps,)``, then each final table.
    """
    batch_size, seq_len, features = 8, 4, 64
    loader = create_dataloader(
        sample_text()[1], batch_size, max_length=seq_len, stride=seq_len, shuffle=True, seed=seed
    )
    batches = [batch for _, batch in zip(range(steps), loader, strict=False)]
    if len(batches) < steps:
        raise ValueError(f"{sample_text()[0]} has only {len(batches)} batches, {steps} wanted")

    torch.manual_seed(seed)
    module = TorchInputEmbedding(context_length=seq_len, emb_dim=features)
    model = InputEmbedding(context_length=seq_len, features=features)
    opt = cfg.optax()

    def loss_fn(params, inputs_BxT, targets_BxT):
        emb_BxTxD = model.apply(params, inputs_BxT)
        logits_BxTxV = model.apply(params, emb_BxTxD, method=model.attend)
        return optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV, targets_BxT).mean()

    @jax.jit
    def step(params, state, inputs_BxT, targets_BxT):
        loss, grads = jax.value_and_grad(loss_fn)(params, inputs_BxT, targets_BxT)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    # torch's CUDA float32 matmuls do not use TF32 by default; make XLA's full float32 too.
    with on_backend(backend), jax.default_matmul_precision("float32"):
        params = params_from_torch(module.state_dict(), model=model)
        state = opt.init(params)
        flax_losses = []
        for inputs_BxT, targets_BxT in batches:
            params, state, loss = step(params, state, inputs_BxT, targets_BxT)
            flax_losses.append(loss)
        flax_losses = np.asarray(jax.device_get(flax_losses), np.float32)

    device = torch_device(backend)
    module = module.to(device)
    torch_opt = cfg.torch(module.parameters())
    torch_losses = []
    for inputs_BxT, targets_BxT in batches:
        inputs = torch.from_numpy(inputs_BxT).long().to(device)
        targets = torch.from_numpy(targets_BxT).long().to(device)
        torch_opt.zero_grad()
        logits_BxTxV = module(inputs) @ module.tok_emb.weight.T
        loss = torch.nn.functional.cross_entropy(logits_BxTxV.flatten(0, 1), targets.flatten())
        loss.backward()
        torch_opt.step()
        torch_losses.append(loss.item())
    torch_losses = np.asarray(torch_losses, np.float32)

    loss_diffs = ", ".join(f"{d:.1e}" for d in flax_losses - torch_losses)
    shape = f"{batch_size}x{seq_len}x{features}"
    rows = [
        compare(
            f"adamw {steps} steps {shape}: loss per step",
            backend,
            flax_losses,
            torch_losses,
            tolerance=LOSS_RTOL * float(np.abs(torch_losses).max()),
            note=f"losses {torch_losses[0]:.3f} → {torch_losses[-1]:.3f}; "
            f"Δ per step: {loss_diffs}; tolerance {LOSS_RTOL:g}·max|loss| (measured, 5x margin)",
        )
    ]
    for name in ("tok_emb", "pos_emb"):
        rows.append(
            compare(
                f"adamw {steps} steps {shape}: final {name}",
                backend,
                params["params"][name]["embedding"],
                getattr(module, name).weight.detach().cpu(),
                tolerance=WEIGHT_ATOL,
                note=f"tolerance {WEIGHT_ATOL:g}: 5x the worst measured seed (0-5)",
            )
        )
    return rows


def training_checks(backend: str) -> list[CheckResult]:
    """The AdamW semantics rows, then the training run."""
    return adamw_semantics_rows(backend) + training_rows(backend)
