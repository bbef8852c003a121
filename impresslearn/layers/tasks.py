"""The task-state model every per-task module shares (docs/design.md §4.4), and whole-model task calls.

A task is *untrained* (it holds nothing), *trainable* (its float state — scores, alphas, real
parts — exists; the selected trainable task's lives in the layer's one slot Parameter, so an
optimizer made once over `model.parameters()` trains whichever task is selected, and nothing
else) or *finished* (`finish_task`: its mask kept as packed words, 1 bit per weight, plus its
small float parts, in buffers no optimizer sees; its forward reads the words through the ops and
is never re-selected from floats again).

    TaskAware          `.task`, `.num_tasks`, `set_task(task)` (an int or a mixture), `add_task()`,
                       `finish_task(task)`, `trainable_parameters(task)`
    BackboneLayer      a frozen weight (and bias) rebuilt from (init, seed, density)
    TaskStateLayer     the untrained -> trainable -> finished life of a backbone layer's tasks
    set_task / add_task / finish_task / task_parameters(model, ...)   the same for a whole model
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers

import torch
import torch.nn as nn
from torch import Tensor

from ..checks import check_task_range
from ..memory import check_allocation
from ..seeding import init_backbone

# --------------------------------------------------------------------------- task-aware bases


@dataclasses.dataclass(frozen=True)
class TaskRows:
    """A task for each sample: `task` (int64 `[B]`) gives the task of each row of dim 0 of the
    batch, so that one forward serves a batch mixed across tasks, or every task at once with the
    batch repeated (docs/design.md §2.6)."""

    task: Tensor

    def __post_init__(self):
        ids = self.task
        if ids.dtype != torch.int64 or ids.dim() != 1:
            raise ValueError(f"TaskRows.task must be int64 of shape [batch], got {ids.dtype} {tuple(ids.shape)}")

    @functools.cached_property
    def bounds(self) -> tuple[int, int] | None:
        """(lowest, highest) task id, None for an empty batch: read once, not by every module."""
        return (int(self.task.min()), int(self.task.max())) if self.task.numel() else None


@dataclasses.dataclass(frozen=True)
class SampleMixture:
    """The mixture `beta` (`[num_tasks]`) for every sample, and a per-sample `probe` (`[B,
    num_tasks]`, zeros, requiring grad): the forward is the mixture's, and the gradient that
    reaches `probe[i]` is sample i's own gradient with respect to beta (docs/design.md §2.6)."""

    beta: Tensor
    probe: Tensor


def check_num_tasks(num_tasks) -> int:
    """A module's task count: a whole number, at least 1."""
    if isinstance(num_tasks, bool) or not isinstance(num_tasks, numbers.Integral) or num_tasks < 1:
        raise ValueError(f"num_tasks must be a whole number of at least 1, got {num_tasks!r}")
    return int(num_tasks)


class TaskAware(nn.Module):
    """Shared task bookkeeping. Subclasses keep their per-task state and define `num_tasks`,
    `add_task()` and `_truncate_tasks(n)`; this class adds `task`, `mixture`, `set_task` and a
    `finish_task` that holds nothing (modules without trainable per-task floats)."""

    # Whether the module takes a task per sample (TaskRows) and per-sample mixtures (SampleMixture).
    PER_SAMPLE = False

    def _init_tasks(self) -> None:
        self.task = 0
        self.mixture: Tensor | None = None
        self.rows: Tensor | None = None  # TaskRows.task
        self.probe: Tensor | None = None  # SampleMixture.probe

    def set_task(self, task) -> None:
        self.rows = self.probe = None
        if isinstance(task, (TaskRows, SampleMixture)):
            if not self.PER_SAMPLE:
                raise NotImplementedError(
                    f"{type(self).__name__} takes one task (or one mixture) for the whole batch, not one per sample"
                )
            if isinstance(task, TaskRows):
                if task.bounds is not None:
                    check_task_range(*task.bounds, self.num_tasks)
                self.mixture, self.rows = None, task.task
                return
            if task.probe.dim() != 2 or task.probe.shape[1] != self.num_tasks:
                raise ValueError(f"a sample mixture's probe must be [batch, {self.num_tasks}], got {tuple(task.probe.shape)}")
            self.set_task(task.beta)
            self.probe = task.probe
            return
        if isinstance(task, Tensor):
            if task.dim() != 1 or task.shape[0] != self.num_tasks:
                raise ValueError(f"a task mixture must have shape [{self.num_tasks}], got {tuple(task.shape)}")
            self.mixture = task
            return
        if isinstance(task, bool) or not isinstance(task, numbers.Integral):
            raise TypeError(f"task must be an int or a mixture tensor, got {type(task).__name__}")
        if not 0 <= task < self.num_tasks:
            raise IndexError(f"task {task} out of range for {self.num_tasks} tasks")
        self.task = int(task)
        self.mixture = None
        self._selected(self.task)

    def _selected(self, task: int) -> None:
        """Called when `task` becomes the selected task (a hook for per-task state)."""

    def finish_task(self, task: int | None = None) -> None:
        """Make `task` (the selected one by default) finished; here there is nothing to keep."""

    def is_finished(self, task: int) -> bool:
        return True

    def trainable_parameters(self, task: int) -> list[nn.Parameter]:
        """The Parameters that train `task` once it is selected (none here)."""
        return []

    def set_num_tasks(self, n: int) -> None:
        """Grow (or shrink) the per-task state to `n` tasks (used when loading checkpoints)."""
        if n < 1:
            raise ValueError(f"a layer needs at least one task, got {n}")
        while self.num_tasks < n:
            self.add_task()
        self._truncate_tasks(n)
        self.set_task(min(self.task, n - 1))


class BackboneLayer(TaskAware):
    """A frozen weight (and optional frozen bias) rebuilt from (init, seed, density)."""

    def _init_backbone(
        self, shape, bias: bool, init: str, seed: int, scale_density: float | None, bias_size: int | None = None
    ) -> None:
        self.init = init
        self.seed = int(seed)
        self.scale_density = scale_density
        self.register_buffer("weight", init_backbone(shape, init=init, seed=seed, density=scale_density))
        self.register_buffer("bias", torch.zeros(shape[0] if bias_size is None else bias_size) if bias else None)

    def reset_backbone(self) -> None:
        """Rewrite the weight from its seed (biases back to zero); the checkpoint loader uses this."""
        if self.init == "keep":
            raise RuntimeError("this layer keeps weights it was given; they cannot be rebuilt from a seed")
        w = init_backbone(self.weight.shape, init=self.init, seed=self.seed, density=self.scale_density)
        self.weight.copy_(w)
        if self.bias is not None:
            self.bias.zero_()


class TaskStateLayer(BackboneLayer):
    """A backbone layer whose tasks go untrained -> trainable -> finished (docs/design.md §4.4).

    The selected trainable task's floats are the data of one Parameter, `self.<SLOT>`, which stays
    the same object for the layer's life; an unfinished task that is not selected keeps its floats
    in `_stash` (a plain tensor: no optimizer can reach it). Subclasses say how a task starts
    (`_fresh`), how its floats become finished buffers (`_finish`), how finished buffers become
    floats again (`_reopen`), and name their finished buffers, one row per task, in `TASK_BUFFERS`."""

    SLOT = "live"
    TASK_BUFFERS: tuple[str, ...] = ()

    def _init_task_state(self, num_tasks: int, dtype: torch.dtype) -> None:
        check_num_tasks(num_tasks)
        self._init_tasks()
        self.finished: list[bool] = []
        self.live_task: int | None = None
        self._stash: dict[int, Tensor] = {}
        setattr(self, self.SLOT, nn.Parameter(torch.empty(0, dtype=dtype, device=self.weight.device)))
        self._grow(num_tasks)
        self._selected(self.task)

    @property
    def slot(self) -> nn.Parameter:
        return getattr(self, self.SLOT)

    @property
    def num_tasks(self) -> int:
        return len(self.finished)

    def is_finished(self, task: int) -> bool:
        return self.finished[task]

    def trainable_parameters(self, task: int) -> list[nn.Parameter]:
        return [] if self.finished[task] else [self.slot]

    def _check_task(self, task: int) -> int:
        if isinstance(task, bool) or not isinstance(task, numbers.Integral) or not 0 <= task < self.num_tasks:
            raise IndexError(f"task {task!r} out of range for {self.num_tasks} tasks")
        return int(task)

    def _selected(self, task: int) -> None:
        if self.finished[task] or self.live_task == task:
            return  # a finished task reads its buffers; a live one stays live
        slot = self.slot
        with torch.no_grad():
            if self.live_task is not None:
                self._stash[self.live_task] = slot.data
            slot.data = self._stash.pop(task) if task in self._stash else self._fresh(task)
        slot.grad = None  # a stale gradient of another task is never applied to this one
        self.live_task = task

    def task_floats(self, task: int) -> Tensor:
        """The float state of an unfinished `task`: the slot Parameter while it is the live task,
        else its stashed tensor (made from its seed if the task was never trained)."""
        task = self._check_task(task)
        if self.finished[task]:
            raise RuntimeError(
                f"task {task} is finished: it is kept as packed bits, its floats are gone "
                f"(reopen_task({task}) makes trainable floats from its mask)"
            )
        if task == self.live_task:
            return self.slot
        if task not in self._stash:
            self._stash[task] = self._fresh(task)
        return self._stash[task]

    @torch.no_grad()
    def finish_task(self, task: int | None = None) -> None:
        """Keep `task` (the selected one by default) as its finished buffers and drop its floats."""
        task = self.task if task is None else self._check_task(task)
        if self.finished[task]:
            return
        self._finish(task, self.task_floats(task).detach())
        self._drop_floats(task)
        self.finished[task] = True

    def _drop_floats(self, task: int) -> None:
        if task == self.live_task:
            self.slot.data = self.slot.data.new_empty(0)
            self.slot.grad = None
            self.live_task = None
        self._stash.pop(task, None)

    @torch.no_grad()
    def load_floats(self, task: int, floats: Tensor) -> None:
        """Make `task` trainable with `floats` (its scores, alpha or R; the checkpoint loader's)."""
        task = self._check_task(task)
        floats = floats.to(self.slot.device, self.slot.dtype).clone()
        self.finished[task] = False
        if task == self.live_task:
            self.slot.data = floats
            self.slot.grad = None
        else:
            self._stash[task] = floats
        self._reselect(task)

    def untrain(self, task: int) -> None:
        """Make `task` untrained: it holds nothing until it is selected (its floats then start
        from its seed)."""
        task = self._check_task(task)
        self._drop_floats(task)
        self.finished[task] = False
        self._reselect(task)

    def open_tasks(self) -> list[int]:
        """The unfinished tasks that hold floats (the live one and the stashed ones), in order."""
        return sorted(t for t in range(self.num_tasks) if not self.finished[t] and (t == self.live_task or t in self._stash))

    @torch.no_grad()
    def finished_floats(self, task: int) -> Tensor:
        """Floats that give finished `task`'s state back (what `reopen_task` trains from)."""
        task = self._check_task(task)
        if not self.finished[task]:
            raise RuntimeError(f"task {task} is not finished")
        return self._reopen(task)

    @torch.no_grad()
    def reopen_task(self, task: int) -> None:
        """Make a finished `task` trainable again, from floats that give its finished state back."""
        task = self._check_task(task)
        if not self.finished[task]:
            return
        self._stash[task] = self._reopen(task)
        self.finished[task] = False
        self._reselect(task)

    def _grow(self, n: int) -> int:
        """Hold `n` tasks, the new ones untrained: each per-task buffer resized once (adding tasks
        one at a time would copy the buffers once per task). Returns the first new task's index."""
        first = self.num_tasks
        self._resize_buffers(n)
        self.finished.extend([False] * (n - first))
        return first

    def set_num_tasks(self, n: int) -> None:
        if n > self.num_tasks:
            self._grow(n)
        super().set_num_tasks(n)

    def _truncate_tasks(self, n: int) -> None:
        for t in range(n, self.num_tasks):
            self._drop_floats(t)
        del self.finished[n:]
        self._resize_buffers(n)

    def _apply(self, fn, recurse=True):
        # `.to()`, `.cuda()`, `.double()` move the stash with the slot and the buffers
        out = super()._apply(fn, recurse)
        self._stash = {t: fn(v) for t, v in self._stash.items()}
        return out

    def _unfinished_in_mixture(self) -> None:
        open_tasks = [t for t, done in enumerate(self.finished) if not done]
        if open_tasks:
            raise RuntimeError(
                f"a task mixture reads finished tasks only; tasks {open_tasks} are not finished "
                "(finish_task(model, t) after training each)"
            )

    def _resize_buffers(self, n: int) -> None:
        """Keep the first `n` rows of every per-task buffer, or add zero rows up to `n` (refused
        in a sentence first when those rows could never fit in memory)."""
        rows = 0
        for name in self.TASK_BUFFERS:
            old = getattr(self, name)
            rows += max(0, n - old.shape[0]) * math.prod(old.shape[1:]) * old.element_size()
        check_allocation(rows, f"{n} tasks of a {type(self).__name__} of weight {tuple(self.weight.shape)}")
        for name in self.TASK_BUFFERS:
            old = getattr(self, name)
            if old.shape[0] > n:
                setattr(self, name, old[:n].clone())
            elif old.shape[0] < n:
                setattr(self, name, torch.cat([old, old.new_zeros((n - old.shape[0], *old.shape[1:]))]))

    def _reselect(self, task: int) -> None:
        """After `task`'s state changed: make it live again if it is the selected one."""
        if task == self.task and self.mixture is None:
            self._selected(task)


# --------------------------------------------------------------------------- whole models


def task_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every task-aware module in `model` (a module used twice: its first name)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, TaskAware)]


def _found(model: nn.Module) -> list[tuple[str, nn.Module]]:
    found = task_modules(model)
    if not found:
        raise ValueError("the model has no task-aware modules; convert it first")
    return found


def set_task(model: nn.Module, task) -> None:
    """Select `task` (an int), a mixture (a tensor `[num_tasks]`), a task per sample (`TaskRows`)
    or a per-sample mixture (`SampleMixture`) in every task-aware module; a model that cannot take
    a task per sample says which of its modules cannot, and is left as it was."""
    found = _found(model)
    if isinstance(task, (TaskRows, SampleMixture)):
        refused = per_sample_refusals(model)
        if refused:
            raise NotImplementedError(
                f"this model cannot take a task per sample: {', '.join(refused)} take one task per batch "
                "(infer per batch instead, one forward per task)"
            )
    for _, m in found:
        m.set_task(task)


def per_sample_refusals(model: nn.Module) -> list[str]:
    """The kinds of task-aware module in `model` that take one task per batch, not one per sample."""
    return sorted({type(m).__name__ for _, m in _found(model) if not m.PER_SAMPLE})


def per_sample_supported(model: nn.Module) -> bool:
    """Whether every task-aware module of `model` takes a task per sample (TaskRows, SampleMixture)."""
    return not per_sample_refusals(model)


def add_task(model: nn.Module) -> int:
    """Add a task to every task-aware module; returns the new task's index."""
    found = _found(model)
    counts = {m.num_tasks for _, m in found}
    if len(counts) != 1:
        raise RuntimeError(f"task-aware modules disagree on the number of tasks: {sorted(counts)}")
    return [m.add_task() for _, m in found][0]


def finish_task(model: nn.Module, task: int | None = None) -> None:
    """Finish `task` (the selected one by default) in every task-aware module: its masks kept as
    packed words and its small float parts as buffers, its floats dropped (docs/design.md §4.4).
    From then on no optimizer can change what the task computes."""
    for _, m in _found(model):
        m.finish_task(task)


def task_parameters(model: nn.Module, task: int) -> list[nn.Parameter]:
    """Select `task` and return the Parameters that train it: every layer's slot, every head of
    the task. A finished task has none (reopen it first)."""
    set_task(model, task)
    return [p for _, m in task_modules(model) for p in m.trainable_parameters(task)]


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
