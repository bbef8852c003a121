"""SupSup / edge-popup (docs/design.md §2.2–2.3): a task is a binary mask over the frozen
backbone, learned as real scores (top-k or threshold) and stored packed, 1 bit per weight."""

from __future__ import annotations

import torch.nn as nn

from .. import ops
from ..coding import task_forms
from ..continual.masks import task_scores
from ..continual.training import TrainConfig
from ..layers import supermask_layers
from .learner import Learner, Phase, state_bytes

# RMSprop 3e-4, one epoch of batches of 128 (continual/masks.py, "topk-0.1")
MASK_TRAINING = TrainConfig(optimizer="rmsprop", lr=3e-4, epochs=1.0, batch_size=128)


def mask_forms(model: nn.Module, task: int) -> dict[str, int]:
    """Task `task`'s masks in every SupSup layer in each form (coding.py): packed,
    sparse (16-bit indices), coded (cold storage) and the entropy bound."""
    bits = {n: ops.unpack_masks(m.export_masks([task]))[0] for n, m in supermask_layers(model)}
    return task_forms(bits) if bits else {"packed": 0, "sparse": 0, "coded": 0, "entropy": 0}


class SupSup(Learner):
    """masks: how a task's scores train. The model: `convert(net, "supermask", ...)` or
    `continual.supermask_model(...)`."""

    name = "supsup"

    def __init__(self, model: nn.Module, masks: TrainConfig | None = None):
        super().__init__(model)
        if not supermask_layers(model):
            raise ValueError("SupSup learns masks: give it a convert(..., 'supermask') model")
        self.masks = masks or MASK_TRAINING

    def first_config(self) -> TrainConfig:
        return self.masks

    def phases(self, task: int) -> list[Phase]:
        return [Phase("mask", task_scores(self.model, task), self.masks)]

    def task_bytes(self, task: int) -> dict:
        """The packed mask (the compute format, `total`) and, as `smallest`, the same task in its
        smallest exact form: the mask coded or as 16-bit indices, whichever is smaller."""
        forms = mask_forms(self.model, task)
        parts = {"mask": forms["packed"], "state": state_bytes(self.model)}
        smallest = min(forms["coded"], forms["sparse"]) + parts["state"]
        return {**parts, "total": sum(parts.values()), "smallest": smallest, "mask_forms": forms}


# the methods of this file by name (methods/__init__.py gathers them)
LEARNERS = {"supsup": SupSup}

__all__ = ["LEARNERS", "MASK_TRAINING", "SupSup", "mask_forms"]
