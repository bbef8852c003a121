"""The one training loop: mask training, alpha fitting and the split runs all call `fit`.

Optimizer choice, epochs or an iteration cap, the learning-rate schedule, progress bars, the
loss (cross-entropy over all outputs, as SupSup trains, plus an optional penalty), and, when a
checkpoint is given, resumption: the loop saves its state (the trained tensors, the optimizer's
and the schedule's state, the position in the data) every `every` steps and continues from a
saved state, with the same result as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..choices import Choice
from ..files import CheckpointError
from .resume import WHAT, FileCheckpoint, parse_state, restore_tensors, state_bytes


class Optimizer(Choice):
    ADAM = "adam"
    RMSPROP = "rmsprop"
    SGD = "sgd"
    LBFGS = "lbfgs"  # full-batch, strong-Wolfe line search


class Schedule(Choice):
    CONSTANT = "constant"
    COSINE = "cosine"  # the learning rate decays to 0 over the steps


OPTIMIZERS = Optimizer.names()
SCHEDULES = Schedule.names()


@dataclasses.dataclass
class TrainConfig:
    """How to fit a task's parameters. `epochs` may be fractional; `iterations` caps the number of
    steps (SupSup's 1000). `lbfgs` is full-batch L-BFGS with a strong-Wolfe line search: every
    evaluation covers all the batches given (use large batches); it runs `iterations` iterations
    (default `epochs` * 20) with at most 1.5 evaluations each."""

    optimizer: Optimizer = Optimizer.RMSPROP
    lr: float = 3e-4
    epochs: float = 1.0
    iterations: int | None = None
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Schedule = Schedule.CONSTANT

    def __post_init__(self):
        self.optimizer = Optimizer.of(self.optimizer, "optimizer")
        self.schedule = Schedule.of(self.schedule, "schedule")
        for name in ("lr", "epochs", "momentum", "weight_decay"):  # nan and inf train to chance, silently
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        if self.lr <= 0 or self.epochs <= 0 or self.batch_size < 1:
            raise ValueError(f"lr, epochs and batch_size must be positive, got {self.lr}, {self.epochs}, {self.batch_size}")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ValueError(f"weight_decay must be >= 0 and momentum in [0, 1), got {self.weight_decay}, {self.momentum}")
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {self.iterations}")


def make_optimizer(params: Sequence[Tensor], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == Optimizer.ADAM:
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == Optimizer.RMSPROP:
        return torch.optim.RMSprop(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == Optimizer.SGD:
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    iters = lbfgs_iterations(cfg)
    return torch.optim.LBFGS(
        params,
        lr=cfg.lr,
        max_iter=iters,
        max_eval=int(1.5 * iters) + 1,
        history_size=20,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )


def lbfgs_iterations(cfg: TrainConfig) -> int:
    return cfg.iterations if cfg.iterations is not None else max(1, round(cfg.epochs * 20))


def num_steps(cfg: TrainConfig, batches_per_epoch: int) -> int:
    if cfg.optimizer == Optimizer.LBFGS:  # closure evaluations, at most (the bar's total)
        return int(1.5 * lbfgs_iterations(cfg)) + 1
    steps = max(1, math.ceil(cfg.epochs * batches_per_epoch))
    return steps if cfg.iterations is None else min(steps, cfg.iterations)


def fit(
    model: torch.nn.Module,
    params: Sequence[Tensor],
    batches: Iterable,
    cfg: TrainConfig,
    *,
    penalty: Callable[[], Tensor] | None = None,
    desc: str = "train",
    progress: bool | None = None,
    checkpoint: FileCheckpoint | str | os.PathLike | None = None,
    every: int = 0,
    state: dict[str, Tensor] | None = None,
    after_step: Callable[[int], None] | None = None,
) -> dict:
    """Minimise cross-entropy (+ `penalty()`) over `batches` in `params` only.

    Returns the step count, the mean loss of the last epoch (or of the final L-BFGS pass) and the
    step it resumed from. `progress`: show a tqdm bar (None: only on a terminal).

    Resumable training (minibatch optimizers): with `checkpoint` (a path or a `FileCheckpoint`)
    the state is saved every `every` steps (0: never) and, if the checkpoint holds one, training
    continues from it. `state`: the named tensors saved and restored with the optimizer (default:
    `params` by position; add whatever else training changes, such as BatchNorm statistics).
    Resuming mid-epoch needs `batches` that can start there, `epoch_iter(epoch, start)` (e.g.
    `SplitBatches`, whose order and augmentation depend only on seed, epoch and sample).
    `model` may be a DistributedDataParallel wrapper. `after_step(step)` (minibatch optimizers) is
    called after every optimizer step with the number of steps taken, e.g. to measure accuracy
    during training; it must leave the trained tensors as they were.
    """
    params = list(params)
    if not params:
        raise ValueError("nothing to train: no parameters given")
    if every < 0:
        raise ValueError(f"every must be >= 0, got {every}")
    if checkpoint is not None:
        if cfg.optimizer == Optimizer.LBFGS:
            raise ValueError("resumable training takes minibatch optimizers (adam, rmsprop, sgd), not lbfgs")
        if not hasattr(batches, "epoch_iter"):
            raise TypeError("resumable training needs batches with epoch_iter(epoch, start), e.g. SplitBatches")
        if not isinstance(checkpoint, FileCheckpoint):
            checkpoint = FileCheckpoint(checkpoint)
    if len(batches) == 0:
        raise ValueError("no batches to train on")
    opt = make_optimizer(params, cfg)
    model.train()
    steps = num_steps(cfg, len(batches))
    if cfg.optimizer == Optimizer.LBFGS:
        bar = _bar(steps, 0, desc, progress)
        loss = _fit_lbfgs(model, opt, batches, penalty, steps, bar)
        bar.close()
        return {"steps": steps, "loss": loss, "resumed_from": 0}
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps) if cfg.schedule == Schedule.COSINE else None
    state = state if state is not None else {f"param.{i}": p for i, p in enumerate(params)}
    pos = {"step": 0, "epoch": 0, "batch": 0, "losses": []}
    data = checkpoint.load() if checkpoint is not None else None
    if data is not None:
        pos = _resume(data, str(checkpoint.path), state, params, opt, sched, cfg, steps, len(batches))
    resumed_from = pos["step"]
    bar = _bar(steps, resumed_from, desc, progress)
    step, epoch, batch, losses = pos["step"], pos["epoch"], pos["batch"], list(pos["losses"])
    while step < steps:
        if batch == 0:
            losses = []
        for x, y in _epoch(batches, epoch, batch):
            loss = _objective(model, x, y, penalty)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            losses.append(loss.item())
            step, batch = step + 1, batch + 1
            bar.update(1)
            if after_step is not None:
                after_step(step)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}")
            if step >= steps:
                break
            if checkpoint is not None and every and step % every == 0:
                position = {"step": step, "epoch": epoch, "batch": batch, "losses": losses}
                if sched is not None:
                    position["schedule"] = sched.state_dict()
                checkpoint.save(state_bytes(state, optimizer=opt, position=position))
        else:
            epoch, batch = epoch + 1, 0
    bar.close()
    return {"steps": steps, "loss": sum(losses) / max(1, len(losses)), "resumed_from": resumed_from}


def _resume(
    data: bytes,
    name: str,
    state: dict[str, Tensor],
    params: list[Tensor],
    opt,
    sched,
    cfg: TrainConfig,
    steps: int,
    per_epoch: int,
) -> dict:
    """Put a saved training state back, all or nothing (docs/design.md §3.2): the position, the
    optimizer's and the schedule's state and every tensor are checked against this training
    before the first tensor is copied. Returns the position."""
    saved, opt_state, pos = parse_state(data, name)
    pos = _check_position(pos, name, steps, per_epoch, sched is not None)
    if opt_state is None:
        raise CheckpointError(f"{WHAT} {name} holds no optimizer state, so training cannot continue from it")
    _check_optimizer_state(opt_state, params, cfg, name)
    with torch.no_grad():
        restore_tensors(state, saved, name)  # checks every entry before copying any
    opt.load_state_dict(opt_state)
    if sched is not None:
        sched.load_state_dict(pos["schedule"])
    return pos


def _check_position(pos: dict, name: str, steps: int, per_epoch: int, scheduled: bool) -> dict:
    """The saved position, refused in a sentence unless it is a point this training passes."""

    def integer(key):
        v = pos.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise CheckpointError(f"{WHAT} {name} has an invalid position: {key} = {v!r} (a whole number >= 0)")
        return v

    step, epoch, batch = integer("step"), integer("epoch"), integer("batch")
    if not 0 < step < steps:
        raise CheckpointError(
            f"{WHAT} {name} was saved at step {step}, which this training of {steps} steps "
            "never saves: it belongs to other settings (remove it to start over)"
        )
    if batch >= per_epoch or epoch * per_epoch + batch != step:
        raise CheckpointError(
            f"{WHAT} {name} was saved at epoch {epoch}, batch {batch}, which is not step {step} "
            f"of epochs of {per_epoch} batches: it belongs to other settings (remove it to start over)"
        )
    losses = pos.get("losses")
    if (
        not isinstance(losses, list)
        or len(losses) != batch
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in losses)
    ):
        raise CheckpointError(f"{WHAT} {name} has an invalid position: 'losses' must list the {batch} losses of its epoch so far")
    if scheduled:
        sched = pos.get("schedule")
        if not isinstance(sched, dict) or sched.get("T_max") != steps or sched.get("last_epoch") != step:
            raise CheckpointError(
                f"{WHAT} {name} holds no cosine schedule of {steps} steps at step {step}: "
                "it belongs to other settings (remove it to start over)"
            )
    return {
        "step": step,
        "epoch": epoch,
        "batch": batch,
        "losses": [float(v) for v in losses],
        **({"schedule": pos["schedule"]} if scheduled else {}),
    }


def _check_optimizer_state(opt_state: dict, params: list[Tensor], cfg: TrainConfig, name: str) -> None:
    """Refuse an optimizer state that would not load into this training's optimizer, or would
    load and fail (or silently broadcast) at its first step: it is loaded into a scratch optimizer
    over copies of the parameters, and every per-parameter tensor must have its parameter's shape."""
    for idx, entries in opt_state["state"].items():
        if not 0 <= idx < len(params):
            raise CheckpointError(f"{WHAT} {name} holds optimizer state for parameter {idx}; this training has {len(params)}")
        for key, value in entries.items():
            if isinstance(value, Tensor) and value.dim() and value.shape != params[idx].shape:
                raise CheckpointError(
                    f"{WHAT} {name} has optimizer entry {key!r} of parameter {idx} shaped "
                    f"{tuple(value.shape)}; the parameter is {tuple(params[idx].shape)}"
                )
    scratch = make_optimizer([p.detach().clone().requires_grad_(True) for p in params], cfg)
    try:
        scratch.load_state_dict(opt_state)
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as err:
        raise CheckpointError(
            f"{WHAT} {name} holds an optimizer state this training's {cfg.optimizer} cannot take ({err})"
        ) from None


def _bar(steps: int, initial: int, desc: str, progress: bool | None):
    return tqdm(
        total=steps, initial=initial, desc=desc, leave=False, disable=None if progress is None else not progress, mininterval=1.0
    )


def _epoch(batches, epoch: int, start: int):
    """The batches of `epoch` from batch `start` on (batches with epoch_iter draw a new order per
    epoch; a plain iterable gives the same batches every epoch, and is only started at 0)."""
    if hasattr(batches, "epoch_iter"):
        return batches.epoch_iter(epoch, start)
    return iter(batches)


def _objective(model, x, y, penalty) -> Tensor:
    loss = F.cross_entropy(model(x), y)
    return loss + penalty() if penalty is not None else loss


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
