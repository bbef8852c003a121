"""Normalisation that keeps every task: per-task BatchNorm statistics, or a BatchNorm frozen as it is.

    TaskBatchNorm1d / 2d / 3d   one non-affine BatchNorm per task (as SupSup keeps)
    FrozenBatchNorm             running statistics and affine frozen: evaluation-mode normalisation
                                in training too (convert's batchnorm="keep")

LayerNorm, GroupNorm and RMSNorm keep no statistics: convert() freezes their affine instead
(docs/design.md §4.4).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..memory import check_allocation
from .tasks import TaskAware, check_num_tasks


class TaskBatchNorm(TaskAware):
    """One non-affine BatchNorm per task: each task keeps its own running statistics.

    Under a task mixture (task inference) the batch's own statistics are used. Under a task per
    sample (`TaskRows`) each sample is normalised with its task's running statistics, and under a
    per-sample mixture (`SampleMixture`) with the mixture of the tasks' running statistics, each
    sample its own (the batch's statistics would tie the samples of different tasks together)."""

    BATCHNORM: type[nn.modules.batchnorm._BatchNorm] = nn.BatchNorm2d
    PER_SAMPLE = True

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
        if self.rows is not None or self.probe is not None:
            return self._per_sample(x)
        if self.mixture is not None:
            return F.batch_norm(x, None, None, training=True, eps=self.eps)
        return self.bns[self.task](x)

    def _per_sample(self, x: Tensor) -> Tensor:
        means = torch.stack([bn.running_mean for bn in self.bns])  # [tasks, C]
        variances = torch.stack([bn.running_var for bn in self.bns])
        if self.rows is not None:
            mean, var = means[self.rows], variances[self.rows]
        else:
            beta = self.mixture.to(means.dtype) + self.probe.to(means.dtype)  # [B, tasks]: each sample its own
            mean, var = beta @ means, beta @ variances
        shape = (x.shape[0], x.shape[1]) + (1,) * (x.dim() - 2)
        return (x - mean.reshape(shape)) * torch.rsqrt(var.reshape(shape) + self.eps)

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
