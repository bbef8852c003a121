"""The bit-packed mask format: `PackedMasks` and `pack_masks` (docs/design.md §3.1).

`T` binary masks over a weight of shape `wshape` are stored as `int32` words of shape
`[T, rows, ceil(cols / 32)]`, with `rows = wshape[0]` and `cols = prod(wshape[1:])` (1 for a
1-D weight). Bit `j` (least significant first) of `words[t, r, w]` is element
`32 * w + j` of row `r` of mask `t`. Each row is padded on its own, with zero bits, so a GEMM
walks a row's words contiguously along K.

The pure-PyTorch `pack_bits` / `unpack_bits` here define the layout; the kernel backends
reproduce it. `pack_masks` and `PackedMasks.unpack` take the codec as an argument, these two by
default, so that they behave the same whatever else is imported; `impresslearn.ops.pack_masks`
and `ops.unpack_masks` pass the backends' (the native CPU ops when built), and the layers above
call those.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Sequence

import numpy as np
import torch

WORD_BITS = 32

# Shifting an int32 word right by 0..31 and masking with 1 reads each bit; negative words
# (bit 31 set) shift arithmetically, which the mask with 1 makes harmless.
_BIT_SHIFTS: dict[torch.device, torch.Tensor] = {}


def _shifts(device: torch.device) -> torch.Tensor:
    if device not in _BIT_SHIFTS:
        _BIT_SHIFTS[device] = torch.arange(WORD_BITS, dtype=torch.int32, device=device)
    return _BIT_SHIFTS[device]


def rows_cols(wshape: Sequence[int]) -> tuple[int, int]:
    """(rows, cols) of the 2-D view a weight of shape `wshape` is packed as."""
    wshape = tuple(int(s) for s in wshape)
    if len(wshape) == 0:
        raise ValueError("a mask needs a weight shape of at least one dimension, got a scalar")
    rows = wshape[0]
    cols = math.prod(wshape[1:]) if len(wshape) > 1 else 1
    return rows, cols


def num_words(cols: int) -> int:
    return (cols + WORD_BITS - 1) // WORD_BITS


def words_shape(wshape: Sequence[int], num_masks: int = 1) -> tuple[int, int, int]:
    """The shape `[T, rows, ceil(cols / 32)]` of the packed words of `num_masks` masks of a weight
    of shape `wshape` (what every op that writes packed words, and its fake, returns)."""
    rows, cols = rows_cols(wshape)
    return int(num_masks), rows, num_words(cols)


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """Pack a bool (or any real: nonzero = 1) tensor `[T, rows, cols]` into int32 words
    `[T, rows, ceil(cols / 32)]`.

    Works in chunks of masks so that packing many large masks never holds more than a few
    dense copies of one chunk.
    """
    t, rows, cols = bits.shape
    nw = num_words(cols)
    out = torch.empty((t, rows, nw), dtype=torch.int32, device=bits.device)
    shifts = _shifts(bits.device)
    per_mask = max(rows * nw * WORD_BITS, 1)
    chunk = max(1, (1 << 24) // per_mask)
    for start in range(0, t, chunk):
        b = bits[start : start + chunk]
        if b.dtype != torch.bool:
            b = b != 0  # nonzero (NaN included) is 1, as the native and Triton codecs read it
        pad = nw * WORD_BITS - cols
        if pad:
            b = torch.nn.functional.pad(b, (0, pad))
        b = b.reshape(b.shape[0], rows, nw, WORD_BITS).to(torch.int32)
        # Bits are distinct powers of two, so their int32 sum is their OR and never
        # overflows: bit 31 contributes -2**31 and the rest at most 2**31 - 1.
        out[start : start + chunk] = (b << shifts).sum(dim=-1, dtype=torch.int32)
    return out


def unpack_bits(words: torch.Tensor, cols: int) -> torch.Tensor:
    """Unpack int32 words `[T, rows, nw]` into a bool tensor `[T, rows, cols]`."""
    t, rows, nw = words.shape
    bits = (words.unsqueeze(-1) >> _shifts(words.device)) & 1
    return bits.reshape(t, rows, nw * WORD_BITS)[..., :cols].bool()


class PackedMasks:
    """`T >= 1` binary masks over one weight, stored as 1 bit per weight.

    A sequence of masks: `len(packed)` is `T`, iterating gives each mask as a one-mask
    `PackedMasks`, and `packed[index]` selects masks (integers, slices, integer index arrays; see
    `__getitem__`), always keeping the mask axis.

    Attributes:
        words: `torch.int32` tensor `[T, rows, ceil(cols / 32)]` (the layout above).
        shape: the weight shape the masks cover (`torch.Size`).
        origin: the backbone the masks were learnt over, `(init, seed, scale_density)` of their
            layer, or None where unknown (random masks, masks read from a file); a selection or a
            move keeps it, and `convert` refuses a basis learnt over another backbone.
    """

    __slots__ = ("words", "shape", "origin")

    def __init__(self, words: torch.Tensor, shape: Sequence[int], origin: tuple | None = None):
        if not isinstance(words, torch.Tensor):
            raise TypeError(f"words must be a torch.Tensor, got {type(words).__name__}")
        if words.dtype != torch.int32:
            raise TypeError(f"words must be torch.int32, got {words.dtype}")
        shape = torch.Size(int(s) for s in shape)
        rows, cols = rows_cols(shape)
        if rows == 0 or cols == 0:
            raise ValueError(f"cannot pack masks over an empty weight of shape {tuple(shape)}")
        if words.dim() != 3 or words.shape[0] < 1 or tuple(words.shape[1:]) != (rows, num_words(cols)):
            raise ValueError(
                f"words of shape {tuple(words.shape)} do not fit a weight of shape {tuple(shape)}: "
                f"expected [T >= 1, {rows}, {num_words(cols)}]"
            )
        self.words = words
        self.shape = shape
        self.origin = origin

    @property
    def num_masks(self) -> int:
        return self.words.shape[0]

    @property
    def rows(self) -> int:
        return self.words.shape[1]

    @property
    def cols(self) -> int:
        return rows_cols(self.shape)[1]

    @property
    def device(self) -> torch.device:
        return self.words.device

    @property
    def nbytes(self) -> int:
        """Bytes the packed words occupy (row padding included)."""
        return self.words.numel() * self.words.element_size()

    def unpack(self, unpack=unpack_bits) -> torch.Tensor:
        """The masks as a bool tensor `[T, *shape]`. `unpack(words, cols)`: the codec, this module's
        pure-PyTorch one by default (`impresslearn.ops.unpack_masks` passes the backends')."""
        return unpack(self.words, self.cols).reshape(self.num_masks, *self.shape)

    def to(self, device) -> PackedMasks:
        return PackedMasks(self.words.to(device), self.shape, self.origin)

    def __getitem__(self, index) -> PackedMasks:
        """Some of the masks, as a `PackedMasks` over the same weight shape: the mask axis is kept.

        `index` is an integer (Python or numpy, or a 0-d integer tensor; negative counts from the
        end): one mask, `packed[3].num_masks == 1`; a slice, any step: those masks (a view of the
        words for a positive step); a list, 1-D numpy array or 1-D tensor of integers: those masks in
        that order, repeats allowed (a copy). An index past the end raises IndexError; a selection of
        no masks raises ValueError (a `PackedMasks` holds at least one); bools, boolean arrays,
        tuples and other types raise TypeError.
        """
        n = self.num_masks
        if isinstance(index, slice):
            if index.step is not None and operator.index(index.step) == 0:
                raise ValueError(f"the slice {_slice_text(index)} has a step of zero")
            picked = range(n)[index]
            if len(picked) == 0:
                raise ValueError(
                    f"the slice {_slice_text(index)} selects none of the {n} masks; a PackedMasks holds at least one"
                )
            if picked.step > 0:
                return PackedMasks(self.words[picked.start : picked.stop : picked.step], self.shape, self.origin)
            index = list(picked)
        if _is_bool(index):
            if isinstance(index, (torch.Tensor, np.ndarray)) and index.ndim > 0:
                raise TypeError(
                    "PackedMasks takes no boolean mask as an index; pass the integer positions (mask.nonzero()) instead"
                )
            raise TypeError(f"PackedMasks indices must be integers, not {_type_text(index)} (a bool is not a mask index)")
        if isinstance(index, tuple):
            raise TypeError("PackedMasks has one axis to index, the masks; use a list, not a tuple, to pick several")
        if isinstance(index, (list, np.ndarray, torch.Tensor)) and _array_dim(index) > 0:
            positions = _index_array(index, n)
            return PackedMasks(self.words.index_select(0, positions.to(self.words.device)), self.shape, self.origin)
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(
                f"PackedMasks indices must be integers, slices or 1-D integer index arrays, not {_type_text(index)}"
            ) from None
        if not -n <= i < n:
            raise IndexError(f"mask index {i} is out of range for {n} masks")
        i %= n
        return PackedMasks(self.words[i : i + 1], self.shape, self.origin)

    def __iter__(self) -> Iterator[PackedMasks]:
        """The masks one at a time, each a one-mask `PackedMasks` (`packed[i]`)."""
        for i in range(self.num_masks):
            yield PackedMasks(self.words[i : i + 1], self.shape, self.origin)

    def __len__(self) -> int:
        return self.num_masks

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, PackedMasks)
            and self.shape == other.shape
            and self.words.shape == other.words.shape
            and bool(torch.equal(self.words.cpu(), other.words.cpu()))
        )

    __hash__ = None  # mutable tensors inside

    def __repr__(self) -> str:
        return f"PackedMasks(num_masks={self.num_masks}, shape={tuple(self.shape)}, nbytes={self.nbytes}, device={self.device})"

    @staticmethod
    def cat(parts: Sequence[PackedMasks]) -> PackedMasks:
        """Stack the masks of several `PackedMasks` over the same weight shape."""
        parts = list(parts)
        if not parts:
            raise ValueError("PackedMasks.cat needs at least one PackedMasks")
        shape = parts[0].shape
        for p in parts:
            if not isinstance(p, PackedMasks):
                raise TypeError(f"PackedMasks.cat takes PackedMasks, got {type(p).__name__}")
            if p.shape != shape:
                raise ValueError(f"cannot stack masks of shapes {tuple(shape)} and {tuple(p.shape)}")
        origins = {p.origin for p in parts}  # masks of one backbone keep it; a mix is of none known
        return PackedMasks(torch.cat([p.words for p in parts]), shape, origins.pop() if len(origins) == 1 else None)


def _slice_text(s: slice) -> str:
    text = ":".join("" if v is None else str(v) for v in (s.start, s.stop, s.step))
    return text.removesuffix(":") if s.step is None else text


def _type_text(index) -> str:
    if isinstance(index, torch.Tensor):
        return f"a tensor of {index.dtype}"
    if isinstance(index, np.ndarray):
        return f"a numpy array of {index.dtype}"
    return type(index).__name__


def _is_bool(index) -> bool:
    """A Python or numpy bool, or a bool tensor or array (refused: True is not mask 1)."""
    if isinstance(index, (bool, np.bool_)):
        return True
    return isinstance(index, (torch.Tensor, np.ndarray)) and index.dtype in (torch.bool, np.bool_)


def _array_dim(index) -> int:
    return 1 if isinstance(index, list) else index.ndim


def _index_array(index, n: int) -> torch.Tensor:
    """A list, numpy array or tensor of mask indices as int64 positions in [0, n), on the CPU."""
    if isinstance(index, list):
        for v in index:
            if _is_bool(v) or isinstance(v, (list, tuple)):
                raise TypeError(f"a list index must hold integers, got a {type(v).__name__}")
        try:
            values = [operator.index(v) for v in index]
        except TypeError:
            bad = next(v for v in index if not hasattr(v, "__index__"))
            raise TypeError(f"a list index must hold integers, got a {_type_text(bad)}") from None
        positions = torch.tensor(values, dtype=torch.int64)
    else:
        if index.ndim != 1:
            raise ValueError(f"an index array must be 1-D, got shape {tuple(index.shape)}")
        is_int = (
            not index.dtype.is_floating_point and not index.dtype.is_complex
            if isinstance(index, torch.Tensor)
            else np.issubdtype(index.dtype, np.integer)
        )
        if not is_int:
            raise TypeError(f"an index array must hold integers, got {_type_text(index)}")
        positions = torch.as_tensor(np.asarray(index, dtype=np.int64) if isinstance(index, np.ndarray) else index)
        positions = positions.to("cpu", torch.int64)
    if positions.numel() == 0:
        raise ValueError(f"an empty index selects none of the {n} masks; a PackedMasks holds at least one")
    outside = (positions < -n) | (positions >= n)
    if bool(outside.any()):
        raise IndexError(f"mask index {int(positions[outside][0])} is out of range for {n} masks")
    return torch.where(positions < 0, positions + n, positions)


def pack_masks(masks: torch.Tensor, pack=pack_bits) -> PackedMasks:
    """Pack a bool or 0/1 tensor of shape `[T, *wshape]` (`T >= 1`) into `PackedMasks`. `pack(bits)`:
    the codec, this module's pure-PyTorch one by default (`impresslearn.ops.pack_masks` passes the
    backends'); every codec writes exactly the layout above."""
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"masks must be a torch.Tensor, got {type(masks).__name__}")
    if masks.is_complex() or masks.dtype in (torch.quint8, torch.qint8, torch.qint32):
        raise TypeError(f"masks must be bool, integer or floating 0/1 values, got {masks.dtype}")
    if masks.dim() < 2:
        raise ValueError(
            f"masks must have shape [T, *weight_shape] with a weight of at least one dimension, got shape {tuple(masks.shape)}"
        )
    if masks.numel() == 0:
        raise ValueError(f"cannot pack an empty tensor of shape {tuple(masks.shape)}")
    if masks.dtype != torch.bool:
        if not bool(((masks == 0) | (masks == 1)).all()):
            raise ValueError("masks must hold only 0 and 1 (or be a bool tensor)")
        masks = masks != 0
    t, wshape = masks.shape[0], masks.shape[1:]
    rows, cols = rows_cols(wshape)
    words = pack(masks.reshape(t, rows, cols))
    return PackedMasks(words, wshape)
