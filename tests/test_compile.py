"""torch.compile of whole ImpressLinear / SupermaskLinear models, forward and backward.

The ops are opaque `torch.library` custom ops that choose their backend when they run, so one
compiled model serves every backend: it is compiled once and run under each available one.
"""

import pytest
import torch
import torch.nn as nn
from cases import DEVICE

import impresslearn
from impresslearn.layers import ImpressLinear, SupermaskLinear, random_basis

BACKENDS = [name for name in ("reference", "triton") if name in impresslearn.available_backends()]


def impress_model():
    torch.manual_seed(0)
    return nn.Sequential(
        ImpressLinear(37, 20, random_basis((20, 37), 9, 0.3, seed=1), bias=True, per_channel=True, seed=1),
        nn.ReLU(),
        ImpressLinear(20, 5, random_basis((5, 20), 3, 0.5, seed=2), seed=2),
    )


def supermask_model():
    torch.manual_seed(0)
    return nn.Sequential(SupermaskLinear(37, 20, density=0.3, seed=1), nn.ReLU(), SupermaskLinear(20, 5, density=0.5, seed=2))


def step(model, x):
    """Loss and the gradients of every trainable parameter (alphas or scores)."""
    model.zero_grad()
    loss = model(x).logsumexp(dim=1).mean()
    loss.backward()
    return [loss.detach()] + [p.grad.clone() for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize("make", [impress_model, supermask_model], ids=["impress", "supermask"])
def test_compiled_model_matches_eager(make):
    model = make().to(DEVICE)
    compiled = torch.compile(model)
    x = torch.randn(6, 37, device=DEVICE)
    with impresslearn.backend("reference"):
        eager = step(model, x)
    for name in BACKENDS:
        with impresslearn.backend(name):
            got = step(compiled, x)
        assert len(got) == len(eager)
        for g, e in zip(got, eager):
            torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
