"""combine (W ⊙ Σ_t alpha_t M_t) and its alpha gradient: the backends, the native inner loops and
Triton's coefficient paths, against the dense baselines (SupSup's broadcast, one matrix-vector
product), on ResNet's 512x512x3x3 layer at T = 1 ... 250. Each result is checked against the
reference's, so a baseline that drifts fails here instead of being timed."""

import pytest
import torch


def assert_close(out, ref, rel):
    err = (out.cpu().double() - ref.double()).abs().max().item()
    assert err <= rel * ref.double().abs().max().item(), f"max error {err:.3g} vs reference"


@pytest.mark.bench("combine")
def test_combine(run, expected, param):
    out = run(param)
    assert out.shape == param.case.shape and out.dtype == torch.float32
    assert_close(out, expected(param), 1e-4)


@pytest.mark.bench("grad_alpha")
def test_combine_grad_alpha(run, expected, param):
    out = run(param)
    assert out.shape == (param.case.masks,)
    assert_close(out, expected(param), 1e-4)
