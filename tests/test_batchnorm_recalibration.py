"""Re-estimating a task's BatchNorm statistics: the plain average over the batches given, with
the final parameters; other tasks and the momentum untouched."""

import torch

from impresslearn import convert
from impresslearn.continual.batchnorm import recalibrate
from impresslearn.models import cifar_resnet18


def test_recalibrate_averages_batch_statistics_of_one_task():
    model = convert(cifar_resnet18(num_classes=3, width=2), "supermask", density=0.5, num_tasks=2)
    batches = [(torch.randn(4, 3, 8, 8) * 2 + 1, torch.zeros(4, dtype=torch.long)) for _ in range(3)]
    other = model.bn1.bns[0].running_mean.clone()
    model.eval()
    assert recalibrate(model, 1, iter(batches), max_batches=2) == 2
    bn = model.bn1.bns[1]
    # The stem's BatchNorm sees conv1(x) directly: its mean is the average of the two batch means.
    with torch.no_grad():
        means = [model.conv1(x).mean((0, 2, 3)) for x, _ in batches[:2]]
    torch.testing.assert_close(bn.running_mean, (means[0] + means[1]) / 2, rtol=1e-5, atol=1e-6)
    assert int(bn.num_batches_tracked) == 2 and bn.momentum == 0.1 and not model.training
    assert torch.equal(model.bn1.bns[0].running_mean, other)
    assert recalibrate(model, 1, iter(batches), max_batches=0) == 0
