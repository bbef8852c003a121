"""The shared fitting loop on a toy problem: every optimizer lowers the loss, caps and schedules hold."""

import pytest
import torch

from impresslearn.continual.training import TrainConfig, fit, num_steps


def toy():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 5, generator=gen)
    y = (x[:, 0] + x[:, 1] > 0).long()
    batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, 256, 64)]
    model = torch.nn.Linear(5, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    return model, batches, x, y


@pytest.mark.parametrize(
    "cfg",
    [
        TrainConfig(optimizer="adam", lr=0.1, epochs=5),
        TrainConfig(optimizer="rmsprop", lr=0.05, epochs=10),
        TrainConfig(optimizer="sgd", lr=0.5, epochs=5),
        TrainConfig(optimizer="adam", lr=0.1, epochs=5, schedule="cosine"),
        TrainConfig(optimizer="lbfgs", lr=1.0, iterations=20),
    ],
    ids=["adam", "rmsprop", "sgd", "adam-cosine", "lbfgs"],
)
def test_every_optimizer_fits_a_separable_problem(cfg):
    model, batches, x, y = toy()
    out = fit(model, list(model.parameters()), batches, cfg, progress=False)
    acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc > 0.95 and out["loss"] < 0.3, (acc, out)


def test_step_counts():
    assert num_steps(TrainConfig(epochs=2.5), 10) == 25
    assert num_steps(TrainConfig(epochs=3, iterations=7), 10) == 7
    assert num_steps(TrainConfig(optimizer="lbfgs", iterations=10), 10) == 16  # evaluations at most


def test_bad_settings():
    with pytest.raises(ValueError):
        TrainConfig(schedule="step")
    with pytest.raises(ValueError):
        TrainConfig(lr=0)
    model, batches, _, _ = toy()
    with pytest.raises(ValueError, match="nothing to train"):
        fit(model, [], batches, TrainConfig())
