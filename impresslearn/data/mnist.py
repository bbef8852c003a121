"""MNIST as in-memory tensors: the full set through torchvision, or the subset shipped here.

    load_mnist(root, download=False)   torchvision `MNIST(root)`; elsewhere pass download=True
    load_subset()                      the real MNIST subset inside the package (offline)
    make_subset(full, ...)             a class-balanced subset (how the shipped file was made)
    save_subset(arrays, path)          write one as a compressed .npz

Images stay uint8 `[N, 28, 28]` here; the streams scale and normalise per batch.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

import numpy as np
import torch

# SupSup's (and torchvision's usual) MNIST normalisation.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

SUBSET_FILE = "mnist_subset.npz"


@dataclasses.dataclass
class MnistArrays:
    """Train and test images (uint8 `[N, 28, 28]`) and labels (int64 `[N]`)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str = ""

    def __post_init__(self):
        for name in ("train", "test"):
            x, y = getattr(self, f"{name}_x"), getattr(self, f"{name}_y")
            if x.dtype != torch.uint8 or x.dim() != 3 or x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"{name}: expected uint8 images [N, H, W] and N labels, got {x.dtype} {tuple(x.shape)} and {tuple(y.shape)}"
                )

    def holdout(self, n: int) -> MnistArrays:
        """The last `n` training images become the test set (a validation split for tuning)."""
        if not 0 < n < self.train_x.shape[0]:
            raise ValueError(f"a validation split needs 0 < n < {self.train_x.shape[0]}, got {n}")
        return MnistArrays(
            self.train_x[:-n],
            self.train_y[:-n],
            self.train_x[-n:],
            self.train_y[-n:],
            source=f"{self.source} (last {n} training images as validation)",
        )


def load_mnist(root: str | Path, download: bool = False) -> MnistArrays:
    """The full MNIST set from torchvision's layout under `root` (`root/MNIST/raw/...`)."""
    from torchvision.datasets import MNIST

    try:
        train = MNIST(str(root), train=True, download=download)
        test = MNIST(str(root), train=False, download=download)
    except RuntimeError as err:  # torchvision's "Dataset not found"
        raise FileNotFoundError(
            f"MNIST not found under {root}: {err} (pass download=True, or `--download` on the command line, to fetch it)"
        ) from err
    return MnistArrays(
        train.data.clone(),
        train.targets.clone().long(),
        test.data.clone(),
        test.targets.clone().long(),
        source=f"MNIST at {root}",
    )


def load_subset(path: str | Path | None = None) -> MnistArrays:
    """The real-MNIST subset that ships with the package (or another file written by `save_subset`)."""
    if path is None:
        with resources.as_file(resources.files("impresslearn.data") / SUBSET_FILE) as p:
            return load_subset(p)
    with np.load(path) as z:
        arrays = {k: torch.from_numpy(z[k].copy()) for k in ("train_x", "train_y", "test_x", "test_y")}
    return MnistArrays(
        arrays["train_x"],
        arrays["train_y"].long(),
        arrays["test_x"],
        arrays["test_y"].long(),
        source=f"MNIST subset {Path(path).name}",
    )


def _balanced(y: torch.Tensor, per_class: int, gen: torch.Generator) -> torch.Tensor:
    picks = []
    for c in range(10):
        idx = (y == c).nonzero().flatten()
        if idx.numel() < per_class:
            raise ValueError(f"class {c} has only {idx.numel()} images, fewer than {per_class}")
        picks.append(idx[torch.randperm(idx.numel(), generator=gen)[:per_class]])
    order = torch.cat(picks)
    return order[torch.randperm(order.numel(), generator=gen)]


def make_subset(full: MnistArrays, train_per_class: int = 600, test_per_class: int = 100, seed: int = 0) -> MnistArrays:
    """A class-balanced random subset of `full` (the shipped file: 600 + 100 per class, seed 0)."""
    gen = torch.Generator().manual_seed(seed)
    tr = _balanced(full.train_y, train_per_class, gen)
    te = _balanced(full.test_y, test_per_class, gen)
    return MnistArrays(full.train_x[tr], full.train_y[tr], full.test_x[te], full.test_y[te], source=f"subset of {full.source}")


def save_subset(arrays: MnistArrays, path: str | Path) -> None:
    np.savez_compressed(
        path,
        train_x=arrays.train_x.numpy(),
        train_y=arrays.train_y.numpy().astype(np.uint8),
        test_x=arrays.test_x.numpy(),
        test_y=arrays.test_y.numpy().astype(np.uint8),
    )
