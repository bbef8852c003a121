"""Data streams for continual learning (docs/design.md §6, layer 5): MNIST tensors in memory,
PermutedMNIST, RotatedMNIST and SplitMNIST, the KSM adaptation tasks, and the real-MNIST subset that ships with the package."""

from .adapt import ADAPT_TASKS, AdaptationTasks
from .mnist import MNIST_MEAN, MNIST_STD, MnistArrays, load_mnist, load_subset, make_subset, save_subset
from .streams import Batches, PermutedMNIST, RotatedMNIST, SplitMNIST, TaskStream, rotate

__all__ = [
    "ADAPT_TASKS",
    "AdaptationTasks",
    "MNIST_MEAN",
    "MNIST_STD",
    "MnistArrays",
    "load_mnist",
    "load_subset",
    "make_subset",
    "save_subset",
    "Batches",
    "PermutedMNIST",
    "RotatedMNIST",
    "SplitMNIST",
    "TaskStream",
    "rotate",
]
