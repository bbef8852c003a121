"""ExSSNeT and SSNeT (docs/design.md §2.11) as Avalanche strategies.

Each experience is two phases of `TaskTrainingPlugin`: a mask phase (the task's scores, as
SupSup), then a weight phase (the backbone weights under the task's now fixed mask, the
gradient replaced by 0 outside `E_t = M_t ∧ ¬used`, `used` being the union of the earlier
tasks' masks; SSNeT: outside `M_t`), by a fresh Adam without weight decay, so an entry outside
the set gets a zero gradient from the first step and never moves. With `E_t` no earlier task's
weights change, so its outputs stay bit-identical; SSNeT may change them. The method itself is
`impresslearn.continual.exssnet`; this file only schedules its pieces in Avalanche's loop.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn
from avalanche.training.plugins import SupervisedPlugin

from ..continual.exssnet import (
    ExssnetConfig,
    backbone_weights,
    release_weights,
    restrict_gradients,
    trainable_entries,
)
from ..continual.training import TrainConfig
from ..layers import impress_layers, supermask_layers
from .module import MaskModule
from .plugin import Phase, TaskTrainingPlugin
from .strategies import MASK_TRAINING, MaskStrategy, as_module

# the library's weight phase (continual/exssnet.py): Adam 1e-4, no weight decay
WEIGHT_TRAINING = TrainConfig(optimizer="adam", lr=1e-4, epochs=1, batch_size=128)


class ExSSNeTTraining(TaskTrainingPlugin):
    """A mask phase (`masks`), then a weight phase (`weights`) whose gradient is restricted to
    the task's exclusive weights (`exclusive=True`, ExSSNeT) or to its whole mask (SSNeT)."""

    def __init__(self, masks: TrainConfig, weights: TrainConfig, exclusive: bool = True):
        super().__init__(masks)
        # ExssnetConfig refuses a weight phase that would move entries outside the set
        ExssnetConfig(method="exssnet" if exclusive else "ssnet", mask=masks, weight=weights)
        self.weights = weights
        self.exclusive = bool(exclusive)
        self.trained_entries: dict[int, int] = {}  # task -> weights its weight phase could change

    def phases(self, model: MaskModule, task: int) -> list[Phase]:
        hooks: list = []

        def start():
            # the mask is fixed now (the mask phase is over); earlier = the tasks already frozen
            allowed = trainable_entries(model.net, task, sorted(model.frozen), exclusive=self.exclusive)
            self.trained_entries[task] = sum(int(a.sum()) for a in allowed.values())
            hooks.extend(restrict_gradients(model.net, allowed))

        def stop():
            release_weights(model.net, hooks)
            hooks.clear()
            model.changed()  # the weights moved: anything built from them is stale

        return [
            Phase("mask", model.task_parameters(task), self.masks),
            Phase("weight", backbone_weights(model.net), self.weights, start=start, stop=stop),
        ]


class ExSSNeT(MaskStrategy):
    """ExSSNeT (Yadav & Bansal 2023): per experience a SupSup mask, then the backbone weights no
    earlier mask holds, trained under it. `exclusive=False` is SSNeT (every weight of the mask
    trains; earlier tasks may change).

    model: a `convert(net, "supermask", mask="topk", ...)` model, or a `MaskModule` of one.
    masks: the mask phase (RMSprop 3e-4, one epoch); weights: the weight phase (Adam without
    weight decay, 1e-4, one epoch).
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        masks: TrainConfig = MASK_TRAINING,
        weights: TrainConfig = WEIGHT_TRAINING,
        exclusive: bool = True,
        plugins: Sequence[SupervisedPlugin] | None = None,
        **kwargs,
    ):
        module = as_module(model)
        layers = supermask_layers(module.net)
        if impress_layers(module.net) or not layers:
            raise ValueError("ExSSNeT learns masks and weights: give it a convert(..., 'supermask') model")
        if any(m.mask_mode != "topk" for _, m in layers):
            raise ValueError("ExSSNeT learns top-k masks: convert the model with mask='topk'")
        super().__init__(model=module, plugin=ExSSNeTTraining(masks, weights, exclusive), plugins=plugins, **kwargs)


class SSNeT(ExSSNeT):
    """SSNeT: ExSSNeT whose weight phase trains every weight of the task's mask (earlier tasks
    sharing those weights may change)."""

    def __init__(self, *, model: nn.Module, **kwargs):
        if "exclusive" in kwargs:
            raise TypeError("SSNeT trains the whole mask's weights; use ExSSNeT for the exclusive ones")
        super().__init__(model=model, exclusive=False, **kwargs)
