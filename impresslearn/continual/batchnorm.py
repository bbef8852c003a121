"""Per-task BatchNorm statistics re-estimated for a task's final mask or alphas.

While a task trains, its running statistics average over batches computed with masks (or
alphas) that keep changing, with momentum 0.1; after a short training, or after the masks moved
a lot, they describe none of them and evaluation suffers (measured on the synthetic SplitCIFAR-100
stand-in: 80-100 % in training mode, chance with the running statistics, after 20 steps).
`recalibrate` resets them and takes the plain average over training batches with the final
parameters, in training mode and without gradients.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn

from ..layers import TaskBatchNorm, set_task, task_modules


@torch.no_grad()
def recalibrate(model: nn.Module, task: int, batches: Iterable, max_batches: int | None = None) -> int:
    """Re-estimate task `task`'s BatchNorm statistics on `batches` (at most `max_batches`).
    Returns the number of batches used (0 if the model keeps no per-task BatchNorm)."""
    bns = [m.bns[task] for _, m in task_modules(model) if isinstance(m, TaskBatchNorm)]
    if not bns or max_batches == 0:
        return 0
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: every batch counts the same
    was_training = model.training
    model.train()
    set_task(model, task)
    used = 0
    try:
        for x, _ in batches:
            model(x)
            used += 1
            if max_batches is not None and used >= max_batches:
                break
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        model.train(was_training)
    return used
