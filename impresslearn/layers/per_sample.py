"""A task per sample, and each sample's own gradient with respect to a mixture of tasks: what
mixed batches, exhaustive scoring and per-sample one-shot inference run on (docs/design.md §2.6,
§7.10). The mask layers call these under `TaskRows` and `SampleMixture` (layers/tasks.py).

    linear_rows(x, rows, weight, packed, alphas, bias)
                        a linear layer with each sample (dim 0 of x) under its own task: the
                        task_row_linear op, which never builds a bank of dense task weights
    grouped_rows(x, rows, apply_task)
                        any other layer: the batch split by task, each task's samples through
                        `apply_task(s, x_s)` (one task's weight at a time: a convolution's lowering)
    with_probe(y, x, probe, task_outputs)
                        `y` (the mixture's output), plus a term that is zero in value and whose
                        gradient reaches `probe[i, s]` as <dL/dy_i, y_s,i>, the output of sample i
                        under task s alone: the layer's share of d L_i / d beta_s. A layer's
                        output under the mixture is Σ_s beta_s y_s (the weight is linear in beta),
                        so that product is exact; the outputs of every task come chunk by chunk
                        from `task_outputs(x, first, stop)` in backward, nothing kept between.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .. import ops
from ..format import PackedMasks

# Elements of task outputs formed at once in the probe's backward (fp32: 64 MiB).
CHUNK_ELEMENTS = 1 << 24


def _check_batch(x: Tensor, given: Tensor, what: str) -> None:
    if x.shape[0] != given.shape[0]:
        raise ValueError(f"a batch of {x.shape[0]} samples was given {what}")


def row_task(rows: Tensor, x: Tensor) -> Tensor:
    """The task of every row of `x` (all dimensions but the last): sample i's task for its rows."""
    _check_batch(x, rows, f"{rows.shape[0]} tasks (TaskRows)")
    return rows.reshape(-1, *([1] * (x.dim() - 2))).expand(x.shape[:-1])


def linear_rows(
    x: Tensor, rows: Tensor, weight: Tensor, packed: PackedMasks, alphas: Tensor | None, bias: Tensor | None
) -> Tensor:
    y = ops.task_row_linear(x, weight, packed, alphas, row_task(rows, x))
    if bias is None:
        return y
    return y + bias if y.requires_grad else y.add_(bias)  # in place where no gradient needs y


def grouped_rows(x: Tensor, rows: Tensor, apply_task: Callable[[int, Tensor], Tensor]) -> Tensor:
    _check_batch(x, rows, f"{rows.shape[0]} tasks (TaskRows)")
    out = None
    for s in torch.unique(rows).tolist():
        pick = (rows == s).nonzero().squeeze(1)
        y = apply_task(s, x.index_select(0, pick))
        if out is None:
            out = y.new_empty((x.shape[0], *y.shape[1:]))
        out.index_copy_(0, pick, y)
    return out if out is not None else apply_task(0, x)  # an empty batch keeps its shape


class _Probe(torch.autograd.Function):
    @staticmethod
    def forward(ctx, probe, x, y, task_outputs):
        ctx.task_outputs = task_outputs
        ctx.num_tasks = probe.shape[1]
        ctx.save_for_backward(x)
        return torch.zeros_like(y)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return sample_task_products(grad, x, ctx.num_tasks, ctx.task_outputs), None, None, None


@torch.no_grad()
def sample_task_products(grad: Tensor, x: Tensor, tasks: int, task_outputs: Callable[[Tensor, int, int], Tensor]) -> Tensor:
    """[B, tasks]: Σ over everything but the batch of grad ⊙ (the output under task s)."""
    per_task = max(1, grad.numel())
    step = max(1, min(tasks, CHUNK_ELEMENTS // per_task))
    g = grad.reshape(grad.shape[0], -1)
    out = grad.new_empty((grad.shape[0], tasks), dtype=torch.float32)
    for first in range(0, tasks, step):
        stop = min(tasks, first + step)
        y = task_outputs(x, first, stop).reshape(stop - first, grad.shape[0], -1)
        out[:, first:stop] = torch.einsum("sbn,bn->bs", y.float(), g.float())
    return out.to(grad.dtype)


def with_probe(y: Tensor, x: Tensor, probe: Tensor, task_outputs: Callable[[Tensor, int, int], Tensor]) -> Tensor:
    _check_batch(x, probe, f"a probe of {probe.shape[0]} (SampleMixture)")
    return y + _Probe.apply(probe, x.detach(), y.detach(), task_outputs)
