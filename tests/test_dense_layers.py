"""The dense SupSup-style twin of the Impress layers (the memory benchmark's baseline) computes
what the packed layers compute, from stacked float masks."""

import copy

import pytest
import torch
import torch.nn as nn

from impresslearn import convert, set_task
from impresslearn.dense_layers import DenseImpressConv2d, DenseImpressLinear, densify
from impresslearn.models import cifar_resnet18


@pytest.mark.parametrize("per_channel", [False, True])
def test_densified_model_matches_the_packed_one(per_channel):
    torch.manual_seed(0)
    packed = convert(cifar_resnet18(num_classes=7, width=4), "impress", basis_size=3, density=0.3,
                     per_channel=per_channel, num_tasks=2, seed=1)
    with torch.no_grad():
        for m in packed.modules():
            if hasattr(m, "alpha"):
                for a in m.alpha:
                    a.uniform_(-1, 1)
    dense = densify(copy.deepcopy(packed))
    assert not any(n.endswith("basis_words") for n, _ in dense.named_buffers())
    convs = [m for m in dense.modules() if isinstance(m, DenseImpressConv2d)]
    assert len(convs) == 20 and isinstance(dense.fc, DenseImpressLinear)
    assert convs[0].stacked.shape == (3, 4, 3, 3, 3) and convs[0].stacked.dtype == torch.float32
    x = torch.randn(5, 3, 32, 32)
    for task in (0, 1):
        set_task(packed, task)
        set_task(dense, task)
        packed.train(), dense.train()
        out_p, out_d = packed(x), dense(x)
        torch.testing.assert_close(out_d, out_p, rtol=1e-4, atol=1e-4)
        out_p.square().sum().backward()
        out_d.square().sum().backward()
    for (n, p), (_, d) in zip(packed.named_parameters(), dense.named_parameters()):
        torch.testing.assert_close(d.grad, p.grad, rtol=1e-3, atol=1e-3, msg=n)


def test_densify_needs_impress_layers():
    with pytest.raises(ValueError, match="no Impress layers"):
        densify(nn.Sequential(nn.Linear(3, 2)))
