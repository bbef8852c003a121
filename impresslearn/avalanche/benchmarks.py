"""Avalanche's own MNIST benchmarks, task-incremental, read from local files, optionally smaller.

`PermutedMNIST` and `SplitMNIST` (avalanche.benchmarks.classic) read torchvision's layout,
`dataset_root/MNIST/raw/*-ubyte`, and only download when those files are missing: the files are
checked here first, so a machine without internet gets one sentence instead of a failed
download. `train_per_exp` / `test_per_exp` keep that many samples of each experience, drawn at
random from a seed (an experience's samples are stored grouped by class, so the first ones would
be one class), with Avalanche's `AvalancheDataset.subset`, for runs sized to a small machine; the
stream is then rebuilt with Avalanche's `benchmark_from_datasets`, its task labels and classes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from avalanche.benchmarks.classic import PermutedMNIST, SplitMNIST
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.scenarios.supervised import with_classes_timeline
from avalanche.benchmarks.scenarios.task_aware import with_task_labels

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def check_mnist(root: str | Path) -> Path:
    """`root` if it holds MNIST in torchvision's layout, else one sentence saying what is missing."""
    raw = Path(root) / "MNIST" / "raw"
    missing = [f for f in MNIST_FILES if not (raw / f).exists()]
    if missing:
        raise FileNotFoundError(
            f"MNIST is not under {root}: {raw} lacks {', '.join(missing)} "
            "(torchvision's layout; Avalanche would try to download it)"
        )
    return Path(root)


def permuted_mnist(
    n_experiences: int,
    dataset_root: str | Path,
    *,
    seed: int = 0,
    train_per_exp: int | None = None,
    test_per_exp: int | None = None,
):
    """Avalanche's PermutedMNIST with a task label per experience (task-incremental)."""
    bm = PermutedMNIST(n_experiences, return_task_id=True, seed=seed, dataset_root=str(check_mnist(dataset_root)))
    return shrink(bm, train_per_exp, test_per_exp, seed=seed)


def split_mnist(
    n_experiences: int,
    dataset_root: str | Path,
    *,
    seed: int = 0,
    train_per_exp: int | None = None,
    test_per_exp: int | None = None,
):
    """Avalanche's SplitMNIST, task-incremental: a task label per experience, the original class
    ids (one 10-way head; each task's mask decides which of its outputs it uses)."""
    bm = SplitMNIST(n_experiences, return_task_id=True, seed=seed, dataset_root=str(check_mnist(dataset_root)))
    return shrink(bm, train_per_exp, test_per_exp, seed=seed)


def shrink(bm, train_per_exp: int | None, test_per_exp: int | None, *, seed: int = 0):
    """The same stream with `train_per_exp` / `test_per_exp` samples of each experience, drawn
    without replacement from `seed` (all when None); `bm` itself when nothing is cut."""
    for name, n in (("train_per_exp", train_per_exp), ("test_per_exp", test_per_exp)):
        if n is not None and n < 1:
            raise ValueError(f"{name} must be at least 1, got {n}")
    if train_per_exp is None and test_per_exp is None:
        return bm

    gen = torch.Generator().manual_seed(seed)

    def cut(stream, n):
        return [
            e.dataset if n is None else e.dataset.subset(torch.randperm(len(e.dataset), generator=gen)[:n].tolist())
            for e in stream
        ]

    small = benchmark_from_datasets(train=cut(bm.train_stream, train_per_exp), test=cut(bm.test_stream, test_per_exp))
    return with_classes_timeline(with_task_labels(small))
