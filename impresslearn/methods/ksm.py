"""KSM and its baselines: adapting one pretrained network to new tasks (docs/design.md §2.10).

METHODS                         finetune (all weights and a new head per task: the upper
                                bound, which forgets), head (a new head only), piggyback
                                (element-wise binary masks on the pretrained weights,
                                thresholded real scores with a straight-through gradient),
                                kernel_binary (a kernel-wise binary mask), ksm (kernel-wise
                                binary + scaled real mask, softmax relaxation)
build_model(method, net, n)     a copy of the pretrained `net` ready for `n` tasks; task 0 is
                                the pretrained network itself (its head, every mask all ones)
trainable(model, method, t)     the optimizer's parameter groups for task t
only_these_need_grad(model, g)  requires_grad on those groups' parameters only
finish_task(model, method, t)   after training t: keep only what is stored (packed bits, the
                                real part) so that evaluation uses exactly that
bytes_per_task(model, method)   what one more task costs, with its breakdown
KsmConfig, KSM                  the method's settings and its `Learner` (methods/learner.py)
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import torch
import torch.nn as nn

from .. import ops
from ..choices import Choice
from ..coding import task_forms
from ..continual.training import TrainConfig
from ..kernel_masks import KernelMaskConfig, convert_kernelwise, kernel_mask_layers
from ..layers import TaskHeads, convert, set_submodule, set_task, supermask_layers
from ..layers import finish_task as finish_all
from .learner import Learner, Phase, variants
from .supsup import mask_forms


class KsmMethod(Choice):
    FINETUNE = "finetune"  # every weight and a new head per task: the upper bound, which forgets
    HEAD = "head"  # a new head only
    PIGGYBACK = "piggyback"  # element-wise binary masks on the pretrained weights
    KERNEL_BINARY = "kernel_binary"  # a kernel-wise binary mask
    KSM = "ksm"  # kernel-wise binary + scaled real mask


METHODS = KsmMethod.names()
MASK_METHODS = (KsmMethod.PIGGYBACK, KsmMethod.KERNEL_BINARY, KsmMethod.KSM)
FLOAT_BYTES = 4

# Piggyback keeps a weight while its real score exceeds a threshold (5e-3) and starts every score
# at 1e-2; the library's threshold is 0, so scores start at the same margin above it.
PIGGYBACK_INIT = 5e-3


def check_method(method: str) -> KsmMethod:
    return KsmMethod.of(method, "method")


def build_model(
    method: str,
    pretrained: nn.Module,
    num_tasks: int,
    *,
    kernel: KernelMaskConfig | None = None,
    head: str = "head",
    piggyback_init: float = PIGGYBACK_INIT,
) -> nn.Module:
    """A copy of `pretrained` (whose classifier is the submodule `head`) for `num_tasks` tasks:
    the head becomes `TaskHeads` (task 0's is the pretrained head) and, for the mask methods,
    every other conv / linear layer a mask layer over the frozen pretrained weight whose task 0
    keeps every weight (so task 0 is the pretrained network exactly)."""
    check_method(method)
    model = copy.deepcopy(pretrained)
    body = lambda name, module: name != head  # noqa: E731
    if method == "piggyback":
        convert(model, "supermask", mask="threshold", init="keep", num_tasks=num_tasks, include=body, batchnorm="keep")
        for _, layer in supermask_layers(model):
            layer.score_init = piggyback_init  # every later task starts with every weight kept
            layer.load_mask(0, ops.pack_masks(torch.ones((1, *layer.weight.shape), dtype=torch.bool)))
    elif method in ("kernel_binary", "ksm"):
        cfg = kernel or KernelMaskConfig()
        if method == "kernel_binary":
            cfg = dataclasses.replace(cfg, real="none")
        convert_kernelwise(model, cfg, num_tasks=num_tasks, include=body, batchnorm="keep")
        for _, layer in kernel_mask_layers(model):
            ones = torch.ones(layer.mask_shape, dtype=torch.bool)
            layer.load_soft_mask(0, ones, None if cfg.real == "none" else torch.zeros(layer.mask_shape))
    set_submodule(model, head, TaskHeads(model.get_submodule(head), num_tasks))
    return model


def heads_of(model: nn.Module) -> TaskHeads:
    found = [m for m in model.modules() if isinstance(m, TaskHeads)]
    if len(found) != 1:
        raise ValueError(f"expected one TaskHeads module, found {len(found)}")
    return found[0]


def trainable(model: nn.Module, method: str, task: int, *, lr: float, head_lr: float) -> list[dict]:
    """Parameter groups for learning `task`: its head (at `head_lr`) and the method's own tensors
    (at `lr`): every body weight (finetune), task `task`'s scores (piggyback) or `R` (kernel)."""
    check_method(method)
    set_task(model, task)
    head = list(heads_of(model).heads[task].parameters())
    if method == "head":
        return [{"params": head, "lr": head_lr}]
    if method == "finetune":
        owned = {id(p) for p in heads_of(model).parameters()}
        own = [p for p in model.parameters() if id(p) not in owned]
    elif method == "piggyback":
        own = [layer.task_floats(task) for _, layer in supermask_layers(model)]
    else:
        own = [layer.task_floats(task) for _, layer in kernel_mask_layers(model)]
    return [{"params": own, "lr": lr}, {"params": head, "lr": head_lr}]


def only_these_need_grad(model: nn.Module, groups: list[dict]) -> None:
    """`requires_grad` on exactly the parameters of `groups`, so that backward stops where nothing
    is trained (the frozen body of the head-only baseline) and time per task measures the method."""
    keep = {id(p) for g in groups for p in g["params"]}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)


@torch.no_grad()
def finish_task(model: nn.Module, method: str, task: int) -> None:
    """Reduce `task` to what is stored (docs/design.md §4.4): Piggyback's scores to its packed
    mask, a kernel mask's `R` to its soft mask (packed bits + real part); its head is frozen."""
    check_method(method)
    if method in MASK_METHODS:
        finish_all(model, task)
    else:
        heads_of(model).finish_task(task)


def bytes_per_task(model: nn.Module, method: str) -> dict:
    """Bytes one more task costs: `total` and its parts (`head`: the task's float32 classifier;
    `bits_packed`: masks packed 1 bit per weight or kernel, rows padded to 32 bits; `bits_exact`:
    the same bits without padding; `real`: float32 real-part values; `weights`: a float32 copy of
    the whole body, which fine-tuning would need to keep a task)."""
    check_method(method)
    heads = heads_of(model)
    head = FLOAT_BYTES * sum(p.numel() for p in heads.heads[0].parameters())
    parts = {"head": head, "bits_packed": 0, "bits_exact": 0, "real": 0, "weights": 0}
    if method == "finetune":
        owned = {id(p) for p in heads.parameters()}
        parts["weights"] = FLOAT_BYTES * sum(p.numel() for p in model.parameters() if id(p) not in owned)
    elif method == "piggyback":
        for _, layer in supermask_layers(model):
            rows = layer.weight.shape[0]
            cols = layer.weight[0].numel()
            parts["bits_packed"] += 4 * rows * math.ceil(cols / 32)
            parts["bits_exact"] += math.ceil(rows * cols / 8)
    elif method in MASK_METHODS:
        for _, layer in kernel_mask_layers(model):
            b = layer.bytes_per_task()
            parts["bits_packed"] += b["bits_packed"]
            parts["bits_exact"] += b["bits_exact"]
            parts["real"] += b["real"]
    parts["total"] = parts["head"] + parts["bits_packed"] + parts["real"] + parts["weights"]
    return parts


def backbone_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the body's weights and biases by name (mask layers keep them as buffers, plain
    modules as parameters; the task heads are left out), to check that training never changed them."""
    heads = [n for n, m in model.named_modules() if isinstance(m, TaskHeads)]
    prefix = heads[0] + "." if heads else "\0"
    named = itertools.chain(model.named_parameters(), model.named_buffers())
    return {n: t.detach().clone() for n, t in named if n.rsplit(".", 1)[-1] in ("weight", "bias") and not n.startswith(prefix)}


def temperature(start: float, end: float, steps: int, step: int) -> float:
    """The softmax temperature before step `step` (from 0) of `steps`: geometric from `start` to
    `end` (constant when they are equal)."""
    frac = min(1.0, step / max(1, steps - 1))
    return start * (end / start) ** frac


@dataclasses.dataclass
class KsmConfig:
    """method: one of METHODS; lr: the method's own tensors (the body for finetune, Piggyback's
    scores, a kernel mask's R); head_lr: the task's new head; every task trains `iterations`
    Adam steps on batches of `batch_size`; kernel masks anneal their softmax temperature from
    `temperature` to `temperature_end` over those steps."""

    method: KsmMethod = KsmMethod.KSM
    lr: float = 5e-2
    head_lr: float = 1e-2
    iterations: int = 500
    batch_size: int = 64
    temperature: float = 1.0
    temperature_end: float = 0.01

    def __post_init__(self):
        self.method = check_method(self.method)
        if self.iterations < 1 or self.batch_size < 1:
            raise ValueError(f"iterations and batch_size must be at least 1, got {self.iterations}, {self.batch_size}")
        for name in ("lr", "head_lr", "temperature", "temperature_end"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a finite positive number, got {getattr(self, name)}")

    def training(self) -> TrainConfig:
        return TrainConfig(optimizer="adam", lr=self.lr, epochs=1e9, iterations=self.iterations, batch_size=self.batch_size)


class KSM(Learner):
    """KSM, Piggyback and the baselines (`cfg.method`) over a `build_model` copy of a pretrained
    network: per task one phase training the method's tensors and the task's head together."""

    def __init__(self, model: nn.Module, cfg: KsmConfig | None = None):
        super().__init__(model)
        self.cfg = cfg = cfg or KsmConfig()
        self.name = cfg.method
        self.trains_backbone = cfg.method == "finetune"
        heads_of(model)  # refuses a model build_model did not make

    def first_config(self) -> TrainConfig:
        return self.cfg.training()

    def phases(self, task: int) -> list[Phase]:
        cfg = self.cfg
        groups = trainable(self.model, cfg.method, task, lr=cfg.lr, head_lr=cfg.head_lr)
        layers = [layer for _, layer in kernel_mask_layers(self.model)] if cfg.method in ("kernel_binary", "ksm") else []

        def anneal(step: int) -> None:
            for layer in layers:
                layer.set_temperature(temperature(cfg.temperature, cfg.temperature_end, cfg.iterations, step))

        def start():
            only_these_need_grad(self.model, groups)  # no backward pass into what the task does not train
            anneal(0)

        return [Phase("train", groups, cfg.training(), start=start, after_step=anneal if layers else None)]

    def finish(self, task: int) -> dict:
        finish_task(self.model, self.cfg.method, task)
        return {}

    def task_bytes(self, task: int) -> dict:
        """`bytes_per_task` (the compute format, `total`) and, as `smallest`, the finished task
        with its binary part coded (coding.py) beside its head and real part."""
        parts = bytes_per_task(self.model, self.cfg.method)
        if self.cfg.method not in MASK_METHODS:
            return {**parts, "smallest": parts["total"]}
        if self.cfg.method == KsmMethod.PIGGYBACK:  # SupSup layers: their masks as SupSup counts them
            coded = mask_forms(self.model, task)["coded"]
        else:
            bits = {n: ops.unpack_masks(m.stored_parts(task)[0])[0] for n, m in kernel_mask_layers(self.model)}
            coded = task_forms(bits)["coded"]
        return {**parts, "smallest": parts["head"] + parts["real"] + min(coded, parts["bits_packed"])}

    def inference_model(self) -> nn.Module:
        raise ValueError(f"{self.name} adapts a pretrained network with a head per task: its tasks are given, not inferred")


LEARNERS = variants(KSM, KsmConfig, METHODS)
