"""Class-incremental image streams: SplitCIFAR-100 and SplitImageNet, and a synthetic stand-in.

A split stream cuts a classification data set into tasks of a few classes each; inside task t
a class's label is its position in the task's class list (SupSup's splits, see below).

    split_cifar100(root, download=False)   torchvision `CIFAR100(root)`; 20 tasks of 5 classes:
                                           task t = classes 5t..5t+4 (SupSup's PartitionCIFAR100)
    split_imagenet(root)                   `ImageFolder(root/train)` and `ImageFolder(root/val)`
                                           (the val images sorted into one folder per class);
                                           100 tasks of 10 classes: the 1000 class indices
                                           shuffled by `numpy.random.seed(1); permutation(1000)`,
                                           task t = positions 10t..10t+9 (SupSup's SplitImageNet)
    synthetic=True (either)                `SyntheticImages` of the same shapes and class count,
                                           generated on the fly, for machines without the data

Transforms are the usual ones (SupSup's): CIFAR trains with RandomCrop(32, padding=4) and a
horizontal flip, ImageNet with RandomResizedCrop(224) and a flip, tests with Resize(256) +
CenterCrop(224); both normalise with the data set's mean and std.

`stream.train(t, batch_size, seed, rank=, world_size=)` returns `SplitBatches`: a re-iterable
whose order and random augmentation are functions of (seed, epoch, sample) only, so that a run
resumed mid-epoch (`epoch_iter(epoch, start)`) and a data-parallel run (each rank takes its
slice of every global batch) see exactly the images a single uninterrupted process sees.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms import v2

from ..seeding import derive_seed

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR100_MEAN = (0.491, 0.482, 0.447)
CIFAR100_STD = (0.247, 0.243, 0.262)


# --------------------------------------------------------------------------- transforms


def _to_normalised(mean, std) -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def imagenet_transform(train: bool, size: int = 224) -> Callable:
    """RandomResizedCrop + flip for training; Resize(size * 256/224) + CenterCrop for testing."""
    if train:
        head = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
    else:
        head = [v2.Resize(round(size * 256 / 224), antialias=True), v2.CenterCrop(size)]
    return v2.Compose(head + _to_normalised(IMAGENET_MEAN, IMAGENET_STD))


def cifar_transform(train: bool, size: int = 32) -> Callable:
    """RandomCrop(size, padding=size/8) + flip for training; normalisation only for testing."""
    head = [v2.RandomCrop(size, padding=size // 8), v2.RandomHorizontalFlip()] if train else []
    return v2.Compose(head + _to_normalised(CIFAR100_MEAN, CIFAR100_STD))


# --------------------------------------------------------------------------- synthetic data


class SyntheticImages(torch.utils.data.Dataset):
    """`per_class` uint8 images `[3, size, size]` for each of `num_classes` classes, generated
    from (seed, index) on every access: nothing is held in memory, and every process and every
    run sees the same images. Class c is a smooth colour pattern of its own (a seeded 4x4
    pattern, upsampled) plus per-image noise, so that a network can learn the classes."""

    def __init__(self, num_classes: int, per_class: int, size: int, *, seed: int = 0, split: str = "train"):
        if num_classes < 1 or per_class < 1 or size < 4:
            raise ValueError(f"need num_classes >= 1, per_class >= 1 and size >= 4, got {num_classes}, {per_class}, {size}")
        self.num_classes, self.per_class, self.size = int(num_classes), int(per_class), int(size)
        self.seed, self.split = int(seed), split
        self.targets = [i // self.per_class for i in range(len(self))]

    def __len__(self) -> int:
        return self.num_classes * self.per_class

    def pattern(self, cls: int) -> Tensor:
        gen = torch.Generator().manual_seed(derive_seed(self.seed, f"synthetic-class/{cls}"))
        small = torch.randn(1, 3, 4, 4, generator=gen)
        return torch.nn.functional.interpolate(small, size=(self.size, self.size), mode="bilinear", align_corners=False)[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        cls = self.targets[index]
        gen = torch.Generator().manual_seed(derive_seed(self.seed, f"synthetic-{self.split}/{index}"))
        noise = torch.randn(3, self.size, self.size, generator=gen)
        img = 128 + 60 * self.pattern(cls) + 15 * noise
        return img.clamp_(0, 255).to(torch.uint8), cls


# --------------------------------------------------------------------------- batches


class _Samples(torch.utils.data.Dataset):
    """Items `(index, augmentation seed)` of a base data set, transformed under that seed and
    relabelled within the task. The seed makes random crops and flips a function of the sample
    and epoch alone, whatever process or worker draws them."""

    def __init__(self, base, transform: Callable, label_map: dict[int, int]):
        self.base, self.transform, self.label_map = base, transform, label_map

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Tensor, int]:
        index, aug_seed = key
        img, target = self.base[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(aug_seed)
            x = self.transform(img)
        return x, self.label_map[int(target)]


def _collate(items):
    xs, ys = zip(*items)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)


class SplitBatches:
    """Batches `(x [b, 3, H, W] float32 normalised, y [b] int64)` of one task.

    Global batches of `batch_size` follow a permutation drawn from (seed, epoch) (the natural
    order when not shuffling). With `world_size > 1` each rank yields its contiguous slice of
    every global batch (batch_size / world_size images): averaged over ranks, as DDP averages
    gradients, that is the single-process gradient. Training batches drop an incomplete last
    batch (all ranks must step together), unless the task has fewer images than one batch.
    """

    def __init__(
        self,
        dataset,
        indices: Sequence[int],
        label_map: dict[int, int],
        transform: Callable,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        device="cpu",
        limit: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 0,
        drop_last: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} out of range for world size {world_size}")
        if len(indices) == 0:
            raise ValueError("a task without images")
        self.samples = _Samples(dataset, transform, label_map)
        self.indices = torch.as_tensor(list(indices), dtype=torch.int64)
        self.batch_size = min(int(batch_size), len(self.indices))
        if self.batch_size % world_size:
            raise ValueError(f"the global batch ({self.batch_size} images) must divide evenly among {world_size} processes")
        self.shuffle, self.seed, self.device = shuffle, int(seed), torch.device(device)
        self.limit, self.rank, self.world_size = limit, int(rank), int(world_size)
        self.workers, self.drop_last = int(workers), drop_last
        self.epoch = 0  # the pass `__iter__` draws next

    def __len__(self) -> int:
        n = len(self.indices)
        batches = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        return batches if self.limit is None else min(batches, self.limit)

    @property
    def num_samples(self) -> int:
        return min(len(self.indices), len(self) * self.batch_size)

    def order(self, epoch: int) -> Tensor:
        if not self.shuffle:
            return self.indices
        gen = torch.Generator().manual_seed(derive_seed(self.seed, f"order/{epoch}"))
        return self.indices[torch.randperm(len(self.indices), generator=gen)]

    def _keys(self, epoch: int, start: int) -> Iterator[list[tuple[int, int]]]:
        order = self.order(epoch)
        for b in range(start, len(self)):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            local = batch.tensor_split(self.world_size)[self.rank].tolist()
            yield [(i, derive_seed(self.seed, f"aug/{epoch}/{i}")) for i in local]

    def epoch_iter(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of pass `epoch` from batch `start` on (a resumed run skips the rest unread)."""
        keys = self._keys(epoch, start)
        if self.workers > 0:
            loader = torch.utils.data.DataLoader(
                self.samples,
                batch_sampler=list(keys),
                num_workers=self.workers,
                collate_fn=_collate,
                pin_memory=self.device.type == "cuda",
            )
            batches = iter(loader)
        else:
            batches = (_collate([self.samples[k] for k in ks]) for ks in keys)
        for x, y in batches:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        return self.epoch_iter(epoch)


# --------------------------------------------------------------------------- streams


class SplitStream:
    """Tasks of a few classes each over one train set and one test set."""

    def __init__(
        self,
        name: str,
        train_set,
        test_set,
        tasks: Sequence[Sequence[int]],
        train_transform: Callable,
        test_transform: Callable,
        source: str = "",
    ):
        self.name, self.train_set, self.test_set = name, train_set, test_set
        self.tasks = [list(map(int, t)) for t in tasks]
        if len({len(t) for t in self.tasks}) != 1:
            raise ValueError("all tasks of a split stream must have the same number of classes")
        self.train_transform, self.test_transform, self.source = train_transform, test_transform, source
        self._by_class = {id(train_set): _class_index(train_set), id(test_set): _class_index(test_set)}

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def classes_per_task(self) -> int:
        return len(self.tasks[0])

    def task_classes(self, task: int) -> list[int]:
        self._check(task)
        return self.tasks[task]

    def describe(self, task: int) -> str:
        cls = self.task_classes(task)
        return f"task {task}: classes {cls}"

    def _check(self, task: int) -> None:
        if not 0 <= task < self.num_tasks:
            raise IndexError(f"task {task} out of range for {self.name} with {self.num_tasks} tasks")

    def _indices(self, dataset, task: int) -> list[int]:
        by_class = self._by_class[id(dataset)]
        return [i for c in self.task_classes(task) for i in by_class.get(c, [])]

    def _label_map(self, task: int) -> dict[int, int]:
        return {c: pos for pos, c in enumerate(self.task_classes(task))}

    def train(
        self,
        task: int,
        batch_size: int = 64,
        seed: int = 0,
        device="cpu",
        limit=None,
        *,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 0,
    ) -> SplitBatches:
        return SplitBatches(
            self.train_set,
            self._indices(self.train_set, task),
            self._label_map(task),
            self.train_transform,
            batch_size,
            shuffle=True,
            seed=seed,
            device=device,
            limit=limit,
            rank=rank,
            world_size=world_size,
            workers=workers,
            drop_last=True,
        )

    def test(
        self, task: int, batch_size: int = 500, seed: int = 0, device="cpu", limit=None, *, workers: int = 0
    ) -> SplitBatches:
        return SplitBatches(
            self.test_set,
            self._indices(self.test_set, task),
            self._label_map(task),
            self.test_transform,
            batch_size,
            shuffle=False,
            seed=seed,
            device=device,
            limit=limit,
            workers=workers,
        )


def _class_index(dataset) -> dict[int, list[int]]:
    """Sample indices of each class, from the data set's `targets` (torchvision's and ours)."""
    targets = np.asarray(dataset.targets)
    order = np.argsort(targets, kind="stable")
    classes, starts = np.unique(targets[order], return_index=True)
    bounds = list(starts[1:]) + [len(order)]
    return {int(c): order[s:e].tolist() for c, s, e in zip(classes, starts, bounds)}


def supsup_imagenet_order(num_classes: int = 1000, seed: int = 1) -> list[int]:
    """SupSup's SplitImageNet class order: numpy's legacy generator seeded with 1, one permutation."""
    return np.random.RandomState(seed).permutation(num_classes).tolist()


def contiguous_tasks(order: Sequence[int], num_tasks: int) -> list[list[int]]:
    """`num_tasks` tasks of `len(order) // num_tasks` classes: task t = order[tL:(t+1)L]."""
    per = len(order) // num_tasks
    if per < 1:
        raise ValueError(f"{len(order)} classes cannot make {num_tasks} tasks")
    return [list(order[t * per : (t + 1) * per]) for t in range(num_tasks)]


def split_cifar100(
    root: str | None = None,
    *,
    download: bool = False,
    synthetic: bool = False,
    num_tasks: int = 20,
    synthetic_train: int = 20,
    synthetic_test: int = 10,
    seed: int = 0,
) -> SplitStream:
    """SplitCIFAR-100: task t holds classes 5t..5t+4 (for 20 tasks), relabelled 0..4."""
    if synthetic:
        train = SyntheticImages(100, synthetic_train, 32, seed=seed, split="train")
        test = SyntheticImages(100, synthetic_test, 32, seed=seed, split="test")
        source = f"synthetic CIFAR-100 stand-in ({synthetic_train}+{synthetic_test} images per class, seed {seed})"
    else:
        if root is None:
            raise ValueError("split-cifar100 needs --data-root (a folder for torchvision's CIFAR100), or --synthetic")
        from torchvision.datasets import CIFAR100

        train = CIFAR100(root, train=True, download=download)
        test = CIFAR100(root, train=False, download=download)
        source = f"torchvision CIFAR100({root})"
    return SplitStream(
        "split-cifar100",
        train,
        test,
        contiguous_tasks(range(100), num_tasks),
        cifar_transform(True),
        cifar_transform(False),
        source,
    )


def split_imagenet(
    root: str | None = None,
    *,
    synthetic: bool = False,
    num_tasks: int = 100,
    image_size: int = 224,
    synthetic_train: int = 10,
    synthetic_test: int = 5,
    seed: int = 0,
) -> SplitStream:
    """SplitImageNet: ImageFolder classes in SupSup's shuffled order, `num_tasks` tasks of
    `classes // num_tasks` classes (100 tasks of 10 for the 1000 ImageNet classes)."""
    if synthetic:
        # Generated a little larger than the crop, as real photos are, so RandomResizedCrop and
        # Resize + CenterCrop do their usual work.
        src = round(image_size * 256 / 224)
        train = SyntheticImages(1000, synthetic_train, src, seed=seed, split="train")
        test = SyntheticImages(1000, synthetic_test, src, seed=seed, split="test")
        source = f"synthetic ImageNet stand-in ({synthetic_train}+{synthetic_test} images per class, seed {seed})"
        classes = 1000
    else:
        if root is None:
            raise ValueError("split-imagenet needs --data-root (a folder with train/ and val/ ImageFolder trees), or --synthetic")
        from torchvision.datasets import ImageFolder

        for part in ("train", "val"):
            if not (Path(root) / part).is_dir():
                raise FileNotFoundError(
                    f"{Path(root) / part} not found: split-imagenet reads ImageFolder trees "
                    "root/train/<class>/*.JPEG and root/val/<class>/*.JPEG"
                )
        train, test = ImageFolder(str(Path(root) / "train")), ImageFolder(str(Path(root) / "val"))
        if train.classes != test.classes:
            raise ValueError(f"{root}: train/ and val/ hold different class folders")
        source = f"ImageFolder({root}/train, {root}/val)"
        classes = len(train.classes)
    return SplitStream(
        "split-imagenet",
        train,
        test,
        contiguous_tasks(supsup_imagenet_order(classes), num_tasks),
        imagenet_transform(True, image_size),
        imagenet_transform(False, image_size),
        source,
    )
