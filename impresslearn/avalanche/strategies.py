"""Avalanche strategies over a frozen random backbone, built on `SupervisedTemplate`.

    SupSup        every experience learns a binary mask of its own (edge-popup / SupSup)
    ImpressLearn  the first `basis_size` experiences learn SupSup masks; after them the model
                  becomes an ImpressLearn model over those masks (the basis tasks keep their
                  masks exactly, as one-hot alphas) and each later experience learns alphas
    evaluation_plugin()  Avalanche's evaluation plugin with accuracy, forgetting, BWT and the
                  accuracy matrix

Both take the model as a `MaskModule` (or a `convert()`ed model, wrapped here). Every strategy is
a `MaskStrategy` whose `TaskTrainingPlugin` runs a method's `Learner` (impresslearn.methods): the
method is written once, and `MaskStrategy.of(method, model=...)` makes a strategy of any of them
(`methods.LEARNERS`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn as nn
from avalanche.evaluation.metrics import accuracy_matrix_metrics, accuracy_metrics, bwt_metrics, forgetting_metrics
from avalanche.training.plugins import EvaluationPlugin, SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate

from .. import methods
from ..continual.training import TrainConfig, make_optimizer
from ..layers import impress_layers
from ..layers import impress_over as superposition
from .module import MaskModule, TaskInference
from .plugin import TaskTrainingPlugin

# The library's settings for LeNet-300-100 on MNIST (continual/masks.py "topk-0.1", alpha.py
# "prototype"): RMSprop 3e-4 for scores, Adam 1e-2 for alphas (whole epochs, a constant rate, as
# Avalanche's loop runs them).
MASK_TRAINING = TrainConfig(optimizer="rmsprop", lr=3e-4, epochs=1, batch_size=128)
ALPHA_TRAINING = TrainConfig(optimizer="adam", lr=1e-2, epochs=3, batch_size=128)


def evaluation_plugin(loggers: Sequence | None = None) -> EvaluationPlugin:
    """Accuracy per experience and stream, forgetting, BWT and the accuracy matrix; `loggers`
    default to none (the metrics are read from `evaluator.get_last_metrics()`)."""
    with warnings.catch_warnings():
        # without loggers Avalanche warns that nothing is logged: here that is the intent
        warnings.filterwarnings("ignore", message="No loggers specified")
        return EvaluationPlugin(
            accuracy_metrics(experience=True, stream=True),
            forgetting_metrics(experience=True, stream=True),
            bwt_metrics(experience=True, stream=True),
            accuracy_matrix_metrics(),
            loggers=list(loggers) if loggers is not None else [],
        )


def as_module(model: nn.Module, inference: TaskInference | None = None) -> MaskModule:
    if isinstance(model, MaskModule):
        return model
    return MaskModule(model, inference)


class MaskStrategy(SupervisedTemplate):
    """A `SupervisedTemplate` whose experiences train through `plugin` (a `TaskTrainingPlugin`):
    one task per experience, trained alone and frozen after it. The optimizer and the epochs
    come from the plugin's settings, per phase."""

    def __init__(
        self,
        *,
        model: nn.Module,
        plugin: TaskTrainingPlugin,
        eval_mb_size: int = 256,
        device: str | torch.device = "cpu",
        plugins: Sequence[SupervisedPlugin] | None = None,
        evaluator: EvaluationPlugin | None = None,
        eval_every: int = -1,
        **base_kwargs,
    ):
        module = as_module(model)
        first = plugin.config_for(module)
        super().__init__(
            model=module,
            # a stand-in: the plugin builds each phase's optimizer over that phase's tensors alone
            optimizer=make_optimizer([p for p in module.parameters() if p.requires_grad], first),
            criterion=nn.CrossEntropyLoss(),
            train_mb_size=first.batch_size,
            train_epochs=int(first.epochs),
            eval_mb_size=eval_mb_size,
            device=device,
            plugins=[plugin, *(plugins or [])],
            evaluator=evaluator if evaluator is not None else evaluation_plugin(),
            eval_every=eval_every,
            **base_kwargs,
        )
        self.task_plugin = plugin

    @classmethod
    def of(cls, method: str, *, model: nn.Module, config=None, **kwargs) -> MaskStrategy:
        """A strategy of any method of `methods.LEARNERS` by name, with its settings `config`
        (the method's own config class; None: its defaults), over the strategy's model."""
        module = as_module(model)
        return cls(model=module, plugin=TaskTrainingPlugin(lambda net: methods.make(method, net, config)), **kwargs)


class SupSup(MaskStrategy):
    """SupSup / edge-popup: a binary mask per experience over a frozen backbone.

    model: a `convert(net, "supermask", ...)` model, or a `MaskModule` of one.
    masks: how each mask trains (whole epochs; RMSprop 3e-4, one epoch of batches of 128).
    """

    def __init__(self, *, model: nn.Module, masks: TrainConfig = MASK_TRAINING, **kwargs):
        module = as_module(model)
        if impress_layers(module.net):
            raise ValueError("SupSup learns masks: give it a convert(..., 'supermask') model")
        super().__init__(model=module, plugin=TaskTrainingPlugin(lambda net: methods.SupSup(net, masks)), **kwargs)


class BasisSwitch(SupervisedPlugin):
    """After the `basis_size`-th experience, the model becomes an ImpressLearn model over the
    masks learnt so far; the basis tasks keep exactly their masks (one-hot alphas)."""

    def __init__(self, basis_size: int, per_channel: bool):
        super().__init__()
        if basis_size < 1:
            raise ValueError(f"basis_size must be at least 1, got {basis_size}")
        self.basis_size = basis_size
        self.per_channel = per_channel

    def after_training_exp(self, strategy, **kwargs):
        model: MaskModule = strategy.model
        if impress_layers(model.net) or len(model.frozen) < self.basis_size:
            return
        model.replace_net(superposition(model.net, per_channel=self.per_channel))


class ImpressLearn(MaskStrategy):
    """ImpressLearn: the first `basis_size` experiences learn SupSup masks (a heterogeneous
    basis), every later one learns only alphas over them, per layer or `per_channel`.

    model: a `convert(net, "supermask", ...)` model, or a `MaskModule` of one.
    masks, alphas: how the basis masks and the alphas train (whole epochs); lam: the weight of
    the paper's eq. 2 penalty on the alphas.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        basis_size: int,
        per_channel: bool = False,
        masks: TrainConfig = MASK_TRAINING,
        alphas: TrainConfig = ALPHA_TRAINING,
        lam: float = 0.0,
        plugins: Sequence[SupervisedPlugin] | None = None,
        **kwargs,
    ):
        module = as_module(model)
        if impress_layers(module.net):
            raise ValueError("ImpressLearn learns its basis as masks first: give it a convert(..., 'supermask') model")
        self.basis_size = basis_size
        # the switch runs after the training plugin has frozen the experience's task
        switch = BasisSwitch(basis_size, per_channel)

        def learner_for(net: nn.Module) -> methods.Learner:
            return methods.ImpressLearn(net, alphas, lam=lam) if impress_layers(net) else methods.SupSup(net, masks)

        plugin = TaskTrainingPlugin(learner_for)
        super().__init__(model=module, plugin=plugin, plugins=[switch, *(plugins or [])], **kwargs)
