"""pack_bits and unpack_bits: the packed format's codec (docs/design.md §3.1) on the backends."""

from __future__ import annotations

import torch
from torch import Tensor

from ..format import words_shape
from .checks import check_bits, check_words
from .dispatch import primitive_op


@primitive_op(check=check_bits,
              fake=lambda bits: bits.new_empty(words_shape(bits.shape[1:], bits.shape[0]), dtype=torch.int32))
def _pack_bits(bits: Tensor) -> Tensor: ...


@primitive_op(check=check_words,
              fake=lambda words, cols: words.new_empty((words.shape[0], words.shape[1], cols), dtype=torch.bool))
def _unpack_bits(words: Tensor, cols: int) -> Tensor: ...


def pack_bits(bits: Tensor) -> Tensor:
    """A bool (nonzero = 1) tensor `[T, rows, cols]` as int32 words `[T, rows, ceil(cols / 32)]`."""
    return _pack_bits(bits)


def unpack_bits(words: Tensor, cols: int) -> Tensor:
    """Int32 words `[T, rows, nw]` as a bool tensor `[T, rows, cols]`."""
    return _unpack_bits(words, int(cols))
