"""`MaskModule`: any `convert()`ed model as an Avalanche `MultiTaskModule`.

Each Avalanche task label gets one task of the library's model (its scores, or its alphas),
allocated in `adaptation` when a training experience brings a label not seen before;
`forward_single_task` selects it with `set_task`. With `task_labels=None` (or `infer_tasks=True`
at evaluation) the task is inferred by the library's task inference (docs/design.md §2.6):
exhaustive over every task (exact, the default) or one-shot / binary from the gradient of the
output entropy with respect to a superposition of the tasks, per batch or per sample.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
from avalanche.models import MultiTaskModule
from torch import Tensor

from ..continual.alpha import alpha_params
from ..continual.inference import infer_sample_tasks, infer_task, num_tasks, rows_forward
from ..continual.masks import task_scores
from ..layers import add_task, finish_task, impress_layers, set_task, supermask_layers, task_modules
from ..layers import impress_over as superposition

METHODS = ("exhaustive", "oneshot", "binary")


@dataclasses.dataclass
class TaskInference:
    """How a batch without task labels finds its task. `objective`: "H" (entropy) or "G" (SupSup's
    superfluous outputs: needs a model with more outputs than `classes`); `method`: "exhaustive"
    (every task's score, exact), "oneshot" or "binary" (gradients); `per_sample`: a task for
    each sample (batches that mix tasks; "binary" has no per-sample form)."""

    objective: str = "H"
    method: str = "exhaustive"
    per_sample: bool = False
    classes: int = 10

    def __post_init__(self):
        if self.objective not in ("H", "G"):
            raise ValueError(f"objective must be 'H' or 'G', got {self.objective!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.per_sample and self.method == "binary":
            raise ValueError("binary search halves one candidate set per batch: use per_sample=False or another method")


class MaskModule(MultiTaskModule):
    """A converted model whose tasks are Avalanche's task labels.

    net: a model with task-aware layers (`convert(model, "supermask" | "impress", ...)`).
    inference: how `task_labels=None` finds the task (`TaskInference`).
    infer_tasks: at evaluation, ignore the given task labels and infer them (the GN scenario).
    """

    def __init__(self, net: nn.Module, inference: TaskInference | None = None, infer_tasks: bool = False):
        super().__init__()
        if not task_modules(net):
            raise ValueError("the model has no task-aware layers: convert() it first")
        self.net = net
        self.inference = inference or TaskInference()
        self.infer_tasks = bool(infer_tasks)
        self.task_of: dict[int, int] = {}  # Avalanche task label -> task of the model
        self.frozen: set[int] = set()  # tasks of the model that are learnt and frozen
        # what task inference builds from the tasks, dropped whenever a task changes (a plain
        # dict, so that the superposition model is not registered as a submodule)
        self._cache: dict[str, object] = {}

    # ------------------------------------------------------------------ tasks

    @property
    def num_tasks(self) -> int:
        return num_tasks(self.net)

    def adaptation(self, experience) -> None:
        """A new task for every task label this training experience brings for the first time."""
        super().adaptation(experience)
        if not self.training:
            return
        for label in sorted(set(experience.task_labels)):
            if label not in self.task_of:
                # convert() makes the first task(s); only labels beyond them add one
                task = len(self.task_of)
                if task >= self.num_tasks:
                    add_task(self.net)
                self.task_of[label] = task
        self.changed()

    def task(self, label: int) -> int:
        """The model's task of an Avalanche task label."""
        if label not in self.task_of:
            raise KeyError(f"task label {label} has not been trained; known: {sorted(self.task_of)}")
        return self.task_of[label]

    def task_parameters(self, task: int) -> list[Tensor]:
        """What task `task` learns: its alphas (and a hybrid model's last-layer scores) in an
        ImpressLearn model, its scores in a SupSup one."""
        return alpha_params(self.net, task) if impress_layers(self.net) else task_scores(self.net, task)

    def train_only(self, params: list[Tensor]) -> None:
        """Let only `params` receive gradients: every other score and alpha is left untouched."""
        keep = {id(p) for p in params}
        for p in self.net.parameters():
            p.requires_grad_(id(p) in keep)

    def freeze(self, task: int) -> None:
        """Freeze task `task`: no later experience changes its scores or alphas."""
        finish_task(self.net, task)
        self.frozen.add(task)
        self.changed()

    def replace_net(self, net: nn.Module) -> None:
        """Swap the model for one holding the same tasks (the ImpressLearn strategy's switch from
        SupSup masks to a basis of them)."""
        if not task_modules(net):
            raise ValueError("the model has no task-aware layers: convert() it first")
        self.net = net
        self.changed()

    def changed(self) -> None:
        """Drop what task inference built from the tasks (they changed, or a task trains)."""
        self._cache.clear()

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tensor, task_labels) -> Tensor:
        if task_labels is None or (self.infer_tasks and not self.training):
            return self.forward_inferred(x)
        if isinstance(task_labels, int):
            return self.forward_single_task(x, task_labels)
        labels = torch.as_tensor(task_labels)
        unique = torch.unique(labels)
        if unique.numel() == 1:
            return self.forward_single_task(x, int(unique[0]))
        if not self.training and all(label in self.task_of for label in unique.tolist()):
            # a batch mixed across known tasks: one forward with a task per sample (design.md §2.6)
            tasks = torch.tensor([self.task_of[label] for label in labels.tolist()], device=x.device)
            return rows_forward(self.net, x, tasks)
        out = None
        for label in unique.tolist():
            pick = labels.to(x.device) == label
            y = self.forward_single_task(x[pick], label)
            if out is None:
                out = y.new_zeros((x.shape[0], *y.shape[1:]))
            out[pick] = y
        return out

    def forward_single_task(self, x: Tensor, task_label: int) -> Tensor:
        if self.training:
            self.changed()  # a task's parameters move: anything built from them is stale
            set_task(self.net, self.task(task_label))
            return self.net(x)
        if task_label not in self.task_of:
            # evaluated before it is trained (Avalanche evaluates the whole test stream): no
            # mask exists for it yet, so its outputs are all zero (chance accuracy)
            return self._zeros(x)
        set_task(self.net, self.task_of[task_label])
        return self.net(x)

    @torch.no_grad()
    def _zeros(self, x: Tensor) -> Tensor:
        set_task(self.net, 0)
        return torch.zeros_like(self.net(x[:1])).expand(x.shape[0], -1).clone()

    def infer(self, x: Tensor) -> Tensor:
        """The inferred task of the model for each sample of `x` (one for the whole batch unless
        `inference.per_sample`)."""
        if not self.task_of:
            raise RuntimeError("no task has been trained: there is nothing to infer")
        inf = self.inference
        if inf.per_sample:
            return infer_sample_tasks(self.net, x, inf.objective, method=inf.method, classes=inf.classes)
        if inf.method == "exhaustive":
            t = infer_task(self.net, x, inf.objective, method="exhaustive", classes=inf.classes)
        else:
            t = infer_task(self.mixable(), x, inf.objective, method=inf.method, classes=inf.classes)
        return torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)

    def forward_inferred(self, x: Tensor) -> Tensor:
        return rows_forward(self.net, x, self.infer(x))

    def mixable(self) -> nn.Module:
        """The model, or for SupSup masks their superposition model, on which a mixture of tasks
        is one combine (one-shot and binary inference)."""
        if "mixable" not in self._cache:
            self._cache["mixable"] = superposition(self.net) if supermask_layers(self.net) else self.net
        return self._cache["mixable"]
