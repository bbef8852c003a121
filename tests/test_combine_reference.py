"""The reference combine and its alpha gradient against the dense oracles in cases.py."""

import pytest
import torch

from cases import DTYPES, MASK_COUNTS, SHAPES, TOL, combine_oracle, grad_alpha_oracle, make_combine_inputs
from impresslearn import pack_masks, reference


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("t", MASK_COUNTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_combine_matches_oracle(shape, t, per_channel):
    weight, masks, alpha = make_combine_inputs(shape, t, per_channel=per_channel, seed=t)
    out = reference.combine(weight, pack_masks(masks).words, alpha)
    assert out.shape == weight.shape and out.dtype == weight.dtype
    torch.testing.assert_close(out.double(), combine_oracle(weight, masks, alpha), **TOL[torch.float32])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_channel", [False, True])
def test_combine_dtypes(dtype, per_channel):
    weight, masks, alpha = make_combine_inputs((13, 95), 9, dtype=dtype, per_channel=per_channel)
    out = reference.combine(weight, pack_masks(masks).words, alpha)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), combine_oracle(weight, masks, alpha), **TOL[dtype])


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("t", MASK_COUNTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_grad_alpha_matches_oracle(shape, t, per_channel):
    weight, masks, alpha = make_combine_inputs(shape, t, per_channel=per_channel, seed=t + 1)
    grad = torch.randn(shape)
    out = reference.combine_grad_alpha(grad, weight, pack_masks(masks).words, alpha)
    assert out.shape == alpha.shape and out.dtype == alpha.dtype
    torch.testing.assert_close(out.double(), grad_alpha_oracle(grad, weight, masks, alpha), rtol=1e-5, atol=1e-4)
