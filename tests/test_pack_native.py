"""Native packing and unpacking against the format's pure-PyTorch codec, and pack_masks /
PackedMasks.unpack routed through the backends."""

import pytest
import torch

import impresslearn
from impresslearn import format, native, ops, pack_masks
from native_cases import requires_native

pytestmark = requires_native

SHAPES = [(1, 1, 1), (3, 5, 33), (7, 1, 64), (2, 13, 95), (70, 3, 31), (1, 40, 2085)]
BIT_DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int32, torch.int64, torch.float16, torch.bfloat16,
              torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", BIT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_pack_and_unpack_match_format(shape, dtype):
    bits = torch.rand(shape) < 0.4
    words = native.pack_bits(bits.to(dtype))
    assert torch.equal(words, format.pack_bits(bits))
    assert torch.equal(native.unpack_bits(words, shape[2]), bits)


def test_nonzero_counts_as_one():
    bits = torch.tensor([[[0.0, 2.0, -1.0, float("nan"), 0.0]]])
    assert native.pack_bits(bits).tolist() == [[[0b01110]]]


def test_native_rejects_bad_input():
    with pytest.raises(RuntimeError, match="shape"):
        native.pack_bits(torch.zeros(3, 4, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="cannot hold"):
        native.unpack_bits(torch.zeros(1, 2, 2, dtype=torch.int32), 70)


def test_pack_masks_runs_on_the_backends():
    masks = torch.rand(9, 6, 2, 3, 3) < 0.3
    assert format._codec["pack"] is ops.pack_bits and format._codec["unpack"] is ops.unpack_bits
    with impresslearn.backend("native"):
        packed = pack_masks(masks)
        unpacked = packed.unpack()
    with impresslearn.backend("reference"):
        assert packed == pack_masks(masks)
    assert torch.equal(unpacked, masks)


def test_opcheck():
    bits = torch.rand(3, 5, 40) < 0.5
    words = format.pack_bits(bits)
    torch.library.opcheck(torch.ops.impresslearn_native.pack_bits.default, (bits,))
    torch.library.opcheck(torch.ops.impresslearn_native.unpack_bits.default, (words, 40))
    for name in ("reference", "native"):
        with impresslearn.backend(name):
            torch.library.opcheck(ops._pack_bits, (bits,))
            torch.library.opcheck(ops._unpack_bits, (words, 40))
