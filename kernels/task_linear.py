"""every_task_linear and task_row_linear: one GEMM over many tasks, each task's weight tiles
formed in registers from W and the packed words, never written out (docs/design.md §7.10).

    every_task_linear(x, weight, words, alphas)        [S, rows, N]: x under every task
    task_row_linear(x, weight, words, alphas, task)    [rows, N]: row i under task[i]

Both launch one kernel over rows grouped by task: the launcher sorts the rows by task (a
stable argsort; for every_task_linear the input rows repeated once per task, by index, not
copied), and a program `(row block, column block, task)` multiplies its task's rows by the
task's weight tile by tile. Programs of one column block read the same W tiles, one task after
another, from L2: W comes from memory about once per launch, the bits once per task. A task
with alphas forms its coefficients by shift-and-add over its T masks (coefficients.py); with
`alphas=None` (a task is one mask) a tile is W where its bit is set. fp64 takes the
composition (Triton's combine, one task at a time, then a dense GEMM): `tl.dot` has no fp64
path on most GPUs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from impresslearn.primitives import PRIMITIVES, task_count

from .combine import combine
from .impress_linear import _dot_dtype, _effective_tile
from .runtime import acc_dtype, cast, check_tensors, device_guard, dot_precision, tl_dtype

BLOCK_M_MAX = 64


def _masked_weight(weight, words):
    return combine(weight, words, torch.ones(1, dtype=weight.dtype, device=weight.device))


BLOCK_N = 32
BLOCK_K = 32
NUM_WARPS = 4


@triton.jit
def _task_rows_kernel(
    x_ptr,
    w_ptr,
    words_ptr,
    alpha_ptr,
    src_ptr,
    dst_ptr,
    seg_ptr,
    out_ptr,
    N,
    K,
    nw,
    n_masks,
    alpha_task_stride,
    alpha_mask_stride,
    alpha_row_stride,
    MASKED: tl.constexpr,
    ACC: tl.constexpr,
    DOT: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """out[dst[p], n] = Σ_k x[src[p], k] W_eff(s)[n, k] for the rows p of task s: seg[s] <= p < seg[s + 1]."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    s = tl.program_id(2)
    start = tl.load(seg_ptr + s)
    end = tl.load(seg_ptr + s + 1)
    first = start + pid_m * BLOCK_M
    if first < end:  # tasks with fewer rows than the largest leave their last row blocks idle
        p = first + tl.arange(0, BLOCK_M)
        row_ok = p < end
        src = tl.load(src_ptr + p, mask=row_ok, other=0)[:, None]
        n_col = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)[:, None]  # weight rows, as a column vector
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)[None, :]
            xt = tl.load(x_ptr + src * K + k, mask=row_ok[:, None] & (k < K), other=0.0).to(DOT)
            if MASKED:
                valid = (n_col < N) & (k < K)
                w = tl.load(w_ptr + n_col * K + k, mask=valid, other=0.0)
                word = tl.load(words_ptr + (s * N + n_col) * nw + (k >> 5), mask=valid, other=0)
                w_eff = tl.where(((word >> (k & 31)) & 1) != 0, w, tl.zeros_like(w)).to(DOT)
            else:  # impress_linear's tile, over task s's alphas
                w_eff = _effective_tile(
                    w_ptr,
                    words_ptr,
                    alpha_ptr + s * alpha_task_stride,
                    n_col,
                    k,
                    N,
                    K,
                    nw,
                    n_masks,
                    alpha_row_stride,
                    alpha_mask_stride,
                    False,
                    ACC,
                    DOT,
                )
            acc = tl.dot(xt, tl.trans(w_eff), acc, input_precision=PRECISION)
        dst = tl.load(dst_ptr + p, mask=row_ok, other=0)[:, None]
        n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
        tl.store(out_ptr + dst * N + n, cast(acc, out_ptr.dtype.element_ty), mask=row_ok[:, None] & (n < N))


def _launch(x, weight, words, alphas, src, dst, seg, max_rows, out_rows):
    n, k = weight.shape
    tasks = seg.numel() - 1
    out = torch.empty((out_rows, n), dtype=weight.dtype, device=x.device)
    if out_rows == 0:
        return out
    acc = acc_dtype(weight.dtype)
    if alphas is None:
        table, strides = x, (0, 0, 0)  # not read
    else:
        table = alphas.to(acc).contiguous()
        t = words.shape[0]
        strides = (t, 1, 0) if table.dim() == 2 else (t * n, n, 1)
    check_tensors(x, weight, words, table, out)
    block_m = min(BLOCK_M_MAX, max(16, triton.next_power_of_2(max_rows)))
    grid = (triton.cdiv(max_rows, block_m), triton.cdiv(n, BLOCK_N), tasks)
    with device_guard(x):
        _task_rows_kernel[grid](
            x,
            weight,
            words,
            table,
            src,
            dst,
            seg,
            out,
            n,
            k,
            words.shape[2],
            words.shape[0],
            *strides,
            MASKED=alphas is None,
            ACC=tl_dtype(acc),
            DOT=_dot_dtype(weight.dtype),
            PRECISION=dot_precision(),
            BLOCK_M=block_m,
            BLOCK_N=BLOCK_N,
            BLOCK_K=BLOCK_K,
            num_warps=NUM_WARPS,
        )
    return out


def every_task_linear(x: torch.Tensor, weight: torch.Tensor, words: torch.Tensor, alphas: torch.Tensor | None) -> torch.Tensor:
    """`[S, rows, N]`: x @ W_eff(s)ᵀ for every task s."""
    if weight.dtype == torch.float64:
        return PRIMITIVES["every_task_linear"].compose(combine, _masked_weight)(x, weight, words, alphas)
    tasks, rows = task_count(words, alphas), x.shape[0]
    dev = x.device
    src = torch.arange(rows, dtype=torch.int32, device=dev).repeat(tasks)
    dst = torch.arange(rows * tasks, dtype=torch.int32, device=dev)
    seg = torch.arange(tasks + 1, dtype=torch.int32, device=dev) * rows
    out = _launch(x, weight, words, alphas, src, dst, seg, rows, rows * tasks)
    return out.reshape(tasks, rows, weight.shape[0])


def task_row_linear(
    x: torch.Tensor, weight: torch.Tensor, words: torch.Tensor, alphas: torch.Tensor | None, task: torch.Tensor
) -> torch.Tensor:
    """`[rows, N]`: row i under task `task[i]`'s weight."""
    if weight.dtype == torch.float64:
        return PRIMITIVES["task_row_linear"].compose(combine, _masked_weight)(x, weight, words, alphas, task)
    tasks = task_count(words, alphas)
    counts = torch.bincount(task, minlength=tasks)
    seg = torch.zeros(tasks + 1, dtype=torch.int32, device=x.device)
    seg[1:] = counts.cumsum(0)
    order = torch.argsort(task, stable=True).to(torch.int32)
    max_rows = int(counts.max()) if task.numel() else 0
    return _launch(x, weight, words, alphas, order, order, seg, max(max_rows, 1), x.shape[0])
