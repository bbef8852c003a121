"""The one interface of a continual method (docs/design.md §4.8): `Learner`, and `Phase`, a part of
learning one task.

A learner owns one converted model and learns its tasks one after another. A task is a slot of
the model (`set_task(model, t)`); learning it is:

    info = learner.begin(task, batches)     anything before training (KKT picks a start)
    for phase in learner.phases(task):      one or more phases, each: these tensors, these settings
        phase.start(); train ...; phase.stop()
    learner.finish(task)                    the task reduced to what is stored, frozen for good

`Learner.learn` drives exactly that with the library's loop (`continual.training.fit`); the MNIST,
ExSSNeT and KSM runners call it, the Avalanche adapter runs the same phases in Avalanche's loop,
and a user's own loop can run them by hand (docs/contributing.md has both). What a finished task
costs is `task_bytes(task)`, how it is saved is `save(path)`, and task inference runs over
`inference_model()`.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar

import torch.nn as nn
from torch import Tensor

from ..checkpoint import save_checkpoint
from ..continual.training import TrainConfig, fit
from ..layers import TaskBatchNorm, finish_task, impress_over, set_task, supermask_layers


@dataclasses.dataclass
class Phase:
    """Part of learning a task: train `params` (tensors, or optimizer parameter groups, dicts with
    "params" and their own "lr") with `config`. `start()` runs when the phase begins and `stop()`
    when it ends, also on an error (e.g. a weight phase's gradient hooks put on and taken off);
    `penalty()` is added to the loss; `after_step(step)` runs after every optimizer step (e.g. an
    annealed temperature)."""

    name: str
    params: list
    config: TrainConfig
    start: Callable[[], None] | None = None
    stop: Callable[[], None] | None = None
    penalty: Callable[[], Tensor] | None = None
    after_step: Callable[[int], None] | None = None

    def tensors(self) -> list[Tensor]:
        """The tensors this phase trains (the groups' flattened)."""
        out: list[Tensor] = []
        for p in self.params:
            out.extend(p["params"] if isinstance(p, dict) else [p])
        return out


class Learner(abc.ABC):
    """A continual method over `model`. Subclasses set `name` and give `first_config`, `phases`
    and `task_bytes`; the rest has defaults that suit a method whose task is its own masks or
    alphas.

    trains_backbone: whether a phase changes the frozen backbone (then `save` keeps the weights
    beside the seed, and `inference_model` must be built from the trained weights)."""

    name: ClassVar[str] = ""
    trains_backbone: ClassVar[bool] = False

    def __init__(self, model: nn.Module):
        self.model = model

    # ---- what a method defines

    @abc.abstractmethod
    def first_config(self) -> TrainConfig:
        """The settings of a task's first phase, known before the task exists (a loop that loads
        batches before it asks for the phases, Avalanche's, reads the batch size here)."""

    def begin(self, task: int, batches: Iterable) -> dict:
        """Before the phases of `task`: returns what to record (nothing by default)."""
        return {}

    @abc.abstractmethod
    def phases(self, task: int) -> list[Phase]:
        """What a task trains, in order."""

    def finish(self, task: int) -> dict:
        """Reduce `task` to what is stored (docs/design.md §4.4); returns what to record."""
        finish_task(self.model, task)
        return {}

    @abc.abstractmethod
    def task_bytes(self, task: int) -> dict:
        """What storing `task` costs: `total` bytes in the compute format and its parts, and where
        the method has a smaller exact form for cold storage, `smallest` (docs/design.md §2.8)."""

    def shared_bytes(self) -> int:
        """What every task shares and is stored once (an ImpressLearn basis); 0 by default."""
        return 0

    def inference_model(self) -> nn.Module:
        """A model over the finished tasks that takes a task mixture in every layer, for task
        inference (docs/design.md §2.6): SupSup's superposition of masks by default."""
        if self.trains_backbone:
            raise ValueError(
                f"{self.name} trains the backbone's weights: a superposition of its masks would not compute its tasks"
            )
        return impress_over(self.model) if supermask_layers(self.model) else self.model

    def save(self, path: str | Path, metadata: dict | None = None) -> None:
        """Every task of the model in a checkpoint (`impresslearn.load_checkpoint` reads it)."""
        save_checkpoint(
            path, self.model, include_trained=self.trains_backbone, metadata={"method": self.name, **(metadata or {})}
        )

    # ---- the driver

    def learn(
        self,
        task: int,
        batches: Iterable,
        *,
        begin_batches: Iterable | None = None,
        probe: Callable[[int], None] | None = None,
        progress: bool | None = None,
        desc: str | None = None,
        finish: bool = True,
    ) -> dict:
        """Learn `task` on `batches` with the library's loop: `begin` (on `begin_batches`, default
        `batches`), every phase, then (with `finish`) `finish`. `probe(step)` runs after every step
        of the first phase (e.g. accuracy early in training). Returns each phase's record under its
        name, what `begin` and `finish` recorded, and the seconds taken."""
        start = time.time()
        info: dict = {"task": task, **self.begin(task, batches if begin_batches is None else begin_batches)}
        label = desc or f"{self.name} {task}"
        for i, phase in enumerate(self.phases(task)):
            info[f"{phase.name}_phase"] = run_phase(
                self.model, task, phase, batches, desc=f"{label} {phase.name}", progress=progress, probe=probe if i == 0 else None
            )
        if finish:
            info.update(self.finish(task))
        info["seconds"] = round(time.time() - start, 2)
        return info


def variants(learner: type[Learner], config: type, names) -> dict[str, Callable]:
    """`LEARNERS` entries of a learner whose config names the method (`config.method`): one
    factory per name, making that name's default settings and refusing another name's."""

    def make_for(name: str) -> Callable:
        def make(model: nn.Module, cfg=None) -> Learner:
            cfg = cfg or config(method=name)
            if cfg.method != name:
                raise ValueError(f"{name} was given the settings of {cfg.method}")
            return learner(model, cfg)

        return make

    return {name: make_for(name) for name in names}


def state_bytes(model: nn.Module) -> int:
    """The per-task float state a task keeps besides its masks or alphas: non-affine BatchNorm
    statistics (running mean and variance, fp32) of every `TaskBatchNorm`."""
    return sum(2 * 4 * m.num_features for m in model.modules() if isinstance(m, TaskBatchNorm))


def run_phase(
    model: nn.Module,
    task: int,
    phase: Phase,
    batches: Iterable,
    *,
    desc: str,
    progress: bool | None = None,
    probe: Callable[[int], None] | None = None,
) -> dict:
    """One phase with `fit`: `start`, training with the phase's penalty and step hook (and `probe`),
    `stop` on every way out."""
    set_task(model, task)
    steps = [f for f in (phase.after_step, probe) if f is not None]
    after = (lambda s: [f(s) for f in steps]) if steps else None
    if phase.start is not None:
        phase.start()
    try:
        return fit(
            model, phase.params, batches, phase.config, penalty=phase.penalty, desc=desc, progress=progress, after_step=after
        )
    finally:
        if phase.stop is not None:
            phase.stop()


__all__ = ["Learner", "Phase", "run_phase", "state_bytes", "variants"]
