"""A task's masks in their smallest exact form (impresslearn.coding): every coded mask
decodes to the same bits, the coder comes within a few bytes of the entropy bound, and the three
forms are counted as the papers and the library count them."""

import math

import pytest
import torch

from impresslearn.coding import code_levels, code_mask, decode_levels, decode_mask, mask_forms, task_forms


def mask(shape, density, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) < density


@pytest.mark.parametrize("shape", [(1,), (7,), (33, 5), (300, 784), (17, 3, 3, 3)])
@pytest.mark.parametrize("density", [0.0, 0.003, 0.1, 0.5, 0.97, 1.0])
def test_a_coded_mask_decodes_to_the_same_bits(shape, density):
    bits = mask(shape, density)
    data = code_mask(bits)
    assert torch.equal(decode_mask(data, bits.numel()), bits.reshape(-1))


def test_the_coder_reaches_the_entropy_bound_and_beats_the_other_forms():
    bits = mask((300, 784), 0.1)  # LeNet-300-100's first layer at SupSup's density 0.1
    forms = mask_forms(bits)
    n, k = bits.numel(), int(bits.sum())
    h = -(k / n * math.log2(k / n) + (1 - k / n) * math.log2(1 - k / n))
    assert forms["entropy"] == math.ceil(n * h / 8)
    assert forms["entropy"] <= forms["coded"] <= 1.002 * forms["entropy"] + 16  # a few words over the bound
    assert forms["packed"] == 300 * 25 * 4 and forms["sparse"] == 2 * k
    assert forms["coded"] < forms["packed"] / 2 < forms["sparse"]


def test_a_dense_or_structured_mask_takes_the_smaller_coder():
    stripes = torch.zeros(64, 640, dtype=torch.bool)
    stripes[:, ::2] = True  # density 0.5 but fully predictable: lzma's form wins over the range coder's
    data = code_mask(stripes)
    assert data[:1] == b"L" and len(data) < 200
    assert torch.equal(decode_mask(data, stripes.numel()), stripes.reshape(-1))


def test_a_damaged_or_foreign_coded_mask_is_one_sentence():
    data = code_mask(mask((40, 40), 0.2))
    with pytest.raises(ValueError, match="not a mask of this size"):
        decode_mask(data, 10)
    with pytest.raises(ValueError, match="at least 9 bytes"):
        decode_mask(data[:4], 1600)
    with pytest.raises(ValueError, match="unknown coded-mask form"):
        decode_mask(b"Q" + data[1:], 1600)


def test_task_forms_add_the_layers():
    masks = {"a": mask((30, 50), 0.1, 1), "b": mask((10, 30), 0.1, 2)}
    total = task_forms(masks)
    assert total == {f: mask_forms(masks["a"])[f] + mask_forms(masks["b"])[f] for f in total}


@pytest.mark.parametrize("levels", [1, 3, 7, 31, 127])
@pytest.mark.parametrize("count", [0, 1, 5, 1500, 4099])
def test_coded_levels_decode_to_the_same_codes(levels, count):
    g = torch.Generator().manual_seed(levels * 7 + count)
    c = (torch.randn(count, generator=g) * levels / 3).round().clamp(-levels, levels).to(torch.int8)
    data = code_levels(c, levels)
    assert torch.equal(decode_levels(data, count, levels), c)


def test_coded_levels_cost_their_entropy_and_a_few_bytes():
    """The adaptive model stores nothing but the codes and comes within a few bytes of their
    empirical entropy: a peaked distribution of 4-bit codes costs well under 4 bits each."""
    g = torch.Generator().manual_seed(0)
    c = (torch.randn(5, 300, generator=g) * 1.5).round().clamp(-7, 7).to(torch.int8)
    _, counts = c.unique(return_counts=True)
    p = counts.double() / c.numel()
    entropy = float(-(counts * p.log2()).sum() / 8)
    data = code_levels(c, 7)
    assert entropy <= len(data) <= entropy + 24
    assert len(data) < 0.7 * c.numel() * 4 / 8
    assert len(code_levels(torch.zeros(2000, dtype=torch.int8), 7)) <= 16  # a constant layer: a few bytes


def test_codes_out_of_range_and_damaged_bytes_are_refused():
    with pytest.raises(ValueError, match=r"codes must lie in \[-3, 3\]"):
        code_levels(torch.tensor([4], dtype=torch.int8), 3)
    with pytest.raises(ValueError, match="whole 32-bit words"):
        decode_levels(b"abc", 3, 3)
