"""ImpressLearn (docs/design.md §2.4): a task is a few coefficients (alphas) over a frozen basis of
packed masks, per layer or per output channel; in a hybrid model one layer learns a SupSup mask
of the task's own beside them."""

from __future__ import annotations

import math

import torch.nn as nn

from ..continual.alpha import ALPHA_PRESETS, DEFAULT_ALPHA_PRESET, alpha_params, alpha_penalty, check_lam
from ..continual.training import TrainConfig
from ..layers import AlphaQuant, ScaleGroup, coded_bytes, impress_layers, quantised_bytes, supermask_layers
from .learner import Learner, Phase, state_bytes
from .supsup import mask_forms

# the library's default alpha fit (continual/alpha.py, tuned on a validation split)
ALPHA_TRAINING = TrainConfig(**ALPHA_PRESETS[DEFAULT_ALPHA_PRESET])
FLOAT_BYTES = 4


class ImpressLearn(Learner):
    """alphas: how a task's alphas (and a hybrid's mask) train; lam: the weight of the paper's
    eq. 2 penalty; quant: quantised alphas (`AlphaQuant(bits, scale)`), trained through
    straight-through rounding and kept and counted as codes and float16 scales. The model:
    `convert(net, "impress", basis=...)`, `continual.impress_model(...)` or
    `layers.impress_over(supsup_model, new_tasks=n)`."""

    name = "impresslearn"

    def __init__(self, model: nn.Module, alphas: TrainConfig | None = None, lam: float = 0.0, quant: AlphaQuant | None = None):
        super().__init__(model)
        alphas = alphas or ALPHA_TRAINING
        if not impress_layers(model):
            raise ValueError("ImpressLearn learns alphas over a basis: give it a convert(..., 'impress') model")
        check_lam(lam)
        if alphas.optimizer == "lbfgs" and supermask_layers(model):
            raise ValueError(
                "L-BFGS cannot train the hybrid variant's mask scores (straight-through top-k); use adam, rmsprop or sgd"
            )
        self.alphas, self.lam, self.quant = alphas, float(lam), quant
        for name, m in impress_layers(model):
            if quant is not None and quant.scale == ScaleGroup.ROW and not m.per_channel:
                raise ValueError(f"per-row alpha scales need per-channel alphas; layer {name!r} has one alpha per mask")
            m.alpha_quant = quant  # every task of the layer is trained and kept quantised

    def first_config(self) -> TrainConfig:
        return self.alphas

    def phases(self, task: int) -> list[Phase]:
        penalty = (lambda: self.lam * alpha_penalty(self.model, task)) if self.lam > 0 else None
        return [Phase("alpha", alpha_params(self.model, task), self.alphas, penalty=penalty)]

    def task_bytes(self, task: int) -> dict:
        """fp32 alphas (or quantised ones: bit-packed codes and float16 scales), a hybrid's own
        packed mask, per-task BatchNorm; the basis is shared by every task (`shared_bytes`).
        `smallest`: quantised codes range-coded and a hybrid's mask in its smallest form."""
        layers = [m for _, m in impress_layers(self.model)]
        if self.quant is None:
            alphas = coded = sum(FLOAT_BYTES * math.prod(m.alpha_shape()) for m in layers)
        else:
            alphas = sum(quantised_bytes(m.alpha_shape(), self.quant) for m in layers)
            coded = sum(coded_bytes(m.task_alpha(task).detach(), self.quant) for m in layers)
        forms = mask_forms(self.model, task)  # a hybrid's own mask (nothing otherwise)
        parts = {"alphas": alphas, "mask": forms["packed"], "state": state_bytes(self.model)}
        smallest = min(alphas, coded) + min(forms["coded"], forms["sparse"]) + parts["state"]
        return {**parts, "total": sum(parts.values()), "smallest": smallest, "alphas_coded": coded, "mask_forms": forms}

    def shared_bytes(self) -> int:
        """The basis, packed: stored once for every task."""
        return sum(m.basis.nbytes for _, m in impress_layers(self.model))


LEARNERS = {"impresslearn": ImpressLearn}

__all__ = ["ALPHA_TRAINING", "LEARNERS", "ImpressLearn"]
