"""How many CPU threads a run uses when nobody says (docs/design.md §8).

A small model's step is a few milliseconds of work cut into pieces too small to share: with
torch's default (one thread per core) the threads wait on each other, and on a machine busy with
other work they wait on the other work too. Measured (bench/bench_threads.py, results in
bench/results/threads-cpu-*.json): a LeNet-300-100 mask step on a busy 2-core machine takes
84 ms on one thread and 1,258 ms on two. So runs of models under
`SMALL_MODEL_WEIGHTS` masked weights use one thread; larger ones keep torch's default. An
explicit `--threads`, or `OMP_NUM_THREADS` / `MKL_NUM_THREADS` in the environment, always wins.

    usable_cpus()              the CPUs this process may run on
    default_threads(weights)   the rule: a ThreadChoice (threads, reason)
    choose(weights, explicit)  what a run uses, explicit choices first; apply() sets it in torch
"""

from __future__ import annotations

import dataclasses
import os

import torch

SMALL_MODEL_WEIGHTS = 2_000_000
ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclasses.dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(weights: int, cpus: int | None = None) -> ThreadChoice:
    """One thread for a model under SMALL_MODEL_WEIGHTS weights, else one per usable CPU."""
    cpus = cpus or usable_cpus()
    if weights < SMALL_MODEL_WEIGHTS:
        return ThreadChoice(1, f"{weights:,} weights < {SMALL_MODEL_WEIGHTS:,}: one thread is faster for a model this small")
    return ThreadChoice(cpus, f"{weights:,} weights: torch's default, one thread per usable CPU ({cpus})")


def choose(weights: int, explicit: int | None = None) -> ThreadChoice:
    if explicit:
        return ThreadChoice(explicit, "--threads")
    for var in ENV_VARS:
        if os.environ.get(var):
            return ThreadChoice(torch.get_num_threads(), f"{var}={os.environ[var]} in the environment")
    return default_threads(weights)


def apply(weights: int, explicit: int | None = None) -> ThreadChoice:
    """Choose and set torch's intra-op threads; returns the choice (runs record and log it)."""
    c = choose(weights, explicit)
    torch.set_num_threads(c.threads)
    return c
