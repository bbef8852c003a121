"""SupSup / edge-popup (docs/design.md §2.2–2.3): a task is a binary mask over the frozen
backbone, learned as real scores (top-k or threshold) and stored packed, 1 bit per weight."""

from __future__ import annotations

import torch.nn as nn

from ..continual.masks import task_scores
from ..continual.storage import supsup_bytes_packed
from ..continual.training import TrainConfig
from ..layers import supermask_layers
from .learner import Learner, Phase, state_bytes

# RMSprop 3e-4, one epoch of batches of 128 (continual/masks.py, "topk-0.1")
MASK_TRAINING = TrainConfig(optimizer="rmsprop", lr=3e-4, epochs=1.0, batch_size=128)


def mask_bytes(model: nn.Module) -> int:
    """One task's masks in every SupSup layer, packed (rows padded to 32-bit words)."""
    return supsup_bytes_packed({n: tuple(m.weight.shape) for n, m in supermask_layers(model)})


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
        parts = {"mask": mask_bytes(self.model), "state": state_bytes(self.model)}
        return {**parts, "total": sum(parts.values())}


# the methods of this file by name (methods/__init__.py gathers them)
LEARNERS = {"supsup": SupSup}

__all__ = ["LEARNERS", "MASK_TRAINING", "SupSup", "mask_bytes"]
