"""Task streams over MNIST: PermutedMNIST, RotatedMNIST and SplitMNIST, batched from tensors in memory.

A stream is a list of tasks that share the images and differ by a fixed transform (or, for
SplitMNIST, by the classes they hold):

    PermutedMNIST(arrays, num_tasks)      task t permutes the 784 pixels with
                                          `numpy.random.RandomState(t + 1).permutation(784)`,
                                          SupSup's seeding (so task 0 is not the identity)
    RotatedMNIST(arrays, angles)          task t rotates every image by angles[t] degrees
                                          (default 10·t); `random_rotation=True` is the
                                          ImpressLearn authors' variant instead: every image is
                                          rotated by a fresh uniform angle in [-90°, 90°] each
                                          time it is drawn, the same for all tasks, so all
                                          "tasks" share one distribution

`stream.train(t, batch_size, seed)` and `stream.test(t, batch_size)` return `Batches`: a
re-iterable of `(x [B, 784] float32 normalised, y [B] int64)`; training batches are reshuffled
on every pass from their own seeded generator.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from .mnist import MNIST_MEAN, MNIST_STD, MnistArrays

Transform = Callable[[Tensor, torch.Generator], Tensor]  # uint8 [B, 28, 28] -> float [B, 784] in [0, 1]


class Batches:
    """Batches of (normalised flat images, labels) drawn from tensors in memory."""

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        transform: Transform,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        device: torch.device | str = "cpu",
        limit: int | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.x, self.y, self.transform = x, y, transform
        self.batch_size, self.shuffle, self.device = int(batch_size), shuffle, torch.device(device)
        self.gen = torch.Generator().manual_seed(int(seed))
        self.seed = int(seed)
        self.limit = limit  # at most this many batches per pass

    def __len__(self) -> int:
        n = math.ceil(self.x.shape[0] / self.batch_size)
        return n if self.limit is None else min(n, self.limit)

    @property
    def num_samples(self) -> int:
        return min(self.x.shape[0], len(self) * self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = self.x.shape[0]
        order = torch.randperm(n, generator=self.gen) if self.shuffle else torch.arange(n)
        # Test passes reuse one generator state so that random transforms repeat exactly.
        tgen = self.gen if self.shuffle else torch.Generator().manual_seed(self.seed)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            x = self.transform(self.x[idx], tgen)
            yield ((x - MNIST_MEAN) / MNIST_STD).to(self.device), self.y[idx].to(self.device)


class TaskStream(abc.ABC):
    """Tasks over one MNIST set; subclasses define `num_tasks`, `transform(t)` and `describe(t)`."""

    name = "stream"

    def __init__(self, arrays: MnistArrays):
        self.arrays = arrays

    @property
    @abc.abstractmethod
    def num_tasks(self) -> int: ...

    @abc.abstractmethod
    def transform(self, task: int) -> Transform: ...

    @abc.abstractmethod
    def describe(self, task: int) -> str: ...

    def _check(self, task: int) -> None:
        if not 0 <= task < self.num_tasks:
            raise IndexError(f"task {task} out of range for {self.name} with {self.num_tasks} tasks")

    def data(self, task: int, split: str) -> tuple[Tensor, Tensor]:
        """The images and labels of `task` in `split` ("train" or "test"): all of them, by default."""
        return getattr(self.arrays, f"{split}_x"), getattr(self.arrays, f"{split}_y")

    def train(self, task: int, batch_size: int = 128, seed: int = 0, device="cpu", limit=None) -> Batches:
        self._check(task)
        return Batches(
            *self.data(task, "train"), self.transform(task), batch_size, shuffle=True, seed=seed, device=device, limit=limit
        )

    def test(self, task: int, batch_size: int = 1000, seed: int = 0, shuffle: bool = False, device="cpu", limit=None) -> Batches:
        self._check(task)
        return Batches(
            *self.data(task, "test"), self.transform(task), batch_size, shuffle=shuffle, seed=seed, device=device, limit=limit
        )


def _flat(images: Tensor) -> Tensor:
    return images.reshape(images.shape[0], -1).float().div_(255.0)


class PermutedMNIST(TaskStream):
    """Task t: the pixels permuted by `numpy.random.RandomState(t + 1).permutation(784)` (SupSup's)."""

    name = "permuted-mnist"

    def __init__(self, arrays: MnistArrays, num_tasks: int = 2500):
        super().__init__(arrays)
        self._num_tasks = int(num_tasks)
        self._perms: dict[int, Tensor] = {}

    @property
    def num_tasks(self) -> int:
        return self._num_tasks

    def permutation(self, task: int) -> Tensor:
        self._check(task)
        if task not in self._perms:
            pixels = self.arrays.train_x[0].numel()
            self._perms[task] = torch.from_numpy(np.random.RandomState(task + 1).permutation(pixels))
        return self._perms[task]

    def transform(self, task: int) -> Transform:
        perm = self.permutation(task)
        return lambda images, gen: _flat(images)[:, perm]

    def describe(self, task: int) -> str:
        return f"permutation seed {task + 1}"


def rotate(images: Tensor, angle: float) -> Tensor:
    """uint8 images `[B, H, W]` rotated counter-clockwise by `angle` degrees about the centre."""
    return TF.rotate(images.unsqueeze(1), float(angle), interpolation=TF.InterpolationMode.BILINEAR).squeeze(1)


class RotatedMNIST(TaskStream):
    """Task t: every image rotated by `angles[t]` degrees (default 10·t for `num_tasks` tasks).

    `random_rotation=True` is the ImpressLearn authors' variant (torchvision `RandomRotation(90)`
    applied to every image): each image gets its own uniform angle in [-max_angle, max_angle],
    redrawn each time it is drawn, for every task alike. It is kept to reproduce their numbers;
    its tasks are not distinct distributions.
    """

    name = "rotated-mnist"

    def __init__(
        self,
        arrays: MnistArrays,
        angles: Sequence[float] | None = None,
        num_tasks: int = 36,
        step: float = 10.0,
        random_rotation: bool = False,
        max_angle: float = 90.0,
    ):
        super().__init__(arrays)
        self.angles = [float(a) for a in angles] if angles is not None else [step * t for t in range(num_tasks)]
        if not self.angles:
            raise ValueError("RotatedMNIST needs at least one angle")
        self.random_rotation = bool(random_rotation)
        self.max_angle = float(max_angle)

    @property
    def num_tasks(self) -> int:
        return len(self.angles)

    def transform(self, task: int) -> Transform:
        self._check(task)
        if self.random_rotation:
            return self._random_rotation
        angle = self.angles[task]
        return lambda images, gen: _flat(rotate(images, angle))

    def _random_rotation(self, images: Tensor, gen: torch.Generator) -> Tensor:
        # One angle per image: torchvision rotates a batch by a single angle, so build the
        # per-image rotation grids here (bilinear, zero fill, like `rotate`; the angle
        # distribution is symmetric, so the direction convention does not matter).
        angles = torch.deg2rad((torch.rand(images.shape[0], generator=gen) * 2 - 1) * self.max_angle)
        cos, sin, zero = angles.cos(), angles.sin(), torch.zeros_like(angles)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        x = images.unsqueeze(1).float().div_(255.0)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).flatten(1)

    def describe(self, task: int) -> str:
        if self.random_rotation:
            return f"random rotation in ±{self.max_angle:g}° per image (authors' variant)"
        return f"rotation {self.angles[task]:g}°"


class SplitMNIST(TaskStream):
    """Task t: the digits `t·c .. t·c + c − 1` (c = `classes_per_task`, 2 by default: 5 tasks),
    labelled `0 .. c − 1` within the task, so every task shares one head of c outputs (the
    task-incremental setting with task identity given at test time, as ExSSNeT evaluates)."""

    name = "split-mnist"

    def __init__(self, arrays: MnistArrays, classes_per_task: int = 2):
        super().__init__(arrays)
        if classes_per_task < 1 or 10 % classes_per_task:
            raise ValueError(f"classes_per_task must divide the 10 digits, got {classes_per_task}")
        self.classes_per_task = int(classes_per_task)
        self._index: dict[tuple[int, str], Tensor] = {}

    @property
    def num_tasks(self) -> int:
        return 10 // self.classes_per_task

    def classes(self, task: int) -> list[int]:
        self._check(task)
        return list(range(task * self.classes_per_task, (task + 1) * self.classes_per_task))

    def data(self, task: int, split: str) -> tuple[Tensor, Tensor]:
        x, y = super().data(task, split)
        if (task, split) not in self._index:
            first = task * self.classes_per_task
            self._index[task, split] = ((y >= first) & (y < first + self.classes_per_task)).nonzero().flatten()
        idx = self._index[task, split]
        return x[idx], y[idx] - task * self.classes_per_task

    def transform(self, task: int) -> Transform:
        self._check(task)
        return lambda images, gen: _flat(images)

    def describe(self, task: int) -> str:
        return f"digits {', '.join(map(str, self.classes(task)))}"
