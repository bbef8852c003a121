"""The dense SupSup-style baselines compute the same effective weight as the packed ops."""

import pytest
import torch

from cases import combine_oracle, make_combine_inputs
from impresslearn import dense, pack_masks


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("shape", [(7, 33), (5, 3, 3, 3)])
def test_dense_baselines_match_oracle(shape, per_channel):
    weight, masks, alpha = make_combine_inputs(shape, 9, per_channel=per_channel)
    stacked = dense.stack_masks(pack_masks(masks))
    assert stacked.shape == masks.shape and stacked.dtype == torch.float32
    expected = combine_oracle(weight, masks, alpha).float()
    torch.testing.assert_close(dense.combine_dense(weight, stacked, alpha), expected)
    torch.testing.assert_close(dense.combine_matvec(weight, stacked, alpha), expected)
