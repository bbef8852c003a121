"""pack_bits / unpack_bits (the packed format's codec) on every backend that has them, against
the bit-by-bit oracle of tests/cases.py; pack_masks / PackedMasks.unpack routed through the ops.

Triton has no packing primitives (the op layer runs the reference's for them). Empty inputs
(docs/design.md §5.4) close the file.
"""

import pytest
import torch
from cases import backend_grid, case_id, only, pack_oracle

import impresslearn
from impresslearn import format, ops

PACKING = ("reference", "native")
SHAPES = [(1, 1, 1), (3, 5, 33), (7, 1, 64), (2, 13, 95), (70, 3, 31), (1, 40, 2085)]
BIT_DTYPES = [
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int32,
    torch.int64,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
]


@pytest.mark.parametrize("dtype", BIT_DTYPES, ids=case_id)
@pytest.mark.parametrize("flavour, shape", backend_grid([(s,) for s in SHAPES], backends=PACKING))
def test_pack_and_unpack_match_oracle(flavour, shape, dtype):
    bits = torch.rand(shape, generator=torch.Generator().manual_seed(shape[2])) < 0.4
    words = flavour("pack_bits", bits.to(dtype))
    assert words.dtype == torch.int32 and words.shape == (*shape[:2], (shape[2] + 31) // 32)
    assert torch.equal(words, pack_oracle(bits))
    assert torch.equal(flavour("unpack_bits", words, shape[2]), bits)


# ops.pack_bits promises "nonzero = 1" (NaN included) on every backend.
@pytest.mark.parametrize("flavour", backend_grid(backends=PACKING))
def test_nonzero_counts_as_one(flavour):
    bits = torch.tensor([[[0.0, 2.0, -1.0, float("nan"), 0.0]]])
    assert flavour("pack_bits", bits).tolist() == [[[0b01110]]]


@only("native")
def test_native_rejects_bad_input():
    from impresslearn import native

    with pytest.raises(RuntimeError, match="shape"):
        native.pack_bits(torch.zeros(3, 4, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="cannot hold"):
        native.unpack_bits(torch.zeros(1, 2, 2, dtype=torch.int32), 70)


@pytest.mark.parametrize("flavour", backend_grid())
def test_pack_masks_runs_on_the_backends(flavour):
    masks = torch.rand(9, 6, 2, 3, 3, generator=torch.Generator().manual_seed(0)) < 0.3
    calls = []
    spy = lambda f: lambda *a: calls.append(f.__name__) or f(*a)  # noqa: E731
    with impresslearn.backend(flavour.backend):
        packed = format.pack_masks(masks.to(flavour.device), pack=spy(ops.pack_bits))
        unpacked = packed.unpack(spy(ops.unpack_bits))
        assert ops.pack_masks(masks.to(flavour.device)) == packed
        assert torch.equal(ops.unpack_masks(packed), unpacked)
    assert calls == ["pack_bits", "unpack_bits"]  # the codec given is the one used
    assert torch.equal(packed.words.cpu(), pack_oracle(masks.reshape(9, 6, -1)))
    assert torch.equal(unpacked.cpu(), masks)


def test_the_format_layer_packs_the_same_whatever_is_imported():
    """format.pack_masks is the pure-PyTorch codec unless told otherwise: importing the op layer
    changes nothing in it (no codec swapped at import)."""
    masks = torch.rand(2, 5, 37, generator=torch.Generator().manual_seed(1)) < 0.5
    assert torch.equal(format.pack_masks(masks).words, format.pack_bits(masks))
    assert format.pack_masks.__defaults__ == (format.pack_bits,)
    assert format.PackedMasks.unpack.__defaults__ == (format.unpack_bits,)


# --------------------------------------------------------------------------- edge cases (docs/design.md §5.4)

EMPTY_SHAPES = [(0, 3, 5), (2, 0, 5), (2, 3, 0), (0, 0, 0)]


@pytest.mark.parametrize("flavour, shape", backend_grid([(s,) for s in EMPTY_SHAPES], backends=PACKING))
def test_empty_bits_pack_to_empty_words(flavour, shape):
    """No masks, no rows or no columns: words and bits of the right (empty) shapes, on every backend."""
    t, rows, cols = shape
    words = flavour("pack_bits", torch.zeros(shape, dtype=torch.bool))
    assert words.dtype == torch.int32 and words.shape == (t, rows, (cols + 31) // 32)
    bits = flavour("unpack_bits", words, cols)
    assert bits.dtype == torch.bool and bits.shape == shape


@pytest.mark.parametrize("flavour", backend_grid())
def test_codec_shapes_through_ops(flavour):
    """Through the op layer (Triton runs the reference's codec): empty inputs give empty outputs,
    anything but [T, rows, cols] bits is one ValueError."""
    with impresslearn.backend(flavour.backend):
        for shape in EMPTY_SHAPES:
            words = ops.pack_bits(torch.zeros(shape, dtype=torch.bool, device=flavour.device))
            assert words.shape == (shape[0], shape[1], (shape[2] + 31) // 32)
            assert ops.unpack_bits(words, shape[2]).shape == shape
        for bad in [torch.tensor(True), torch.ones(3, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool)]:
            with pytest.raises(ValueError, match="shape"):
                ops.pack_bits(bad.to(flavour.device))
