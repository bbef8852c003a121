"""The packed format of docs/design.md §3.1, checked against bit arithmetic on Python ints."""

import math

import pytest
import torch
from conftest import DEVICES
from hypothesis import given
from hypothesis import strategies as st

from impresslearn import PackedMasks, pack_masks


def expected_word(bits: list[bool]) -> int:
    """The int32 value of up to 32 bits, bit 0 least significant, as two's complement."""
    v = sum(1 << j for j, b in enumerate(bits) if b)
    return v - (1 << 32) if v >= 1 << 31 else v


@st.composite
def masks_strategy(draw):
    ndim = draw(st.integers(1, 4))
    if ndim == 1:
        wshape = (draw(st.integers(1, 40)),)
    else:
        wshape = (draw(st.integers(1, 6)),) + tuple(draw(st.integers(1, 9 if ndim > 2 else 75)) for _ in range(ndim - 1))
    t = draw(st.integers(1, 70))
    seed = draw(st.integers(0, 2**31 - 1))
    p = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
    g = torch.Generator().manual_seed(seed)
    return torch.rand((t, *wshape), generator=g) < p


@pytest.mark.parametrize("device", DEVICES)
@given(masks=masks_strategy())
def test_round_trip_and_layout(device, masks):
    masks = masks.to(device)
    packed = pack_masks(masks)
    t, wshape = masks.shape[0], masks.shape[1:]
    rows = wshape[0]
    cols = math.prod(wshape[1:]) if len(wshape) > 1 else 1
    nw = -(-cols // 32)
    assert packed.words.dtype == torch.int32
    assert tuple(packed.words.shape) == (t, rows, nw)
    assert packed.shape == wshape and packed.num_masks == t
    assert packed.nbytes == t * rows * nw * 4
    assert torch.equal(packed.unpack(), masks)
    assert packed.unpack().dtype == torch.bool
    # The bits themselves, for a few (t, r, w) positions, from plain integer arithmetic.
    flat = masks.reshape(t, rows, cols).cpu().tolist()
    words = packed.words.cpu()
    for ti in {0, t - 1}:
        for r in {0, rows - 1}:
            for w in {0, nw - 1}:
                bits = flat[ti][r][32 * w: 32 * w + 32]
                assert int(words[ti, r, w]) == expected_word(bits)


def test_padding_bits_are_zero():
    masks = torch.ones(2, 3, 33, dtype=torch.bool)
    words = pack_masks(masks).words
    assert (words[..., 0] == -1).all()  # 32 ones: all bits set
    assert (words[..., 1] == 1).all()  # one real bit, 31 zero padding bits


def test_rows_are_padded_separately():
    masks = torch.zeros(1, 2, 5, dtype=torch.bool)
    masks[0, 1, 0] = True  # first element of row 1 is bit 0 of row 1's own word
    assert pack_masks(masks).words.tolist() == [[[0], [1]]]


def test_accepts_integer_and_float_01():
    m = torch.rand(3, 4, 5) < 0.5
    for dtype in (torch.uint8, torch.int32, torch.int64, torch.float16, torch.float32):
        assert pack_masks(m.to(dtype)) == pack_masks(m)


def test_conv_weight_rows_are_output_channels():
    m = torch.rand(2, 4, 3, 3, 3) < 0.5
    packed = pack_masks(m)
    assert tuple(packed.words.shape) == (2, 4, 1)
    assert torch.equal(pack_masks(m.reshape(2, 4, 27)).words, packed.words)


def test_to_subset_and_cat():
    m = torch.rand(5, 3, 40) < 0.5
    packed = pack_masks(m)
    assert torch.equal(packed[2].unpack(), m[2:3])
    assert torch.equal(packed[-1].unpack(), m[4:5])
    assert torch.equal(packed[1:4].unpack(), m[1:4])
    assert PackedMasks.cat([packed[:2], packed[2:]]) == packed
    assert packed.to("cpu") == packed


@pytest.mark.parametrize(
    "bad, error",
    [
        (torch.tensor([[0, 2]]), ValueError),  # not binary
        (torch.tensor([[0.5, 1.0]]), ValueError),
        (torch.zeros(0, 3), ValueError),  # no masks
        (torch.zeros(2, 0), ValueError),  # empty weight
        (torch.zeros(3), ValueError),  # no weight dimension
        (torch.zeros(2, 3, dtype=torch.complex64), TypeError),
        ([[0, 1]], TypeError),
    ],
)
def test_bad_input(bad, error):
    with pytest.raises(error):
        pack_masks(bad)


def test_packed_masks_checks_words():
    with pytest.raises(TypeError):
        PackedMasks(torch.zeros(1, 2, 1, dtype=torch.int64), (2, 5))
    with pytest.raises(ValueError):
        PackedMasks(torch.zeros(1, 2, 2, dtype=torch.int32), (2, 5))  # 5 cols need 1 word
    with pytest.raises(ValueError):
        PackedMasks.cat([pack_masks(torch.ones(1, 2, 3)), pack_masks(torch.ones(1, 3, 2))])
