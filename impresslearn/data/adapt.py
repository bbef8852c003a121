"""The KSM adaptation stream: a network pretrained on MNIST digits 0-4 adapted in turn to new tasks.

    AdaptationTasks(arrays)     tasks (by name, in this order by default):
                                  digits0-4   images of digits 0-4, labels 0-4 (the pretraining task)
                                  digits5-9   images of digits 5-9, labels 0-4
                                  permuted    all digits, pixels permuted by
                                              numpy.random.RandomState(seed).permutation(784)
                                  rotated90   all digits rotated by 90 degrees
                                  inverted    all digits with inverted intensities (255 - x)

`train(t, ...)` and `test(t, ...)` return the streams' `Batches` (flat normalised images).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .mnist import MnistArrays
from .streams import Batches, rotate

ADAPT_TASKS = ("digits0-4", "digits5-9", "permuted", "rotated90", "inverted")
DESCRIPTIONS = {
    "digits0-4": "MNIST digits 0-4 (pretraining)",
    "digits5-9": "MNIST digits 5-9, labels 0-4",
    "permuted": "all digits, pixels permuted",
    "rotated90": "all digits rotated by 90°",
    "inverted": "all digits, intensities inverted",
}


def _flat(images: Tensor) -> Tensor:
    return images.reshape(images.shape[0], -1).float().div_(255.0)


class AdaptationTasks:
    """The tasks of the KSM experiment over one MNIST set (see the module docstring)."""

    name = "ksm-adapt"

    def __init__(self, arrays: MnistArrays, tasks: Sequence[str] = ADAPT_TASKS, permutation_seed: int = 1, angle: float = 90.0):
        unknown = [t for t in tasks if t not in ADAPT_TASKS]
        if unknown or not tasks:
            raise ValueError(f"tasks must be some of {ADAPT_TASKS}, got {list(tasks)}")
        self.arrays, self.tasks, self.angle = arrays, tuple(tasks), float(angle)
        pixels = arrays.train_x[0].numel()
        self.permutation = torch.from_numpy(np.random.RandomState(permutation_seed).permutation(pixels))

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def describe(self, task: int) -> str:
        return DESCRIPTIONS[self.tasks[task]]

    def _data(self, task: int, split: str) -> tuple[Tensor, Tensor]:
        x, y = getattr(self.arrays, f"{split}_x"), getattr(self.arrays, f"{split}_y")
        name = self.tasks[task]
        if name == "digits0-4":
            keep = y < 5
            return x[keep], y[keep]
        if name == "digits5-9":
            keep = y >= 5
            return x[keep], y[keep] - 5
        return x, y

    def transform(self, task: int):
        name = self.tasks[task]
        if name == "permuted":
            perm = self.permutation
            return lambda images, gen: _flat(images)[:, perm]
        if name == "rotated90":
            return lambda images, gen: _flat(rotate(images, self.angle))
        if name == "inverted":
            return lambda images, gen: _flat(255 - images)
        return lambda images, gen: _flat(images)

    def train(self, task: int, batch_size: int = 128, seed: int = 0, limit: int | None = None) -> Batches:
        x, y = self._data(task, "train")
        return Batches(x, y, self.transform(task), batch_size, shuffle=True, seed=seed, limit=limit)

    def test(self, task: int, batch_size: int = 1000, samples: int | None = None) -> Batches:
        """The test images of `task` (the first `samples` of them, all if None), in a fixed order."""
        x, y = self._data(task, "test")
        if samples is not None:
            x, y = x[:samples], y[:samples]
        return Batches(x, y, self.transform(task), batch_size, shuffle=False)
