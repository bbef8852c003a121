"""The reference popup / threshold masks against Python-sorted oracles."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from cases import popup_k_oracle, popup_oracle
from impresslearn import ops, reference
from impresslearn.format import unpack_bits


@given(numel=st.integers(1, 300), density=st.floats(1e-3, 1.0), seed=st.integers(0, 2**31 - 1),
       levels=st.sampled_from([0, 3, 50]))
def test_popup_matches_oracle(numel, density, seed, levels):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(numel, generator=g)
    if levels:  # few distinct values: many ties at the threshold
        scores = torch.randint(0, levels, (numel,), generator=g).float()
    k = popup_k_oracle(numel, density)
    assert ops.popup_k(numel, density) == k
    out = reference.popup_mask(scores, k)
    assert int(out.sum()) == k
    assert torch.equal(out, popup_oracle(scores, k))


def test_popup_ties_go_to_lower_index():
    scores = torch.tensor([1.0, 2.0, 2.0, 2.0, 0.0, 2.0])
    assert reference.popup_mask(scores, 2).tolist() == [0, 1, 1, 0, 0, 0]


@pytest.mark.parametrize("shape", [(7, 33), (5, 3, 3, 3), (17,)])
def test_popup_pack_is_packed_popup(shape):
    scores = torch.randn(shape)
    k = popup_k_oracle(scores.numel(), 0.3)
    words = reference.popup_pack(scores, k)
    rows = shape[0]
    cols = scores.numel() // rows
    assert torch.equal(unpack_bits(words, cols).reshape(shape).float(), popup_oracle(scores, k))


def test_threshold_mask():
    scores = torch.tensor([-1.0, -0.0, 0.0, 2.0, -3.0])
    assert reference.threshold_mask(scores).tolist() == [0, 1, 1, 1, 0]


@pytest.mark.parametrize("numel, density, k", [(10, 0.1, 1), (10, 1.0, 10), (3, 0.5, 2), (1000, 0.05, 50)])
def test_popup_k_counts(numel, density, k):
    assert ops.popup_k(numel, density) == k
