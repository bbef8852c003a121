"""Normalisation that keeps every task: per-task BatchNorm statistics, or a BatchNorm frozen as it is.

    TaskBatchNorm1d / 2d / 3d   one non-affine BatchNorm per task (as SupSup keeps)
    FrozenBatchNorm             running statistics and affine frozen: evaluation-mode normalisation
                                in training too (convert's batchnorm="keep")

LayerNorm, GroupNorm and RMSNorm keep no statistics: convert() freezes their affine instead
(docs/design.md §4.4).
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..memory import check_allocation
from .tasks import TaskAware, check_num_tasks


class TaskBatchNorm(TaskAware):
    """One non-affine BatchNorm per task: each task keeps its own running statistics.

    Under a task mixture (task inference) the batch's own statistics are used."""

    BATCHNORM: type[nn.modules.batchnorm._BatchNorm] = nn.BatchNorm2d

    def __init__(self, num_features: int, num_tasks: int = 1, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.bns = nn.ModuleList()
        self._init_tasks()
        check_allocation(
            check_num_tasks(num_tasks) * 2 * num_features * 4, f"{num_tasks} tasks' BatchNorm of {num_features} features"
        )
        for _ in range(num_tasks):
            self.add_task()

    @property
    def num_tasks(self) -> int:
        return len(self.bns)

    def add_task(self) -> int:
        like = self.bns[0].running_mean if len(self.bns) else None  # a new task's statistics: the others' device and dtype
        self.bns.append(
            self.BATCHNORM(
                self.num_features,
                self.eps,
                self.momentum,
                affine=False,
                device=None if like is None else like.device,
                dtype=None if like is None else like.dtype,
            )
        )
        return len(self.bns) - 1

    def _truncate_tasks(self, n: int) -> None:
        while len(self.bns) > n:
            del self.bns[len(self.bns) - 1]

    def forward(self, x: Tensor) -> Tensor:
        if self.mixture is not None:
            return F.batch_norm(x, None, None, training=True, eps=self.eps)
        return self.bns[self.task](x)

    def extra_repr(self) -> str:
        return f"{self.num_features}, tasks={self.num_tasks}"


class TaskBatchNorm1d(TaskBatchNorm):
    BATCHNORM = nn.BatchNorm1d


class TaskBatchNorm2d(TaskBatchNorm):
    BATCHNORM = nn.BatchNorm2d


class TaskBatchNorm3d(TaskBatchNorm):
    BATCHNORM = nn.BatchNorm3d


class FrozenBatchNorm(nn.Module):
    """A BatchNorm whose affine and running statistics never change: evaluation-mode normalisation
    in training too (a shared, trained BatchNorm would otherwise move every task's outputs)."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        super().__init__()
        self.num_features, self.eps = bn.num_features, bn.eps
        for key in ("weight", "bias", "running_mean", "running_var"):
            value = getattr(bn, key)
            self.register_buffer(key, None if value is None else value.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        if self.running_mean is None:  # a BatchNorm without running statistics normalises each batch
            return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=self.eps)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, frozen"
