"""`TaskTrainingPlugin`: an experience trains only its own task's scores or alphas, in phases, and
freezes them when it ends.

An experience is trained in one or more phases (`Phase`: the parameters, the settings, and what
to do when it starts). SupSup and ImpressLearn have one: the task's scores, or its alphas. A
method with more (ExSSNeT: a mask phase, then a weight phase) lists them in `phases()`; the
plugin runs the sum of their epochs as Avalanche's epoch loop and switches at the epoch boundary,
as Avalanche's own PackNet plugin switches to its post-pruning phase. Each phase gets a fresh
optimizer over its parameters alone (`impresslearn.continual.training.make_optimizer`), so no
other task's tensors sit in it, and every other parameter has `requires_grad` off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from avalanche.core import SupervisedPlugin
from torch import Tensor

from ..continual.training import TrainConfig, make_optimizer
from ..layers import impress_layers
from .module import MaskModule


@dataclasses.dataclass
class Phase:
    """Part of an experience: train `params` with `config` for `config.epochs` epochs; `start()`
    runs when the phase begins and `stop()` when it ends (e.g. a weight phase's gradient hooks
    put on and taken off)."""

    name: str
    params: list[Tensor]
    config: TrainConfig
    start: Callable[[], None] | None = None
    stop: Callable[[], None] | None = None


def check_config(config: TrainConfig, what: str) -> TrainConfig:
    """Avalanche trains whole epochs over minibatches: refuse what its loop cannot run."""
    if config.epochs != int(config.epochs):
        raise ValueError(f"{what}: Avalanche trains whole epochs, got epochs={config.epochs}")
    if config.iterations is not None:
        raise ValueError(f"{what}: Avalanche trains whole epochs; give epochs, not iterations={config.iterations}")
    if config.optimizer == "lbfgs" or config.schedule != "constant":
        raise ValueError(f"{what}: the Avalanche strategies take adam, rmsprop or sgd at a constant rate")
    return config


class TaskTrainingPlugin(SupervisedPlugin):
    """masks: how a task's scores train (a SupSup model); alphas: how its alphas train (an
    ImpressLearn model; default `masks`). The strategy's model must be a `MaskModule`."""

    def __init__(self, masks: TrainConfig, alphas: TrainConfig | None = None):
        super().__init__()
        self.masks = check_config(masks, "masks")
        self.alphas = check_config(alphas or masks, "alphas")
        self._phases: list[Phase] = []
        self._epoch = 0
        self._current = 0
        self.task: int | None = None

    # what an experience trains: override in a method with more phases
    def phases(self, model: MaskModule, task: int) -> list[Phase]:
        if impress_layers(model.net):
            return [Phase("alpha", model.task_parameters(task), self.alphas)]
        return [Phase("mask", model.task_parameters(task), self.masks)]

    def config_for(self, model: MaskModule) -> TrainConfig:
        """The settings of an experience's first phase, known before its task is allocated."""
        return self.alphas if impress_layers(model.net) else self.masks

    @staticmethod
    def _model(strategy) -> MaskModule:
        if not isinstance(strategy.model, MaskModule):
            raise TypeError(f"TaskTrainingPlugin needs a MaskModule model, got {type(strategy.model).__name__}")
        return strategy.model

    @staticmethod
    def experience_task(model: MaskModule, experience) -> int:
        labels = sorted(set(experience.task_labels))
        if len(labels) != 1:
            raise ValueError(f"an experience must hold one task label to train one task, got {labels}")
        task = model.task(labels[0])
        if task in model.frozen:
            raise ValueError(
                f"task label {labels[0]} was learnt by an earlier experience and is frozen; "
                "give each experience its own task label (e.g. return_task_id=True)"
            )
        return task

    def before_train_dataset_adaptation(self, strategy, **kwargs):
        strategy.train_mb_size = self.config_for(self._model(strategy)).batch_size

    def before_training_exp(self, strategy, **kwargs):
        model = self._model(strategy)
        self.task = self.experience_task(model, strategy.experience)
        self._phases = self.phases(model, self.task)
        if not self._phases:
            raise ValueError("a method must train at least one phase per experience")
        for p in self._phases:
            check_config(p.config, p.name)
        strategy.train_epochs = sum(int(p.config.epochs) for p in self._phases)
        self._epoch = 0
        self._current = 0
        self._start(strategy, self._phases[0])

    def _start(self, strategy, phase: Phase) -> None:
        self._model(strategy).train_only(phase.params)
        strategy.optimizer = make_optimizer(phase.params, phase.config)
        if phase.start is not None:
            phase.start()

    def _stop(self) -> None:
        phase = self._phases[self._current]
        if phase.stop is not None:
            phase.stop()

    def after_training_epoch(self, strategy, **kwargs):
        self._epoch += 1
        ends = sum(int(p.config.epochs) for p in self._phases[: self._current + 1])
        if self._epoch == ends and self._current + 1 < len(self._phases):
            self._stop()
            self._current += 1
            self._start(strategy, self._phases[self._current])

    def after_training_exp(self, strategy, **kwargs):
        self._stop()
        self._model(strategy).freeze(self.task)
        self._phases = []
