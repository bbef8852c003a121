"""What every experiment runner shares: the results file, the log, data seeds, the storage record,
the incorrect-mask measurement and the machine description.

    RunnerBase      subclassed by `mnist.Runner` (PermutedMNIST, RotatedMNIST) and
                    `split.SplitRunner` (SplitCIFAR-100, SplitImageNet)
    machine_info    where a run ran (written into every results file)
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .. import __version__, ops
from ..continual import metrics
from ..files import atomic_write, remove_stale_temporaries
from ..seeding import derive_seed
from .config import ExperimentConfig
from .output import RunLock, check_out, existing_results

# Every benchmark `impresslearn run` takes; the split ones have a runner and options of their own.
MNIST_BENCHMARKS = ("permuted-mnist", "rotated-mnist", "split-mnist")  # split-mnist: --methods runs only
SPLIT_BENCHMARKS = {"split-cifar100": "SplitCIFAR-100", "split-imagenet": "SplitImageNet"}
BENCHMARKS = MNIST_BENCHMARKS + tuple(SPLIT_BENCHMARKS)


def machine_info(device: torch.device) -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "impresslearn": __version__,
        "device": str(device),
        "backend": ops.backend_for(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


class RunnerBase:
    """`self.results` is the run's record, rewritten to `self.out` (atomically) by `save()`.

    Subclasses set `cfg` (with `seed` and `verbose`), `out` (a Path or None) and `results`, and
    may override `writes` (only one process of several writes) and `before_save`."""

    cfg: object
    out: Path | None
    results: dict
    lock: RunLock | None = None

    def start_clock(self) -> None:
        self.t0 = time.time()

    def claim_output(self, out, cfg: ExperimentConfig, command: str | None, lock: bool = True) -> dict | None:
        """Before any work: check `out`, hold its lock for the run's life (`lock`: this process is
        the one that writes), and return the results already there if they are this run's (the
        same `cfg.record()` but for `cfg.RESUME_FREE`: to resume), None if there are none (or
        `cfg.restart`). Refusals are OutputError sentences."""
        self.out = check_out(out)
        if lock:
            self.lock = RunLock(self.out, command).acquire()
        try:
            return existing_results(self.out, cfg.record(), cfg.RESUME_FREE, cfg.restart)
        except BaseException:
            self.release_output()
            raise

    def remove_temporaries(self, run_folders: Sequence[Path] = ()) -> None:
        """Remove what saves killed mid-write left: temporaries of `--out` beside it, and any in the
        run's own folders (their writers gone; a live writer's file is never touched)."""
        if self.out is not None:
            remove_stale_temporaries(self.out.parent if str(self.out.parent) else Path("."), self.out.name)
        for folder in run_folders:
            remove_stale_temporaries(folder)

    def release_output(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @property
    def writes(self) -> bool:
        """Whether this process writes the results file and the log."""
        return True

    def before_save(self) -> None:
        """Last additions to the record before it is written (e.g. counters)."""

    def save(self) -> None:
        self.results["elapsed_s"] = round(time.time() - self.t0, 1)
        self.before_save()
        if self.out is None or not self.writes:
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.out, json.dumps(self.results, indent=1))

    def log(self, msg: str) -> None:
        if self.cfg.verbose and self.writes:
            print(f"[{time.time() - self.t0:7.1f}s] {msg}", file=sys.stderr, flush=True)

    def data_seed(self, kind, index) -> int:
        """The seed of one training data stream (its order and augmentation), from the run's seed."""
        return derive_seed(self.cfg.seed, f"data/{kind}/{index}") % (2**31)

    def measure_incorrect_masks(self, model: torch.nn.Module | None, tasks: Sequence[int], test_batches: Callable) -> None:
        """M[i][j]: task i's mask (model task i) on task j's test data, and the off-diagonal mean:
        near chance when masks are task-specific. Fewer than two tasks (or no model): nothing."""
        if model is None or len(tasks) < 2:
            self.results.update(incorrect_mask_matrix=None, incorrect_mask_acc=[], incorrect_mask_mean=None)
            return
        mat = metrics.incorrect_mask_matrix(model, list(tasks), test_batches)
        off = metrics.off_diagonal(mat)
        self.results.update(incorrect_mask_matrix=mat, incorrect_mask_acc=off, incorrect_mask_mean=sum(off) / len(off))
        self.log(f"incorrect mask: mean {sum(off) / len(off):.4f} over {len(off)} (mask, task) pairs")


def storage_record(packed: float, index16: float, imp, max_tasks: float, **extra) -> dict:
    """Bytes per task of SupSup (1-bit packed, and 16-bit indices as the papers count) and of
    ImpressLearn (`imp`: `continual.storage.impress_bytes`), and the compression ratios."""
    return {
        "supsup_packed": packed,
        "supsup_index16": index16,
        **extra,
        "impresslearn": imp.per_task,
        "impresslearn_alphas": imp.alphas,
        "impresslearn_basis_bytes": imp.basis_bytes,
        "impresslearn_basis_share": imp.basis_share,
        "max_tasks": None if math.isinf(max_tasks) else max_tasks,
        "compression_vs_packed": packed / imp.per_task,
        "compression_vs_index16": index16 / imp.per_task,
    }
