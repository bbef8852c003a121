"""The mask coefficients `Σ_t alpha_t M_t[r, c]` of a weight tile, formed in registers from packed words.

Shared by combine (kernels/combine.py) and the fused GEMMs (kernels/impress_linear.py). Two ways:

- **byte lookup tables** (the default for per-layer alpha with T >= 8): the bits of 8 masks at a
  weight form one byte, and a 256-entry table per group of 8 masks, built once per call from
  alpha, turns it into `Σ_{j<8} alpha[8g + j] · bit_j`. This swaps 8 conversions and
  multiply-adds for one cached gather; the bits themselves still cost a shift, a mask and an
  or each (any per-weight layout reads T bits).
- **shift-and-add**: `acc += bit_t ? alpha_t : 0` for each mask. Used for T < 8 and, by
  default, for per-channel alpha, whose tables would be one set per row (T·128 bytes per row,
  gathered by every column block of the row: more L2 traffic than the bits themselves unless
  rows are very long).

Neither default has been measured on a GPU yet (this work had none); `Table.choose` takes the
thresholds as arguments so a benchmark can flip them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .runtime import acc_dtype, device_guard, tl_dtype

LUT_MIN_MASKS = 8
# Per-channel tables pay off only when a row is long enough to reuse its table many times.
LUT_PER_CHANNEL_MIN_COLS = 1 << 30  # effectively "never" until a GPU measurement says otherwise


@triton.jit
def coefficient_tile(
    words_ptr,
    table_ptr,
    r,
    c,
    valid,
    n_rows,
    nw,
    n_masks,
    table_row_stride,
    table_mask_stride,
    USE_LUT: tl.constexpr,
    ACC: tl.constexpr,
):
    """`Σ_t alpha_t M_t[r, c]` for row indices `r` ([R, 1]) and column indices `c` ([1, C]).

    words: int32 [T, n_rows, nw]. Shift-and-add table: alpha at `t * table_mask_stride +
    r * table_row_stride`. Lookup table: `[*, G, 256]` at `r * table_row_stride + g * 256 + byte`
    (row stride 0 for per-layer alpha).
    """
    word_ptrs = words_ptr + r * nw + (c >> 5)
    shift = c & 31
    plane = n_rows * nw
    zero = tl.zeros_like(r + c)  # [R, C] int32
    acc = zero.to(ACC)
    if USE_LUT:
        for g in range(0, tl.cdiv(n_masks, 8)):
            byte = zero
            for j in tl.static_range(8):
                t = g * 8 + j
                word = tl.load(word_ptrs + t * plane, mask=valid & (zero + t < n_masks), other=0)
                byte |= ((word >> shift) & 1) << j
            acc += tl.load(table_ptr + r * table_row_stride + g * 256 + byte, mask=valid, other=0.0)
    else:
        row_ok = r < n_rows
        for t in range(0, n_masks):
            word = tl.load(word_ptrs + t * plane, mask=valid, other=0)
            a = tl.load(table_ptr + t * table_mask_stride + r * table_row_stride, mask=row_ok, other=0.0).to(ACC)
            acc += tl.where(((word >> shift) & 1) != 0, a, 0.0)
    return acc


@triton.jit
def _build_lut_kernel(
    alpha_ptr, lut_ptr, n_rows, n_masks, n_groups, alpha_mask_stride, alpha_row_stride, ACC: tl.constexpr, BLOCK_R: tl.constexpr
):
    """lut[r, g, b] = Σ_{j<8, 8g+j<T} alpha[8g + j, r] · bit_j(b); a program per (block of rows, group)."""
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)[:, None]
    g = tl.program_id(1)
    b = tl.arange(0, 256)[None, :]
    acc = tl.zeros((BLOCK_R, 256), dtype=ACC)
    for j in tl.static_range(8):
        t = g * 8 + j
        a = tl.load(
            alpha_ptr + t * alpha_mask_stride + r * alpha_row_stride, mask=(r < n_rows) & (r * 0 + t < n_masks), other=0.0
        ).to(ACC)
        acc += tl.where(((b >> j) & 1) != 0, a, 0.0)
    tl.store(lut_ptr + (r * n_groups + g) * 256 + b, acc, mask=(r < n_rows) & (b < 256))


@dataclass(frozen=True)
class Table:
    """What `coefficient_tile` reads alpha from: the alpha tensor itself or byte lookup tables."""

    data: torch.Tensor
    row_stride: int
    mask_stride: int
    lut: bool

    @staticmethod
    def choose(
        alpha: torch.Tensor,
        cols: int,
        acc: torch.dtype,
        *,
        lut_min_masks: int = LUT_MIN_MASKS,
        lut_per_channel_min_cols: int = LUT_PER_CHANNEL_MIN_COLS,
    ) -> Table:
        """The table for `alpha` ([T] or [T, rows]) over rows of `cols` weights."""
        t = alpha.shape[0]
        per_channel = alpha.dim() == 2
        use_lut = t >= lut_min_masks and (not per_channel or cols >= lut_per_channel_min_cols)
        return Table.lookup(alpha, acc) if use_lut else Table.direct(alpha, acc)

    @staticmethod
    def direct(alpha: torch.Tensor, acc: torch.dtype) -> Table:
        a = alpha.to(acc).contiguous()
        if a.dim() == 1:
            return Table(a, 0, 1, False)
        return Table(a, 1, a.shape[1], False)

    @staticmethod
    def lookup(alpha: torch.Tensor, acc: torch.dtype) -> Table:
        a = alpha.contiguous()
        t = a.shape[0]
        n_groups = triton.cdiv(t, 8)
        table_rows = a.shape[1] if a.dim() == 2 else 1
        lut = torch.empty((table_rows, n_groups, 256), dtype=acc, device=a.device)
        mask_stride, row_stride = (a.shape[1], 1) if a.dim() == 2 else (1, 0)
        block_r = min(16, triton.next_power_of_2(table_rows))
        with device_guard(a):
            _build_lut_kernel[(triton.cdiv(table_rows, block_r), n_groups)](
                a, lut, table_rows, t, n_groups, mask_stride, row_stride, ACC=tl_dtype(acc), BLOCK_R=block_r
            )
        return Table(lut, n_groups * 256 if a.dim() == 2 else 0, 0, True)


def table_for(alpha: torch.Tensor, cols: int, *dtypes: torch.dtype, **thresholds) -> tuple[Table, torch.dtype]:
    """The table and the accumulation dtype for a call whose tensors have `dtypes`."""
    acc = acc_dtype(*dtypes)
    return Table.choose(alpha, cols, acc, **thresholds), acc
