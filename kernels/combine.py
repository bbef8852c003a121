"""combine and its alpha gradient straight from the packed words (Triton).

    combine(weight, words, alpha)                  W ⊙ Σ_t alpha_t M_t, one pass: reads W and T
                                                   bits per weight, writes W_eff in W's dtype
    combine_grad_alpha(grad, weight, words, alpha) d alpha_t = Σ G ⊙ W ⊙ M_t in one pass over G,
                                                   W and the bits; fp32 (fp64) partial sums per
                                                   tile, reduced by a fixed-order sum (deterministic)

Signatures and results as `impresslearn.reference`; accumulation in fp32 (fp64 for fp64).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from impresslearn.format import rows_cols

from .coefficients import LUT_MIN_MASKS, LUT_PER_CHANNEL_MIN_COLS, coefficient_tile, table_for
from .runtime import acc_dtype, cast, check_tensors, device_guard, tl_dtype

# Elements per program (4 warps). combine: 1024 keeps the lookup-table path, with 8 word loads
# in flight per element, at 127 registers and no spills in ptxas for sm_90 (2048 needed 255).
# grad-alpha: 4096 at 128 registers. Chosen from those static counts, not timed.
COMBINE_TILE = 1024
GRAD_ALPHA_TILE = 4096


def _tile(cols: int, max_cols: int, elements: int) -> tuple[int, int]:
    """(BLOCK_R, BLOCK_C): a row-major tile of about `elements` weights, at most `max_cols` wide."""
    block_c = min(max_cols, triton.next_power_of_2(cols))
    return max(1, elements // block_c), block_c


@triton.jit
def _combine_kernel(
    w_ptr,
    words_ptr,
    table_ptr,
    out_ptr,
    n_rows,
    n_cols,
    nw,
    n_masks,
    table_row_stride,
    table_mask_stride,
    n_col_blocks,
    USE_LUT: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    pid = tl.program_id(0)
    r = (pid // n_col_blocks) * BLOCK_R + tl.arange(0, BLOCK_R)[:, None]
    c = (pid % n_col_blocks) * BLOCK_C + tl.arange(0, BLOCK_C)[None, :]
    valid = (r < n_rows) & (c < n_cols)
    coef = coefficient_tile(
        words_ptr, table_ptr, r, c, valid, n_rows, nw, n_masks, table_row_stride, table_mask_stride, USE_LUT, ACC
    )
    w = tl.load(w_ptr + r * n_cols + c, mask=valid, other=0.0).to(ACC)
    tl.store(out_ptr + r * n_cols + c, cast(w * coef, out_ptr.dtype.element_ty), mask=valid)


def combine(
    weight: torch.Tensor,
    words: torch.Tensor,
    alpha: torch.Tensor,
    *,
    lut_min_masks: int = LUT_MIN_MASKS,
    lut_per_channel_min_cols: int = LUT_PER_CHANNEL_MIN_COLS,
) -> torch.Tensor:
    """`weight * Σ_t alpha[t] * masks[t]` in weight's dtype (inputs contiguous, checked by the op layer)."""
    rows, cols = rows_cols(weight.shape)
    check_tensors(weight, words)
    table, acc = table_for(
        alpha, cols, weight.dtype, lut_min_masks=lut_min_masks, lut_per_channel_min_cols=lut_per_channel_min_cols
    )
    out = torch.empty_like(weight)
    block_r, block_c = _tile(cols, 256, COMBINE_TILE)
    n_col_blocks = triton.cdiv(cols, block_c)
    grid = (triton.cdiv(rows, block_r) * n_col_blocks,)
    with device_guard(weight):
        _combine_kernel[grid](
            weight,
            words,
            table.data,
            out,
            rows,
            cols,
            words.shape[2],
            words.shape[0],
            table.row_stride,
            table.mask_stride,
            n_col_blocks,
            USE_LUT=table.lut,
            ACC=tl_dtype(acc),
            BLOCK_R=block_r,
            BLOCK_C=block_c,
        )
    return out


@triton.jit
def _grad_alpha_kernel(
    g_ptr,
    w_ptr,
    words_ptr,
    part_ptr,
    n_rows,
    n_cols,
    nw,
    n_masks,
    n_col_blocks,
    PER_CHANNEL: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """Partial sums of one tile: part[col_block, t, r] (per channel) or part[tile, t] (per layer)."""
    pid = tl.program_id(0)
    pid_r = pid // n_col_blocks
    pid_c = pid % n_col_blocks
    r = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)[:, None]
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)[None, :]
    valid = (r < n_rows) & (c < n_cols)
    gw = tl.load(g_ptr + r * n_cols + c, mask=valid, other=0.0).to(ACC) * tl.load(
        w_ptr + r * n_cols + c, mask=valid, other=0.0
    ).to(ACC)
    word_ptrs = words_ptr + r * nw + (c >> 5)
    shift = c & 31
    plane = n_rows * nw
    rows_1d = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    for t in range(0, n_masks):
        word = tl.load(word_ptrs + t * plane, mask=valid, other=0)
        picked = tl.where(((word >> shift) & 1) != 0, gw, 0.0)
        if PER_CHANNEL:
            tl.store(part_ptr + (pid_c * n_masks + t) * n_rows + rows_1d, tl.sum(picked, axis=1), mask=rows_1d < n_rows)
        else:
            tl.store(part_ptr + pid * n_masks + t, tl.sum(tl.sum(picked, axis=1), axis=0))


def combine_grad_alpha(grad: torch.Tensor, weight: torch.Tensor, words: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """`d alpha[t] = Σ grad ⊙ weight ⊙ masks[t]` (per row for per-channel alpha), in alpha's dtype."""
    rows, cols = rows_cols(weight.shape)
    check_tensors(grad, weight, words)
    t = words.shape[0]
    acc = acc_dtype(weight.dtype, alpha.dtype)
    per_channel = alpha.dim() == 2
    block_r, block_c = _tile(cols, 1024, GRAD_ALPHA_TILE)
    n_col_blocks = triton.cdiv(cols, block_c)
    n_tiles = triton.cdiv(rows, block_r) * n_col_blocks
    part_shape = (n_col_blocks, t, rows) if per_channel else (n_tiles, t)
    partials = torch.empty(part_shape, dtype=acc, device=weight.device)
    with device_guard(weight):
        _grad_alpha_kernel[(n_tiles,)](
            grad,
            weight,
            words,
            partials,
            rows,
            cols,
            words.shape[2],
            t,
            n_col_blocks,
            PER_CHANNEL=per_channel,
            ACC=tl_dtype(acc),
            BLOCK_R=block_r,
            BLOCK_C=block_c,
        )
    # A fixed-shape sum over the tile axis: the same order on every run.
    return partials.sum(0).to(alpha.dtype)
