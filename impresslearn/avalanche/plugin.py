"""`TaskTrainingPlugin`: an experience trains one task of a `Learner` (impresslearn.methods), in
its phases, and freezes it when it ends.

The plugin asks the learner of the strategy's model for the task's phases (`Phase`: the tensors,
the settings, what to do when it starts and stops, a penalty, a per-step hook) and runs the sum
of their epochs as Avalanche's epoch loop, switching at the epoch boundary as Avalanche's own
PackNet plugin switches to its post-pruning phase. Each phase gets a fresh optimizer over its
parameters alone (`impresslearn.continual.training.make_optimizer`), so no other task's tensors
sit in it, and every other parameter has `requires_grad` off. When the experience ends the
learner finishes the task (`Learner.finish`): the same method code as the library's own loop.
A learner's `begin` (KKT) reads plain `(x, y)` batches and is not run here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn
from avalanche.core import SupervisedPlugin

from ..continual.training import TrainConfig, make_optimizer
from ..methods import Learner, Phase
from .module import MaskModule


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
    """learner_for(net): the `Learner` of the strategy's model (`MaskModule.net`), made once per
    net (a strategy that swaps the net, as ImpressLearn's after its basis, gets a new one)."""

    def __init__(self, learner_for: Callable[[nn.Module], Learner]):
        super().__init__()
        self.learner_for = learner_for
        self.learner: Learner | None = None
        self._phases: list[Phase] = []
        self._epoch = 0
        self._current = 0
        self._steps = 0
        self.task: int | None = None

    def learner_of(self, model: MaskModule) -> Learner:
        if self.learner is None or self.learner.model is not model.net:
            self.learner = self.learner_for(model.net)
        return self.learner

    # what an experience trains: the learner's phases (a subclass may list others)
    def phases(self, model: MaskModule, task: int) -> list[Phase]:
        return self.learner_of(model).phases(task)

    def config_for(self, model: MaskModule) -> TrainConfig:
        """The settings of an experience's first phase, known before its task is allocated."""
        return check_config(self.learner_of(model).first_config(), "the first phase")

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
        self._model(strategy).train_only(phase.tensors())
        strategy.optimizer = make_optimizer(phase.params, phase.config)
        self._steps = 0
        if phase.start is not None:
            phase.start()

    def _stop(self, strategy) -> None:
        phase = self._phases[self._current]
        if phase.stop is not None:
            phase.stop()
        self._model(strategy).changed()  # what the phase trained moved: anything built from it is stale

    def before_backward(self, strategy, **kwargs):
        phase = self._phases[self._current] if self._phases else None
        if phase is not None and phase.penalty is not None:
            strategy.loss = strategy.loss + phase.penalty()

    def after_training_iteration(self, strategy, **kwargs):
        phase = self._phases[self._current] if self._phases else None
        self._steps += 1
        if phase is not None and phase.after_step is not None:
            phase.after_step(self._steps)

    def after_training_epoch(self, strategy, **kwargs):
        self._epoch += 1
        ends = sum(int(p.config.epochs) for p in self._phases[: self._current + 1])
        if self._epoch == ends and self._current + 1 < len(self._phases):
            self._stop(strategy)
            self._current += 1
            self._start(strategy, self._phases[self._current])

    def after_training_exp(self, strategy, **kwargs):
        model = self._model(strategy)
        self._stop(strategy)
        self.learner_of(model).finish(self.task)
        model.freeze(self.task)
        self._phases = []


__all__ = ["Phase", "TaskTrainingPlugin", "check_config"]
