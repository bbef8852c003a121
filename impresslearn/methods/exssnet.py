"""ExSSNeT (Yadav & Bansal 2023) and its relatives as one strategy over SupSup layers
(docs/design.md §2.11), a `Learner` (methods/learner.py).

    ExssnetConfig        which method (supsup, ssnet, exssnet, exssnet-kkt) and its two phases
    ExSSNeT              the learner: KKT in `begin`, a mask phase and a weight phase, `used` (the
                         weights earlier masks hold) grown in `finish`
    trainable_entries    the set a weight phase may change: E_t (exclusive) or M_t
    restrict_gradients, release_weights, backbone_weights
                         the weight phase's pieces, for a training loop of another framework (Avalanche)
    kkt_transfer         KKT: k-NN on penultimate features picks an earlier task to start the scores from
    knn_accuracy         the k-NN score KKT ranks the earlier tasks by
    used_from_masks      `used` rebuilt from a model's masks (after loading a checkpoint)

Per task t: (a) with KKT, the scores of t start as scores selecting the best earlier task's mask;
(b) mask phase: the scores of t only, the weights frozen; (c) weight phase (ssnet, exssnet): the
scores frozen, the weights trained with their gradient multiplied by `E_t = M_t ∧ ¬used`
(exssnet) or `M_t` (ssnet), by a fresh Adam without weight decay, so an entry outside `E_t` gets
a zero gradient from the first step and never moves; (d) `used |= M_t`. SupSup is (b) alone.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..choices import Choice
from ..continual.masks import task_scores
from ..continual.training import TrainConfig, num_steps
from ..layers import finish_task, set_task, supermask_layers
from .learner import Learner, Phase, state_bytes, variants
from .supsup import mask_forms

FLOAT_BYTES = 4


class ExssnetMethod(Choice):
    SUPSUP = "supsup"  # the mask phase alone
    SSNET = "ssnet"  # then every weight of the task's mask trained
    EXSSNET = "exssnet"  # then only the weights no earlier mask holds
    EXSSNET_KKT = "exssnet-kkt"  # ExSSNeT, its scores started from the task KKT picks


METHODS = ExssnetMethod.names()


def _default_mask() -> TrainConfig:
    return TrainConfig(optimizer="rmsprop", lr=3e-4, epochs=1.0, batch_size=128)


def _default_weight() -> TrainConfig:
    return TrainConfig(optimizer="adam", lr=1e-4, epochs=1.0, batch_size=128)


@dataclasses.dataclass
class ExssnetConfig:
    """method: one of METHODS; mask / weight: the two phases' training (the weight phase must be
    Adam without weight decay, or entries outside the exclusive set would move); KKT: the fraction
    of the mask phase's batches whose penultimate features are classified, k of the k-NN, the
    fraction of those features it is fitted on (the rest are scored), and the number of classes
    of a task (chance is 1/classes)."""

    method: ExssnetMethod = ExssnetMethod.EXSSNET
    mask: TrainConfig = dataclasses.field(default_factory=_default_mask)
    weight: TrainConfig = dataclasses.field(default_factory=_default_weight)
    kkt_fraction: float = 0.2
    kkt_k: int = 200
    kkt_fit: float = 0.66
    classes: int = 10

    def __post_init__(self):
        self.method = ExssnetMethod.of(self.method, "method")
        if self.weight.optimizer != "adam" or self.weight.weight_decay != 0:
            raise ValueError(
                "the weight phase needs Adam without weight decay (entries outside the exclusive set "
                f"must not move), got {self.weight.optimizer} with weight decay {self.weight.weight_decay}"
            )
        if not 0 < self.kkt_fraction <= 1 or not 0 < self.kkt_fit < 1:
            raise ValueError(f"kkt_fraction must be in (0, 1] and kkt_fit in (0, 1), got {self.kkt_fraction}, {self.kkt_fit}")
        if self.kkt_k < 1 or self.classes < 2:
            raise ValueError(f"kkt_k must be at least 1 and classes at least 2, got {self.kkt_k}, {self.classes}")

    @property
    def trains_weights(self) -> bool:
        return self.method != ExssnetMethod.SUPSUP

    @property
    def exclusive(self) -> bool:
        return self.method in (ExssnetMethod.EXSSNET, ExssnetMethod.EXSSNET_KKT)

    @property
    def kkt(self) -> bool:
        return self.method == ExssnetMethod.EXSSNET_KKT


def current_masks(model: nn.Module, task: int) -> dict[str, Tensor]:
    """The bool mask of `task` in every SupSup layer, by layer name."""
    with torch.no_grad():
        return {n: m.mask(task).detach() > 0 for n, m in supermask_layers(model)}


def used_from_masks(model: nn.Module, tasks: Iterable[int] | None = None) -> dict[str, Tensor]:
    """`M_0 ∨ … ∨ M_{T−1}` per layer: for ExSSNeT and SSNeT alike the union of the exclusive sets,
    i.e. every weight a weight phase may have changed."""
    layers = supermask_layers(model)
    used = {n: torch.zeros(m.weight.shape, dtype=torch.bool, device=m.weight.device) for n, m in layers}
    for t in range(layers[0][1].num_tasks) if tasks is None else tasks:
        for n, mask in current_masks(model, t).items():
            used[n] |= mask
    return used


def trainable_entries(model: nn.Module, task: int, earlier: Iterable[int], exclusive: bool = True) -> dict[str, Tensor]:
    """The weights `task`'s weight phase may change, per layer: `E_t = M_t ∧ ¬(M_e for e in
    earlier)` (ExSSNeT) or `M_t` (SSNeT, `exclusive=False`), from the masks as they are now."""
    masks = current_masks(model, task)
    if not exclusive:
        return masks
    used = used_from_masks(model, earlier)
    return {n: masks[n] & ~used[n] for n in masks}


def backbone_weights(model: nn.Module) -> list[Tensor]:
    """The frozen backbone weights of the SupSup layers: what a weight phase trains."""
    return [m.weight for _, m in supermask_layers(model)]


def restrict_gradients(model: nn.Module, allowed: Mapping[str, Tensor]) -> list:
    """Make the SupSup layers' weights trainable with each layer's gradient zeroed outside
    `allowed[name]` (bool, the weight's shape). Returns the hooks, for `release_weights`."""
    hooks = []
    for n, m in supermask_layers(model):
        keep = allowed[n].to(m.weight.device)
        m.weight.requires_grad_(True)
        # a select, not a product with a 0/1 tensor: a non-finite gradient stays out too
        hooks.append(m.weight.register_hook(lambda g, keep=keep: torch.where(keep, g, torch.zeros_like(g))))
    return hooks


def release_weights(model: nn.Module, hooks: Iterable) -> None:
    """Undo `restrict_gradients`: the hooks removed, the weights frozen again, their gradients dropped."""
    for h in hooks:
        h.remove()
    for w in backbone_weights(model):
        w.requires_grad_(False)
        w.grad = None


# --------------------------------------------------------------------------- KKT


@torch.no_grad()
def penultimate_features(model: nn.Module, task: int, batches: Iterable) -> tuple[Tensor, Tensor]:
    """The inputs of the last SupSup layer (the penultimate features) under `task`'s mask and
    BatchNorm, in evaluation mode, with the labels: `([N, F], [N])`."""
    last = supermask_layers(model)[-1][1]
    feats: list[Tensor] = []
    hook = last.register_forward_pre_hook(lambda mod, args: feats.append(args[0].detach().flatten(1)))
    was_training = model.training
    model.eval()
    set_task(model, task)
    labels = []
    try:
        for x, y in batches:
            model(x)
            labels.append(y)
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def knn_accuracy(features: Tensor, labels: Tensor, k: int, fit_fraction: float, classes: int) -> float:
    """Fit a k-NN classifier (Euclidean, majority vote, ties to the lower class) on the first
    `fit_fraction` of the samples and return its accuracy on the rest."""
    n = features.shape[0]
    n_fit = min(n - 1, max(1, round(fit_fraction * n)))
    if n < 2:
        raise ValueError(f"k-NN needs at least 2 samples, got {n}")
    train_x, test_x = features[:n_fit].double(), features[n_fit:].double()
    train_y, test_y = labels[:n_fit], labels[n_fit:]
    nearest = torch.cdist(test_x, train_x).topk(min(k, n_fit), dim=1, largest=False).indices
    votes = F.one_hot(train_y[nearest], classes).sum(1)
    return (votes.argmax(1) == test_y).double().mean().item()


def kkt_transfer(model: nn.Module, task: int, batches: Iterable, cfg: ExssnetConfig, n_batches: int) -> dict:
    """Score every earlier task's mask (and BatchNorm) on the first `n_batches` of the new task by
    k-NN on penultimate features; if the best beats chance (1/classes), the new task's scores
    start as scores selecting that task's finished mask (b kept, b/2 dropped for top-k, b the
    scores' initial bound: docs/design.md §4.4; the
    earlier task's own mask is never touched)."""
    data = list(itertools.islice(iter(batches), n_batches))
    accs = []
    for source in range(task):
        feats, labels = penultimate_features(model, source, data)
        accs.append(knn_accuracy(feats, labels, cfg.kkt_k, cfg.kkt_fit, cfg.classes))
    chance = 1.0 / cfg.classes
    best = max(range(task), key=lambda i: accs[i]) if accs else None
    chosen = best if best is not None and accs[best] > chance else None
    if chosen is not None:
        with torch.no_grad():
            for _, m in supermask_layers(model):
                # scores that select `chosen`'s finished mask: task `chosen` keeps its own
                m.task_floats(task).copy_(m.finished_floats(chosen))
    return {"knn_acc": accs, "chance": chance, "source": chosen, "samples": sum(int(y.numel()) for _, y in data)}


# --------------------------------------------------------------------------- the sequence of tasks


class ExSSNeT(Learner):
    """ExSSNeT, SSNeT, ExSSNeT with KKT, or SupSup (`cfg.method`) over a SupSup model made with
    enough task slots, learning its tasks one after another.

    `used[name]` is the union of the masks finished so far. A task's record holds the phases'
    records, the KKT choice, `trained_entries` (the weights its weight phase could change) and
    `new_entries` (weights first covered by its mask: the entries a store beside the seed gains,
    docs/design.md §2.8)."""

    def __init__(self, model: nn.Module, cfg: ExssnetConfig | None = None):
        super().__init__(model)
        self.cfg = cfg = cfg or ExssnetConfig()
        self.name = cfg.method
        self.trains_backbone = cfg.trains_weights
        self.layers = supermask_layers(model)
        if not self.layers:
            raise ValueError("the model has no SupSup layers")
        if any(m.mask_mode != "topk" for _, m in self.layers):
            raise ValueError("ExSSNeT learns top-k masks (mask='topk')")
        self.used = {n: torch.zeros(m.weight.shape, dtype=torch.bool, device=m.weight.device) for n, m in self.layers}
        self.trained: dict[int, int] = {}  # task -> weights its weight phase could change
        self.new_entries: dict[int, int] = {}  # task -> weights its mask covered first

    def first_config(self) -> TrainConfig:
        return self.cfg.mask

    def begin(self, task: int, batches: Iterable) -> dict:
        """KKT (exssnet-kkt, after the first task): the new task's scores start from the earlier
        task whose mask classifies its first batches best, if any beats chance."""
        if not (self.cfg.kkt and task > 0):
            return {}
        n = max(1, math.ceil(self.cfg.kkt_fraction * num_steps(self.cfg.mask, len(batches))))
        return {"kkt": kkt_transfer(self.model, task, batches, self.cfg, n)}

    def phases(self, task: int) -> list[Phase]:
        out = [Phase("mask", task_scores(self.model, task), self.cfg.mask)]
        if self.cfg.trains_weights:
            hooks: list = []

            def start():
                finish_task(self.model, task)  # the mask is fixed now; the weight phase reads it packed
                masks = current_masks(self.model, task)
                allowed = {n: masks[n] & ~self.used[n] for n in masks} if self.cfg.exclusive else masks
                self.trained[task] = sum(int(a.sum()) for a in allowed.values())
                hooks.extend(restrict_gradients(self.model, allowed))

            def stop():
                release_weights(self.model, hooks)
                hooks.clear()

            out.append(Phase("weight", backbone_weights(self.model), self.cfg.weight, start=start, stop=stop))
        return out

    def finish(self, task: int) -> dict:
        finish_task(self.model, task)
        masks = current_masks(self.model, task)
        new = sum(int((masks[n] & ~self.used[n]).sum()) for n in masks)
        for n in masks:
            self.used[n] |= masks[n]
        self.new_entries[task] = new
        info = {"new_entries": new}
        if task in self.trained:
            info["trained_entries"] = self.trained[task]
        return info

    def task_bytes(self, task: int) -> dict:
        """The packed mask, and (ssnet, exssnet) a float for each weight the task's mask covered
        first: the store beside the seed (docs/design.md §2.8)."""
        forms = mask_forms(self.model, task)
        parts = {"mask": forms["packed"], "state": state_bytes(self.model)}
        if self.cfg.trains_weights:
            parts["weights"] = FLOAT_BYTES * self.new_entries.get(task, 0)
        smallest = sum(parts.values()) - forms["packed"] + min(forms["coded"], forms["sparse"])
        return {**parts, "total": sum(parts.values()), "smallest": smallest, "mask_forms": forms}


# SupSup is methods/supsup.py; here it is only the comparison's baseline (ExssnetConfig)
LEARNERS = variants(ExSSNeT, ExssnetConfig, [m for m in METHODS if m != "supsup"])

__all__ = [
    "LEARNERS",
    "METHODS",
    "ExssnetConfig",
    "ExSSNeT",
    "backbone_weights",
    "current_masks",
    "kkt_transfer",
    "knn_accuracy",
    "penultimate_features",
    "release_weights",
    "restrict_gradients",
    "trainable_entries",
    "used_from_masks",
]
