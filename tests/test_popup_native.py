"""The native popup (radix select) and threshold masks against the reference and the
Python-sorted oracle: ties, NaN, ±0, ±inf, every dtype, chunked (parallel) sizes, opcheck."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import impresslearn
from cases import DTYPES, popup_k_oracle, popup_oracle
from impresslearn import native, ops, reference
from impresslearn.format import unpack_bits
from native_cases import requires_native

pytestmark = requires_native

SPECIAL = torch.tensor([float("nan"), -float("nan"), -0.0, 0.0, float("inf"), -float("inf"), 1e-40, -1e-40])


def _scores(numel, seed, levels, special, dtype):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(numel, generator=g)
    if levels:  # few distinct values: many ties at the threshold
        scores = torch.randint(0, levels, (numel,), generator=g).float() - levels // 2
    if special:
        where = torch.randint(0, numel, (max(1, numel // 4),), generator=g)
        scores[where] = SPECIAL[torch.randint(0, len(SPECIAL), (len(where),), generator=g)]
    return scores.to(dtype)


@given(numel=st.integers(1, 400), density=st.floats(1e-3, 1.0), seed=st.integers(0, 2**31 - 1),
       levels=st.sampled_from([0, 1, 3, 50]), special=st.booleans(), dtype=st.sampled_from(DTYPES))
def test_popup_mask_matches_oracle(numel, density, seed, levels, special, dtype):
    scores = _scores(numel, seed, levels, special, dtype)
    k = popup_k_oracle(numel, density)
    out = native.popup_mask(scores, k)
    assert out.dtype == dtype and int(out.count_nonzero()) == k
    assert torch.equal(out, reference.popup_mask(scores, k))  # NaN counts as largest, as torch.sort has it
    if not scores.isnan().any():  # Python's sort has no order for NaN
        assert torch.equal(out, popup_oracle(scores, k))


@given(rows=st.integers(1, 9), cols=st.integers(1, 80), density=st.floats(1e-3, 1.0),
       seed=st.integers(0, 2**31 - 1), levels=st.sampled_from([0, 2, 7]), dtype=st.sampled_from(DTYPES))
def test_popup_pack_matches_reference(rows, cols, density, seed, levels, dtype):
    scores = _scores(rows * cols, seed, levels, False, dtype).reshape(rows, cols)
    k = popup_k_oracle(rows * cols, density)
    words = native.popup_pack(scores, k)
    assert words.dtype == torch.int32 and words.shape == (1, rows, (cols + 31) // 32)
    assert torch.equal(words, reference.popup_pack(scores, k))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("levels", [0, 4])
def test_popup_across_chunks(dtype, levels):
    # Enough scores for several histogram chunks (one per thread) and a tie cut inside a later chunk.
    scores = _scores(150_001, 7, levels, False, dtype)
    for k in (1, 40_000, 75_001, 150_001):
        out = native.popup_mask(scores, k)
        assert torch.equal(out, reference.popup_mask(scores, k))
        words = native.popup_pack(scores.reshape(1, -1), k)
        assert torch.equal(unpack_bits(words, scores.numel()).reshape(-1).to(dtype), out)


def test_ties_go_to_lower_index():
    scores = torch.tensor([1.0, 2.0, 2.0, 2.0, 0.0, 2.0])
    assert native.popup_mask(scores, 2).tolist() == [0, 1, 1, 0, 0, 0]
    assert native.popup_mask(torch.tensor([0.0, -0.0, 0.0]), 2).tolist() == [1, 1, 0]  # -0 ties with +0


@pytest.mark.parametrize("dtype", DTYPES)
def test_threshold_mask(dtype):
    scores = torch.cat([SPECIAL, torch.randn(300)]).to(dtype)
    out = native.threshold_mask(scores)
    assert out.dtype == dtype
    assert torch.equal(out, reference.threshold_mask(scores))


def test_native_rejects_bad_k():
    with pytest.raises(RuntimeError, match="k must lie"):
        native.popup_mask(torch.randn(10), 11)
    with pytest.raises(RuntimeError, match="k must lie"):
        native.popup_pack(torch.randn(2, 5), 0)
    with pytest.raises(RuntimeError, match="floating point"):
        native.popup_mask(torch.arange(10), 3)


def test_layers_straight_through_on_native():
    scores = torch.randn(6, 11, requires_grad=True)
    g = torch.randn(6, 11)
    with impresslearn.backend("native"):
        m = ops.popup_mask(scores.abs(), 0.25)
        (m * g).sum().backward()
    assert torch.equal(m, popup_oracle(scores.detach().abs(), 17))
    torch.testing.assert_close(scores.grad, torch.sign(scores.detach()) * g)


def test_opcheck_native_ops():
    scores = torch.randn(7, 9)
    for dtype in (torch.float32, torch.float64):
        s = scores.to(dtype)
        torch.library.opcheck(torch.ops.impresslearn_native.popup_mask.default, (s, 19))
        torch.library.opcheck(torch.ops.impresslearn_native.popup_pack.default, (s, 19))
        torch.library.opcheck(torch.ops.impresslearn_native.threshold_mask.default, (s,))
