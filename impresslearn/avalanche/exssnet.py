"""ExSSNeT and SSNeT (docs/design.md §2.11) as Avalanche strategies: the method's `Learner`
(impresslearn.methods.exssnet) in Avalanche's loop.

Each experience is the learner's two phases: a mask phase (the task's scores, as SupSup), then a
weight phase (the backbone weights under the task's now fixed mask, the gradient replaced by 0
outside `E_t = M_t ∧ ¬used`, `used` being the union of the earlier tasks' masks; SSNeT: outside
`M_t`), by a fresh Adam without weight decay, so an entry outside the set gets a zero gradient
from the first step and never moves. With `E_t` no earlier task's weights change, so its
outputs stay bit-identical; SSNeT may change them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn
from avalanche.training.plugins import SupervisedPlugin

from ..continual.training import TrainConfig
from ..layers import impress_layers, supermask_layers
from ..methods import ExSSNeT as ExssnetLearner
from ..methods import ExssnetConfig
from .plugin import TaskTrainingPlugin
from .strategies import MASK_TRAINING, MaskStrategy, as_module

# the library's weight phase (methods/exssnet.py): Adam 1e-4, no weight decay
WEIGHT_TRAINING = TrainConfig(optimizer="adam", lr=1e-4, epochs=1, batch_size=128)


class ExSSNeTTraining(TaskTrainingPlugin):
    """A mask phase (`masks`), then a weight phase (`weights`) whose gradient is restricted to
    the task's exclusive weights (`exclusive=True`, ExSSNeT) or to its whole mask (SSNeT)."""

    def __init__(self, masks: TrainConfig, weights: TrainConfig, exclusive: bool = True):
        # ExssnetConfig refuses a weight phase that would move entries outside the set
        cfg = ExssnetConfig(method="exssnet" if exclusive else "ssnet", mask=masks, weight=weights)
        super().__init__(lambda net: ExssnetLearner(net, cfg))
        self.masks, self.weights, self.exclusive = masks, weights, bool(exclusive)

    @property
    def trained_entries(self) -> dict[int, int]:
        """task -> the weights its weight phase could change."""
        return self.learner.trained if self.learner is not None else {}


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
