"""The training loop mask and alpha fitting share: optimizer choice, epochs or an iteration cap,
progress bars, and the loss (cross-entropy over all outputs, as SupSup trains)."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

OPTIMIZERS = ("adam", "rmsprop", "sgd", "lbfgs")


@dataclasses.dataclass
class TrainConfig:
    """How to fit a task's parameters. `epochs` may be fractional; `iterations` caps the number of
    steps (SupSup's 1000). `lbfgs` is full-batch L-BFGS with a strong-Wolfe line search: every
    evaluation covers all the batches given (use large batches); it runs `iterations` iterations
    (default `epochs` * 20) with at most 1.5 evaluations each."""

    optimizer: str = "rmsprop"
    lr: float = 3e-4
    epochs: float = 1.0
    iterations: Optional[int] = None
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 0.0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.lr <= 0 or self.epochs <= 0 or self.batch_size < 1:
            raise ValueError(f"lr, epochs and batch_size must be positive, got {self.lr}, {self.epochs}, {self.batch_size}")
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {self.iterations}")


def make_optimizer(params: Sequence[Tensor], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    iters = lbfgs_iterations(cfg)
    return torch.optim.LBFGS(params, lr=cfg.lr, max_iter=iters, max_eval=int(1.5 * iters) + 1, history_size=20,
                             tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")


def lbfgs_iterations(cfg: TrainConfig) -> int:
    return cfg.iterations if cfg.iterations is not None else max(1, round(cfg.epochs * 20))


def num_steps(cfg: TrainConfig, batches_per_epoch: int) -> int:
    if cfg.optimizer == "lbfgs":  # closure evaluations, at most (the bar's total)
        return int(1.5 * lbfgs_iterations(cfg)) + 1
    steps = max(1, math.ceil(cfg.epochs * batches_per_epoch))
    return steps if cfg.iterations is None else min(steps, cfg.iterations)


def fit(model: torch.nn.Module, params: Sequence[Tensor], batches: Iterable, cfg: TrainConfig, *,
        penalty: Optional[Callable[[], Tensor]] = None, desc: str = "train", progress: Optional[bool] = None) -> dict:
    """Minimise cross-entropy (+ `penalty()`) over `batches` in `params` only. Returns the step count
    and the mean loss of the last epoch (or of the final L-BFGS pass). `progress`: show a tqdm
    bar (None: only on a terminal)."""
    params = list(params)
    if not params:
        raise ValueError("nothing to train: no parameters given")
    opt = make_optimizer(params, cfg)
    model.train()
    steps = num_steps(cfg, len(batches))
    bar = tqdm(total=steps, desc=desc, leave=False, disable=None if progress is None else not progress, mininterval=1.0)
    if cfg.optimizer == "lbfgs":
        loss = _fit_lbfgs(model, opt, batches, penalty, steps, bar)
    else:
        loss = _fit_minibatch(model, opt, batches, penalty, steps, bar)
    bar.close()
    return {"steps": steps, "loss": loss}


def _objective(model, x, y, penalty) -> Tensor:
    loss = F.cross_entropy(model(x), y)
    return loss + penalty() if penalty is not None else loss


def _fit_minibatch(model, opt, batches, penalty, steps, bar) -> float:
    step, epoch_losses = 0, []
    while step < steps:
        epoch_losses = []
        for x, y in batches:
            loss = _objective(model, x, y, penalty)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            epoch_losses.append(loss.item())
            step += 1
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{sum(epoch_losses[-50:]) / len(epoch_losses[-50:]):.3f}")
            if step >= steps:
                break
    return sum(epoch_losses) / max(1, len(epoch_losses))


def _fit_lbfgs(model, opt, batches, penalty, steps, bar) -> float:
    data = list(batches)  # one fixed full batch, in chunks
    n = sum(y.shape[0] for _, y in data)
    last = [float("nan")]

    def closure():
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for x, y in data:
            loss = F.cross_entropy(model(x), y, reduction="sum") / n
            loss.backward()
            total += loss.item()
        if penalty is not None:
            p = penalty()
            p.backward()
            total += p.item()
        last[0] = total
        bar.update(1)
        bar.set_postfix(loss=f"{total:.3f}")
        return torch.tensor(total)

    # One call runs all the iterations: the strong-Wolfe line search needs its own evaluation budget.
    opt.step(closure)
    with torch.no_grad():  # the loss where L-BFGS stopped (step() returns the starting loss)
        total = sum(F.cross_entropy(model(x), y, reduction="sum").item() for x, y in data) / n
        return total + (penalty().item() if penalty is not None else 0.0)
