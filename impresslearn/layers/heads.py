"""One classifier head per task (multi-head adaptation of a pretrained backbone, docs/design.md §2.10)."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from ..memory import check_allocation
from .per_sample import grouped_rows
from .tasks import TaskAware, check_num_tasks


class TaskHeads(TaskAware):
    """One `nn.Linear` head per task; task 0 is the head given (e.g. the pretrained one), and
    `add_task()` appends a fresh head of the same shape (PyTorch's default initialisation). A
    finished task's head is frozen; a head not selected never keeps a gradient."""

    def __init__(self, head: nn.Linear, num_tasks: int = 1):
        super().__init__()
        self.in_features, self.out_features, self.has_bias = head.in_features, head.out_features, head.bias is not None
        self.heads = nn.ModuleList([head])
        self.finished: list[bool] = [False]
        self._init_tasks()
        num_tasks = check_num_tasks(num_tasks)
        w = head.weight
        check_allocation(
            (num_tasks - 1) * (w.numel() + self.out_features) * w.element_size(), f"{num_tasks} heads of shape {tuple(w.shape)}"
        )
        while self.num_tasks < num_tasks:
            self.add_task()

    @property
    def num_tasks(self) -> int:
        return len(self.heads)

    def add_task(self) -> int:
        w = self.heads[0].weight
        self.heads.append(nn.Linear(self.in_features, self.out_features, self.has_bias, device=w.device, dtype=w.dtype))
        self.finished.append(False)
        return len(self.heads) - 1

    def _truncate_tasks(self, n: int) -> None:
        while len(self.heads) > n:
            del self.heads[len(self.heads) - 1]
        del self.finished[n:]

    def _selected(self, task: int) -> None:
        for t, head in enumerate(self.heads):
            if t != task:
                for p in head.parameters():
                    p.grad = None

    def trainable_parameters(self, task: int) -> list[nn.Parameter]:
        return [] if self.finished[task] else list(self.heads[task].parameters())

    def finish_task(self, task: int | None = None) -> None:
        task = self.task if task is None else task
        self.heads[task].requires_grad_(False)
        for p in self.heads[task].parameters():
            p.grad = None
        self.finished[task] = True

    def is_finished(self, task: int) -> bool:
        return self.finished[task]

    PER_SAMPLE = True  # a task per sample; a per-sample mixture is refused in forward, as a mixture is

    def forward(self, x: Tensor) -> Tensor:
        if self.mixture is not None:
            raise RuntimeError("task heads take one task at a time, not a mixture")
        if self.rows is not None:
            return grouped_rows(x, self.rows, lambda s, xs: self.heads[s](xs))
        return self.heads[self.task](x)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, tasks={self.num_tasks}"
