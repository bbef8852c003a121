"""ImpressLearn step 2: a new task learns only coefficients over a frozen basis of masks.

Layer i computes with `W_i ⊙ Σ_t alpha[i, t] M_i^t` (paper eq. 1): alpha `[K]` per layer (the
paper), or `[K, rows]` per output channel. Alphas start at 1/K. The optional penalty (eq. 2)
is `lam · Σ_i (Σ_t |alpha[i, t]| - 1)^2`, taken per output channel for per-channel alphas. In
a hybrid model (`impress_model(..., hybrid=True)`) the last layer learns a SupSup mask for
the task instead, trained jointly with the alphas.

    fit_alpha(model, task, batches, cfg, lam)   fit the alphas (and hybrid mask) of one task
    favoured_masks(model, task)                 which basis mask each layer's alpha favours
    basis_gn(...)                               a basis task given without its label: learn it
                                                as a new task; alpha points at its own mask
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn as nn
from torch import Tensor

from ..layers import finish_task, impress_layers, set_task, supermask_layers
from .training import TrainConfig, fit

# Alpha-fitting settings: the paper's (Table 3, MNIST) and the prototype; the default of
# `impresslearn run` is the best found when tuning on a validation split (docs/results.md).
# How to fit a task's alphas (TrainConfig fields): the paper's settings, a first prototype's, and
# the best found by tuning on a validation split ("tuned", the default; docs/results.md).
ALPHA_PRESETS: dict[str, dict] = {
    "paper": dict(optimizer="rmsprop", lr=2e-3, epochs=3.0, batch_size=128),
    "prototype": dict(optimizer="adam", lr=1e-2, epochs=3.0, batch_size=128),
    "tuned": dict(optimizer="adam", lr=0.1, epochs=5.0, batch_size=1024, schedule="cosine"),
}
DEFAULT_ALPHA_PRESET = "tuned"


def alpha_params(model: nn.Module, task: int) -> list[Tensor]:
    """What a new task learns: its alpha in every Impress layer, plus its scores in any SupSup
    layer (the hybrid variant's last layer)."""
    layers = impress_layers(model)
    if not layers:
        raise ValueError("the model has no Impress layers; build it with impress_model()")
    set_task(model, task)
    return [m.task_floats(task) for _, m in layers] + [m.task_floats(task) for _, m in supermask_layers(model)]


def alpha_penalty(model: nn.Module, task: int) -> Tensor:
    """Paper eq. 2 without lam: Σ over layers (and output channels) of (Σ_t |alpha_t| - 1)^2."""
    terms = [((m.task_alpha(task).abs().sum(0) - 1) ** 2).sum() for _, m in impress_layers(model)]
    return torch.stack(terms).sum()


def check_lam(lam) -> None:
    """The penalty weight of eq. 2: a finite number >= 0 (nan would train to chance, silently)."""
    if not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam}")


def fit_alpha(
    model: nn.Module,
    task: int,
    batches: Iterable,
    cfg: TrainConfig,
    *,
    lam: float = 0.0,
    desc: str | None = None,
    progress: bool | None = None,
    finish: bool = True,
) -> dict:
    """Fit the alphas of `task` (and its hybrid mask) on `batches`; the basis and backbone stay
    frozen. With `finish` the task is then finished (docs/design.md §4.4)."""
    check_lam(lam)
    if cfg.optimizer == "lbfgs" and supermask_layers(model):
        raise ValueError(
            "L-BFGS cannot train the hybrid variant's mask scores (straight-through top-k); use adam, rmsprop or sgd"
        )
    set_task(model, task)
    penalty = (lambda: lam * alpha_penalty(model, task)) if lam > 0 else None
    out = fit(model, alpha_params(model, task), batches, cfg, penalty=penalty, desc=desc or f"alpha {task}", progress=progress)
    if finish:
        finish_task(model, task)
    return out


@torch.no_grad()
def favoured_masks(model: nn.Module, task: int) -> dict[str, int]:
    """The basis mask with the largest alpha in each Impress layer (averaged over output channels
    for per-channel alphas)."""
    out = {}
    for name, m in impress_layers(model):
        a = m.task_alpha(task).detach()
        out[name] = int((a.mean(1) if a.dim() == 2 else a).argmax())
    return out


def basis_gn(
    model: nn.Module,
    task: int,
    batches: Iterable,
    cfg: TrainConfig,
    basis_index: int,
    *,
    lam: float = 0.0,
    progress: bool | None = None,
) -> dict:
    """basis-GN: data of basis task `basis_index`, given without its label, is learned as task
    `task` of `model` (a new one); reports which mask each layer favours, whether it is the
    task's own, and the fitted alphas."""
    fit_alpha(model, task, batches, cfg, lam=lam, desc=f"basis-GN of basis task {basis_index}", progress=progress)
    fav = favoured_masks(model, task)
    return {
        "basis_index": basis_index,
        "favoured": fav,
        "found": all(v == basis_index for v in fav.values()),
        "alpha": {n: m.task_alpha(task).detach().cpu().tolist() for n, m in impress_layers(model)},
    }
