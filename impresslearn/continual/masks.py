"""Edge-popup / SupSup mask training (scenario GG): one binary mask per task over a frozen backbone.

    train_mask(model, task, batches, cfg)    fit the scores of `task` only; the backbone and the
                                             other tasks' scores are untouched, so nothing learned
                                             before is forgotten
    task_masks(model, tasks)                 the learned masks of `tasks`, bit-packed, per layer
    load_task_masks(model, masks)            put stored masks back into a SupSup model

Presets (`MASK_PRESETS`) name the settings that SupSup's code and the issue's prototypes use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch.nn as nn

from ..format import PackedMasks
from ..layers import finish_task, set_task, supermask_layers
from .backbone import BackboneConfig
from .training import TrainConfig, fit

# name: (backbone settings, training settings)
MASK_PRESETS: dict[str, tuple[dict, dict]] = {
    # The density-0.1 prototype: top-10 % masks on a density-scaled signed-constant
    # backbone, RMSprop 3e-4, one epoch of batches of 128.
    "topk-0.1": (
        dict(mask="topk", density=0.1, init="signed_constant", scale=True, outputs=10),
        dict(optimizer="rmsprop", lr=3e-4, epochs=1.0, batch_size=128),
    ),
    # SupSup's own PermutedMNIST task-inference settings (experiments/GNu/MNISTPerm): threshold
    # masks, unscaled signed constant, 100 outputs (10 real), RMSprop 1e-4, 1000 iterations.
    "supsup": (
        dict(mask="threshold", init="signed_constant", scale=False, outputs=100),
        dict(optimizer="rmsprop", lr=1e-4, epochs=3.0, iterations=1000, batch_size=128),
    ),
    # The ImpressLearn paper (Table 3 and its authors' MNIST code): LeNet-300-100, Kaiming
    # normal backbone, top-k masks at density 0.1, RMSprop 1e-4, one epoch, batch 128.
    "paper": (
        dict(mask="topk", density=0.1, init="kaiming_normal", scale=False, outputs=10),
        dict(optimizer="rmsprop", lr=1e-4, epochs=1.0, batch_size=128),
    ),
}


def task_scores(model: nn.Module, task: int) -> list:
    """Select `task` and return its score tensors in every SupSup layer (what mask training
    updates: each layer's slot Parameter). A finished task has none: a RuntimeError."""
    layers = supermask_layers(model)
    if not layers:
        raise ValueError("the model has no SupSup layers")
    set_task(model, task)
    return [m.task_floats(task) for _, m in layers]


def train_mask(
    model: nn.Module,
    task: int,
    batches: Iterable,
    cfg: TrainConfig,
    *,
    desc: str | None = None,
    progress: bool | None = None,
    finish: bool = True,
) -> dict:
    """Learn the mask of `task` (its scores only) on `batches`, then (with `finish`) keep it as its
    packed mask (docs/design.md §4.4). Returns steps and final loss."""
    set_task(model, task)
    out = fit(model, task_scores(model, task), batches, cfg, desc=desc or f"mask {task}", progress=progress)
    if finish:
        finish_task(model, task)
    return out


def task_masks(model: nn.Module, tasks: Sequence[int] | None = None) -> dict[str, PackedMasks]:
    """The masks of `tasks` (all by default) of every SupSup layer, 1 bit per weight."""
    return {name: m.export_masks(tasks) for name, m in supermask_layers(model)}


def load_task_masks(model: nn.Module, masks: Mapping[str, PackedMasks]) -> None:
    """Make the model's tasks exactly the given masks (one task per mask, same count in each layer)."""
    layers = supermask_layers(model)
    missing = {n for n, _ in layers} - set(masks)
    if missing:
        raise KeyError(f"no masks given for layers {sorted(missing)}")
    counts = {masks[n].num_masks for n, _ in layers}
    if len(counts) != 1:
        raise ValueError(f"layers were given different numbers of masks: {sorted(counts)}")
    for name, m in layers:
        m.load_masks(masks[name])


def preset(name: str, **backbone_overrides) -> tuple[BackboneConfig, TrainConfig]:
    """The (backbone, training) settings of a named preset, with backbone fields overridden."""
    if name not in MASK_PRESETS:
        raise ValueError(f"unknown mask preset {name!r}; choose from {sorted(MASK_PRESETS)}")
    bb, tr = MASK_PRESETS[name]
    return BackboneConfig(**{**bb, **backbone_overrides}), TrainConfig(**tr)
