"""The packed format of docs/design.md §3.1, checked against bit arithmetic on Python ints."""

import math

import numpy as np
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
                bits = flat[ti][r][32 * w : 32 * w + 32]
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


# --------------------------------------------------------------------------- PackedMasks as a sequence
# The model: a Python list of bool tensors, one per mask, indexed with Python's own list rules.
# PackedMasks keeps the mask axis (an integer gives a one-mask PackedMasks), so the expected
# result of an index is always a list of masks: [model[i]] for an integer, model[s] for a slice,
# [model[i] for i in idx] for an index array. A selection of no masks is a ValueError (a
# PackedMasks holds at least one mask); bools and tuples are TypeErrors.

NP_INTS = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.intp]
TORCH_INTS = [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8]


@st.composite
def sequence_case(draw):
    t = draw(st.integers(1, 9))
    shape = draw(st.sampled_from([(1,), (3, 5), (2, 40), (2, 3, 3)]))
    seed = draw(st.integers(0, 2**31 - 1))
    masks = torch.rand((t, *shape), generator=torch.Generator().manual_seed(seed)) < 0.5
    return masks


small_ints = st.integers(-12, 12)


def _as_numpy_int(draw, v):
    dtype = draw(st.sampled_from(NP_INTS))
    if v < 0 and np.issubdtype(dtype, np.unsignedinteger):
        dtype = np.int64
    return dtype(v)


INDEX_KINDS = [
    "int",
    "numpy_int",
    "tensor_0d",
    "numpy_0d",
    "slice",
    "list",
    "tensor",
    "numpy",
    "bool",
    "numpy_bool",
    "bool_tensor",
    "tuple",
    "float",
]


@st.composite
def an_index(draw, kind):
    """An index of one kind, of those PackedMasks takes or refuses."""
    if kind == "int":
        return draw(small_ints)
    if kind == "numpy_int":
        return _as_numpy_int(draw, draw(small_ints))
    if kind == "tensor_0d":
        return torch.tensor(draw(small_ints), dtype=draw(st.sampled_from([torch.int32, torch.int64])))
    if kind == "numpy_0d":
        return np.array(draw(small_ints))
    if kind == "slice":
        part = st.one_of(st.none(), small_ints)
        return slice(draw(part), draw(part), draw(st.one_of(st.none(), st.integers(-4, 4))))
    values = draw(st.lists(small_ints, max_size=6))
    if kind == "list":
        return values
    if kind == "tensor":
        dtype = draw(st.sampled_from(TORCH_INTS))
        if dtype == torch.uint8:
            values = [abs(v) for v in values]
        return torch.tensor(values, dtype=dtype)
    if kind == "numpy":
        return np.array(values, dtype=np.int64)
    if kind == "bool":
        return draw(st.booleans())
    if kind == "numpy_bool":
        return np.bool_(draw(st.booleans()))
    if kind == "bool_tensor":
        return torch.tensor(draw(st.lists(st.booleans(), min_size=0, max_size=4)))
    if kind == "tuple":
        return tuple(values)
    return draw(st.floats(-3, 3))


def model_result(model: list, index, kind):
    """What the list model selects for `index` (a list of masks), or the exception type expected."""
    if kind in ("bool", "numpy_bool", "bool_tensor", "tuple", "float"):
        return TypeError
    try:
        if kind == "slice":
            picked = model[index]
        elif kind in ("list", "tensor", "numpy"):
            picked = [model[int(i)] for i in index]
        else:
            picked = [model[int(index)]]
    except IndexError:
        return IndexError
    except ValueError:  # a zero step
        return ValueError
    return picked if picked else ValueError


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_indexing_matches_a_list_of_masks(kind):
    @given(masks=sequence_case(), index=an_index(kind))
    def run(masks, index):
        check_index(masks, index, kind)

    run()


def check_index(masks, index, kind):
    packed = pack_masks(masks)
    expected = model_result(list(masks), index, kind)
    if isinstance(expected, type):
        with pytest.raises(expected):
            packed[index]
        return
    got = packed[index]
    assert isinstance(got, PackedMasks) and got.shape == packed.shape
    assert len(got) == got.num_masks == len(expected)
    assert torch.equal(got.unpack(), torch.stack(expected))
    assert got == pack_masks(torch.stack(expected))


@given(masks=sequence_case())
def test_len_iteration_and_reversal_follow_the_list(masks):
    packed = pack_masks(masks)
    model = list(masks)
    assert len(packed) == len(model)
    items = list(packed)
    assert len(items) == len(model)
    for got, want in zip(items, model):
        assert isinstance(got, PackedMasks) and got.num_masks == 1
        assert torch.equal(got.unpack()[0], want)
    assert [torch.equal(a.unpack()[0], b) for a, b in zip(reversed(packed), reversed(model))] == [True] * len(model)
    assert PackedMasks.cat(items) == packed
    assert packed[len(model) - 1] == packed[-1]


def test_views_and_copies():
    """A positive-step slice and an integer index are views of the words; reversals and index arrays copies."""
    packed = pack_masks(torch.rand(6, 3, 40, generator=torch.Generator().manual_seed(0)) < 0.5)
    base = packed.words.untyped_storage().data_ptr()
    for index in (2, -1, slice(1, 5), slice(None, None, 2)):
        assert packed[index].words.untyped_storage().data_ptr() == base
    for index in (slice(None, None, -1), [0, 2], torch.tensor([1])):
        assert packed[index].words.untyped_storage().data_ptr() != base
    assert packed[[0, 0]].num_masks == 2  # repeats allowed


@pytest.mark.parametrize(
    "index, error, message",
    [
        (5, IndexError, "mask index 5 is out of range for 5 masks"),
        (-6, IndexError, "mask index -6 is out of range"),
        ([0, 9], IndexError, "mask index 9 is out of range"),
        (np.int64(7), IndexError, "mask index 7"),
        (True, TypeError, "not bool"),
        (np.False_, TypeError, "not bool"),
        (torch.tensor(True), TypeError, "torch.bool"),
        (torch.tensor([True, False, True, False, True]), TypeError, "boolean mask"),
        ((0, 1), TypeError, "tuple"),
        (1.0, TypeError, "not float"),
        (None, TypeError, "not NoneType"),
        (torch.tensor([0.0]), TypeError, "must hold integers"),
        ([0, 1.5], TypeError, "must hold integers"),
        (torch.tensor([[0, 1]]), ValueError, "must be 1-D"),
        (slice(3, 3), ValueError, "selects none of the 5 masks"),
        (slice(None, None, 0), ValueError, "step of zero"),
        ([], ValueError, "selects none"),
    ],
    ids=str,
)
def test_index_errors_name_what_was_wrong(index, error, message):
    packed = pack_masks(torch.ones(5, 2, 3, dtype=torch.bool))
    with pytest.raises(error, match=message):
        packed[index]


@pytest.mark.parametrize("device", DEVICES)
def test_index_arrays_on_any_device(device):
    masks = torch.rand(4, 2, 33, generator=torch.Generator().manual_seed(1)) < 0.5
    packed = pack_masks(masks.to(device))
    got = packed[torch.tensor([3, -4], device=device)]
    assert got.device == packed.device and torch.equal(got.unpack().cpu(), masks[[3, 0]])
