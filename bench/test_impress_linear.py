"""impress_linear (F.linear(x, W_eff, bias) with W_eff formed from the packed words), forward and
forward + backward (the gradients of x and alpha), against the dense baselines and the floor
(F.linear with W_eff precomputed); and one ImpressLearn training step of LeNet-300-100.
Results are checked against the reference's."""

import pytest
import torch


def assert_close(out, ref, rel):
    err = (out.cpu().double() - ref.double()).abs().max().item()
    assert err <= rel * ref.double().abs().max().item(), f"max error {err:.3g} vs reference"


@pytest.mark.bench("impress_linear")
def test_impress_linear(run, expected, param):
    out = run(param)
    assert out.shape == (param.case.batch, param.case.rows)
    assert_close(out, expected(param), 1e-4)


@pytest.mark.bench("impress_linear_backward")
def test_impress_linear_backward(run, expected, param):
    grad_x, grad_other = run(param)
    ref_x, ref_alpha = expected(param)
    assert_close(grad_x, ref_x, 1e-4)
    if param.method.name != "floor":  # the floor's second gradient is that of W_eff
        assert_close(grad_other, ref_alpha, 1e-4)


@pytest.mark.bench("lenet_step")
def test_lenet_step(run, param):
    loss = run(param)
    assert loss.dim() == 0 and torch.isfinite(loss)
