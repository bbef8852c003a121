"""Continual methods, one file each (docs/design.md §4.8, layer 5): every method is a `Learner`
(learner.py) that the runners, the Avalanche adapter and a user's own loop drive alike.

    learner     Learner, Phase: the interface; Learner.learn, the library's loop over the phases
    supsup      SupSup / edge-popup: a packed binary mask per task
    impress     ImpressLearn: alphas over a basis of masks (per layer, per channel, hybrid)
    exssnet     SSNeT, ExSSNeT, ExSSNeT + KKT: a mask, then the weights no earlier mask holds
    ksm         KSM, kernel-wise binary masks, Piggyback, fine-tuning, a head per task

    make(method, model, config)   the learner of a method by name (`LEARNERS`)
"""

from __future__ import annotations

import torch.nn as nn

from . import exssnet, impress, ksm, supsup
from .exssnet import ExSSNeT, ExssnetConfig
from .impress import ImpressLearn
from .ksm import KSM, KsmConfig
from .learner import Learner, Phase, run_phase
from .supsup import SupSup

# every method by name; a new method's file adds its own `LEARNERS` here
LEARNERS = {**supsup.LEARNERS, **impress.LEARNERS, **exssnet.LEARNERS, **ksm.LEARNERS}


def make(method: str, model: nn.Module, config=None, **settings) -> Learner:
    """The learner of `method` (a name of `LEARNERS`) over `model`, with its settings `config`
    (the method's own config class; None: its defaults)."""
    if method not in LEARNERS:
        raise ValueError(f"method must be one of {', '.join(LEARNERS)}, got {method!r}")
    return LEARNERS[method](model, config, **settings)


__all__ = [
    "KSM",
    "LEARNERS",
    "ExSSNeT",
    "ExssnetConfig",
    "ImpressLearn",
    "KsmConfig",
    "Learner",
    "Phase",
    "SupSup",
    "make",
    "run_phase",
]
