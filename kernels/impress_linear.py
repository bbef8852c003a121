"""impress_linear and its input gradient: GEMMs whose weight tiles are formed from the packed words.

    impress_linear(x, weight, words, alpha, bias)        x @ W_eff^T + bias
    impress_linear_grad_input(grad, weight, words, alpha) grad @ W_eff   (W_eff walked transposed)

with `W_eff = combine(weight, words, alpha)`, as `impresslearn.reference` defines them.

**How the path is chosen.** With at most `fused_max_batch` rows of input (default 64, one
`BLOCK_M` of the fused kernel) the fused kernel forms each `W_eff` tile in registers inside the
K loop (N loop for the input gradient) and never writes `W_eff`: every weight's coefficients
are formed exactly once, as combine would, and the `W_eff` write and re-read are saved. Above
that the fused kernel would form each tile once per block of rows, so the launcher runs
combine once and a dense GEMM (cuBLAS through `F.linear` / `matmul`) instead. fp64 always
takes the combine + GEMM path. The threshold follows from that cost argument; it has not been
measured on a GPU (this work had none): `bench/run_triton.py` (bench_impress_linear_triton.py) and
`bench/test_impress_linear.py` measure both sides.

Small batches give few output tiles, so the fused kernels split the reduction axis across
programs (about four per SM) and sum the fp32 partials in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .coefficients import Table, coefficient_tile, table_for
from .combine import combine
from .runtime import INTERPRETED, cast, check_tensors, device_guard, dot_precision, num_programs_target, tl_dtype

FUSED_MAX_BATCH = 64
BLOCK_M_MAX = 64
# 32 x 32 weight tiles over 8 warps: ptxas (sm_90) gives them at most 128 registers and no
# spills on every path; 64 x 64 tiles spilled. Chosen from that static count, not timed.
BLOCK_N = 32
BLOCK_K = 32
NUM_WARPS = 8


@triton.jit
def _effective_tile(
    w_ptr,
    words_ptr,
    table_ptr,
    n,
    k,
    n_rows,
    n_cols,
    nw,
    n_masks,
    table_row_stride,
    table_mask_stride,
    USE_LUT: tl.constexpr,
    ACC: tl.constexpr,
    DOT: tl.constexpr,
):
    """W_eff[n, k] for rows `n` ([BN, 1]) and columns `k` ([1, BK]), rounded to W's dtype as combine does."""
    valid = (n < n_rows) & (k < n_cols)
    coef = coefficient_tile(
        words_ptr, table_ptr, n, k, valid, n_rows, nw, n_masks, table_row_stride, table_mask_stride, USE_LUT, ACC
    )
    w = tl.load(w_ptr + n * n_cols + k, mask=valid, other=0.0)
    return cast(w.to(ACC) * coef, w.dtype).to(DOT)


@triton.jit
def _linear_kernel(
    x_ptr,
    w_ptr,
    words_ptr,
    table_ptr,
    bias_ptr,
    out_ptr,
    M,
    N,
    K,
    nw,
    n_masks,
    table_row_stride,
    table_mask_stride,
    k_per_split,
    HAS_BIAS: tl.constexpr,
    SPLIT: tl.constexpr,
    USE_LUT: tl.constexpr,
    ACC: tl.constexpr,
    DOT: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """out[m, n] = Σ_k x[m, k] W_eff[n, k] over this program's share of K (all of it unless SPLIT)."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_s = tl.program_id(2)
    m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)[:, None]
    n_col = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)[:, None]  # weight rows, as a column vector
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    k_start = pid_s * k_per_split
    k_end = tl.minimum(k_start + k_per_split, K)
    for k0 in range(k_start, k_end, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)[None, :]
        x = tl.load(x_ptr + m * K + k, mask=(m < M) & (k < K), other=0.0).to(DOT)
        w_eff = _effective_tile(
            w_ptr, words_ptr, table_ptr, n_col, k, N, K, nw, n_masks, table_row_stride, table_mask_stride, USE_LUT, ACC, DOT
        )
        acc = tl.dot(x, tl.trans(w_eff), acc, input_precision=PRECISION)
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
    valid = (m < M) & (n < N)
    if SPLIT:
        tl.store(out_ptr + (pid_s * M + m) * N + n, acc, mask=valid)
    else:
        if HAS_BIAS:
            acc += tl.load(bias_ptr + n, mask=n < N, other=0.0).to(tl.float32)
        tl.store(out_ptr + m * N + n, cast(acc, out_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _linear_grad_input_kernel(
    g_ptr,
    w_ptr,
    words_ptr,
    table_ptr,
    out_ptr,
    M,
    N,
    K,
    nw,
    n_masks,
    table_row_stride,
    table_mask_stride,
    n_per_split,
    SPLIT: tl.constexpr,
    USE_LUT: tl.constexpr,
    ACC: tl.constexpr,
    DOT: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """out[m, k] = Σ_n grad[m, n] W_eff[n, k]: the same words, walked along N instead of K."""
    pid_m = tl.program_id(0)
    pid_k = tl.program_id(1)
    pid_s = tl.program_id(2)
    m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)[:, None]
    k = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
    n_start = pid_s * n_per_split
    n_end = tl.minimum(n_start + n_per_split, N)
    for n0 in range(n_start, n_end, BLOCK_N):
        n_row = n0 + tl.arange(0, BLOCK_N)[None, :]
        n_col = n0 + tl.arange(0, BLOCK_N)[:, None]
        g = tl.load(g_ptr + m * N + n_row, mask=(m < M) & (n_row < N), other=0.0).to(DOT)
        w_eff = _effective_tile(
            w_ptr, words_ptr, table_ptr, n_col, k, N, K, nw, n_masks, table_row_stride, table_mask_stride, USE_LUT, ACC, DOT
        )
        acc = tl.dot(g, w_eff, acc, input_precision=PRECISION)
    valid = (m < M) & (k < K)
    if SPLIT:
        tl.store(out_ptr + (pid_s * M + m) * K + k, acc, mask=valid)
    else:
        tl.store(out_ptr + m * K + k, cast(acc, out_ptr.dtype.element_ty), mask=valid)


def _dot_dtype(dtype: torch.dtype):
    # The interpreter's bf16 dot is wrong; there bf16 tiles are multiplied upcast to fp32 (exact products).
    if INTERPRETED and dtype == torch.bfloat16:
        return tl.float32
    return tl_dtype(dtype)


def _splits(programs: int, length: int, block: int, device: torch.device, split) -> tuple[int, int]:
    """(splits, length per split, a multiple of block) of the reduction axis."""
    blocks = triton.cdiv(length, block)
    if split is None:
        split = max(1, num_programs_target(device) // max(programs, 1))
    split = max(1, min(int(split), blocks))
    per_split = triton.cdiv(blocks, split) * block
    return triton.cdiv(length, per_split), per_split


def _use_fused(rows: int, dtype: torch.dtype, fused_max_batch: int) -> bool:
    return 0 < rows <= fused_max_batch and dtype != torch.float64


@dataclass(frozen=True)
class _FusedLaunch:
    """Table, grid and output buffer of a fused GEMM over `rows x cols` outputs reducing over one axis."""

    table: Table
    grid: tuple[int, int, int]
    per_split: int
    out: torch.Tensor  # [splits, rows, cols] fp32 partials when split, else [rows, cols]
    launch_args: dict  # constexprs and num_warps

    @staticmethod
    def plan(
        rows: int,
        cols: int,
        col_block: int,
        reduced: int,
        reduce_block: int,
        weight: torch.Tensor,
        alpha: torch.Tensor,
        device: torch.device,
        split,
    ) -> _FusedLaunch:
        table, acc = table_for(alpha, weight.shape[1], weight.dtype)
        block_m = min(BLOCK_M_MAX, max(16, triton.next_power_of_2(rows)))
        grid = (triton.cdiv(rows, block_m), triton.cdiv(cols, col_block))
        n_split, per_split = _splits(grid[0] * grid[1], reduced, reduce_block, device, split)
        out = (
            torch.empty((n_split, rows, cols), dtype=torch.float32, device=device)
            if n_split > 1
            else torch.empty((rows, cols), dtype=weight.dtype, device=device)
        )
        launch_args = dict(
            SPLIT=n_split > 1,
            USE_LUT=table.lut,
            ACC=tl_dtype(acc),
            DOT=_dot_dtype(weight.dtype),
            PRECISION=dot_precision(),
            BLOCK_M=block_m,
            BLOCK_N=BLOCK_N,
            BLOCK_K=BLOCK_K,
            num_warps=NUM_WARPS,
        )
        return _FusedLaunch(table, (*grid, n_split), per_split, out, launch_args)

    def result(self, dtype: torch.dtype, bias: torch.Tensor | None = None) -> torch.Tensor:
        """The output in `dtype`; split partials are summed in a fixed order, then the bias added."""
        if self.out.dim() == 2:
            return self.out
        out = self.out.sum(0)
        if bias is not None:
            out += bias.float()
        return out.to(dtype)


def impress_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    words: torch.Tensor,
    alpha: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    fused_max_batch: int = FUSED_MAX_BATCH,
    split: int | None = None,
) -> torch.Tensor:
    """`F.linear(x, combine(weight, words, alpha), bias)`; `split` forces the split-K factor."""
    n, k = weight.shape
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    if not _use_fused(m, weight.dtype, fused_max_batch):
        return F.linear(x, combine(weight, words, alpha), bias)
    check_tensors(x2, weight, words, *([] if bias is None else [bias]))
    launch = _FusedLaunch.plan(m, n, BLOCK_N, k, BLOCK_K, weight, alpha, x.device, split)
    with device_guard(x):
        _linear_kernel[launch.grid](
            x2,
            weight,
            words,
            launch.table.data,
            bias if bias is not None else x2,
            launch.out,
            m,
            n,
            k,
            words.shape[2],
            words.shape[0],
            launch.table.row_stride,
            launch.table.mask_stride,
            launch.per_split,
            HAS_BIAS=bias is not None,
            **launch.launch_args,
        )
    return launch.result(weight.dtype, bias).reshape(*x.shape[:-1], n)


def impress_linear_grad_input(
    grad: torch.Tensor,
    weight: torch.Tensor,
    words: torch.Tensor,
    alpha: torch.Tensor,
    *,
    fused_max_batch: int = FUSED_MAX_BATCH,
    split: int | None = None,
) -> torch.Tensor:
    """`grad @ combine(weight, words, alpha)`: the input gradient of impress_linear."""
    n, k = weight.shape
    g2 = grad.reshape(-1, n)
    m = g2.shape[0]
    if not _use_fused(m, weight.dtype, fused_max_batch):
        return grad @ combine(weight, words, alpha)
    check_tensors(g2, weight, words)
    launch = _FusedLaunch.plan(m, k, BLOCK_K, n, BLOCK_N, weight, alpha, grad.device, split)
    with device_guard(grad):
        _linear_grad_input_kernel[launch.grid](
            g2,
            weight,
            words,
            launch.table.data,
            launch.out,
            m,
            n,
            k,
            words.shape[2],
            words.shape[0],
            launch.table.row_stride,
            launch.table.mask_stride,
            launch.per_split,
            **launch.launch_args,
        )
    return launch.result(weight.dtype).reshape(*grad.shape[:-1], k)
