"""Continual-learning metrics, measured from evaluations rather than assumed.

    accuracy(model, batches, task)         top-1 accuracy of a task (or a task mixture)
    AccuracyMatrix                         R[i][j]: accuracy on task j after learning task i;
                                           average accuracy, forgetting, backward transfer
    incorrect_mask_matrix(model, ...)      M[i][j]: accuracy of task i's mask on task j's data

Forgetting (Chaudhry et al. 2018) of task j is the best accuracy it had before the last task
minus its final accuracy; backward transfer (Lopez-Paz & Ranzato 2017) is the mean of
`R[T-1][j] - R[j][j]` over the earlier tasks. For frozen masks both are 0 when measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn as nn

from ..layers import set_task


@torch.no_grad()
def accuracy(model: nn.Module, batches: Iterable, task=None, classes: int | None = None) -> float:
    """Fraction of correct top-1 predictions over `batches` with `task` selected (the model's
    current task if None). The prediction is the argmax over all outputs, superfluous ones
    included, as SupSup evaluates; `classes` restricts it to the first `classes` outputs."""
    if task is not None:
        set_task(model, task)
    was_training = model.training
    model.eval()
    correct = total = 0
    for x, y in batches:
        out = model(x)
        if classes is not None:
            out = out[:, :classes]
        correct += (out.argmax(1) == y).sum().item()
        total += y.numel()
    model.train(was_training)
    if total == 0:
        raise ValueError("no batches to evaluate")
    return correct / total


class AccuracyMatrix:
    """`R[i][j]`, the accuracy on task j measured after learning the i-th task (NaN if not measured)."""

    def __init__(self, num_tasks: int):
        self.num_tasks = int(num_tasks)
        self.R = [[math.nan] * self.num_tasks for _ in range(self.num_tasks)]

    def record(self, after: int, on: int, acc: float) -> None:
        self.R[after][on] = float(acc)

    def measure_row(self, after: int, evaluate: Callable[[int], float], tasks: Sequence[int] | None = None) -> None:
        """Fill row `after` by calling `evaluate(j)` for each task j learned so far (all of `tasks`)."""
        for j in range(after + 1) if tasks is None else tasks:
            self.record(after, j, evaluate(j))

    @property
    def final(self) -> list[float]:
        return self.R[-1]

    def average_accuracy(self) -> float:
        return sum(self.final) / self.num_tasks

    def forgetting(self) -> float:
        """Mean over tasks j < T-1 of max_{i < T-1} R[i][j] - R[T-1][j] over the measured rows (0.0
        for a single task); the diagonal and the last row must be measured."""
        t = self.num_tasks
        if t < 2:
            return 0.0
        # rows not measured (NaN) are left out: a sparse matrix measures only the diagonal between rows
        drops = [max(v for i in range(j, t - 1) if not math.isnan(v := self.R[i][j])) - self.R[t - 1][j] for j in range(t - 1)]
        return sum(drops) / len(drops)

    def backward_transfer(self) -> float:
        """Mean over tasks j < T-1 of R[T-1][j] - R[j][j] (0.0 for a single task)."""
        t = self.num_tasks
        if t < 2:
            return 0.0
        return sum(self.R[t - 1][j] - self.R[j][j] for j in range(t - 1)) / (t - 1)

    def to_dict(self) -> dict:
        return {
            "matrix": [[None if math.isnan(v) else v for v in row] for row in self.R],
            "average_accuracy": self.average_accuracy(),
            "forgetting": self.forgetting(),
            "backward_transfer": self.backward_transfer(),
        }


def incorrect_mask_matrix(model: nn.Module, tasks: Sequence[int], test_batches: Callable[[int], Iterable]) -> list[list[float]]:
    """`M[i][j]`: accuracy of the model's task `i` (mask or alphas) on the test data of stream
    task `tasks[j]`; model task i belongs to stream task `tasks[i]`. The diagonal is the usual
    accuracy; the rest shows what a wrong mask gives (chance, ~10 %, for unrelated tasks)."""
    return [[accuracy(model, test_batches(tasks[j]), task=i) for j in range(len(tasks))] for i in range(len(tasks))]


def off_diagonal(matrix: Sequence[Sequence[float]]) -> list[float]:
    return [v for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j]
