"""pack_bits and unpack_bits: the packed format's codec (docs/design.md §3.1) on the backends;
pack_masks and unpack_masks: `format.pack_masks` and `PackedMasks.unpack` through them."""

from __future__ import annotations

from torch import Tensor

from .. import format as layout
from .dispatch import primitive_op


@primitive_op()
def _pack_bits(bits: Tensor) -> Tensor: ...


@primitive_op()
def _unpack_bits(words: Tensor, cols: int) -> Tensor: ...


def pack_bits(bits: Tensor) -> Tensor:
    """A bool (nonzero = 1) tensor `[T, rows, cols]` as int32 words `[T, rows, ceil(cols / 32)]`."""
    return _pack_bits(bits)


def unpack_bits(words: Tensor, cols: int) -> Tensor:
    """Int32 words `[T, rows, nw]` as a bool tensor `[T, rows, cols]`."""
    return _unpack_bits(words, int(cols))


def pack_masks(masks: Tensor) -> layout.PackedMasks:
    """`format.pack_masks` (a bool or 0/1 tensor `[T, *weight_shape]`) packed on the backend."""
    return layout.pack_masks(masks, pack=pack_bits)


def unpack_masks(packed: layout.PackedMasks) -> Tensor:
    """`packed.unpack()` on the backend: the masks as a bool tensor `[T, *shape]`."""
    return packed.unpack(unpack_bits)
