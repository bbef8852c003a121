"""Experiments (layer 6): the runners behind `impresslearn mnist`, `compare`, `split`, `adapt` and `quickstart`, over one base.

mnist.Runner, RunConfig          PermutedMNIST, RotatedMNIST and SplitMNIST, one process
methods.run_methods              the --methods comparison (SupSup, SSNeT, ExSSNeT, ExSSNeT+KKT)
split.SplitRunner, SplitConfig   SplitCIFAR-100 and SplitImageNet, one process or many, resumable
adapt.AdaptRunner, AdaptConfig   the KSM experiment: a pretrained conv net adapted by each method
base.RunnerBase                  what they share: results file, log, data seeds, storage, incorrect masks
quickstart, plots, tables        the demo, the figures and the report tables of results files
"""

from .adapt import AdaptConfig, AdaptRunner, run_adapt
from .base import BENCHMARKS, MNIST_BENCHMARKS, SPLIT_BENCHMARKS, RunnerBase, machine_info
from .mnist import ALPHA_PRESETS, RunConfig, Runner, run_experiment
from .split import PAPER_SETTINGS, SplitConfig, SplitRunner, run_split

__all__ = [
    "ALPHA_PRESETS",
    "AdaptConfig",
    "AdaptRunner",
    "BENCHMARKS",
    "MNIST_BENCHMARKS",
    "PAPER_SETTINGS",
    "SPLIT_BENCHMARKS",
    "RunConfig",
    "Runner",
    "RunnerBase",
    "SplitConfig",
    "SplitRunner",
    "machine_info",
    "run_adapt",
    "run_experiment",
    "run_split",
]
