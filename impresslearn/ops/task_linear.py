"""Every task at once, and a task per row: linear layers over many tasks' effective weights read
straight from the packed words (docs/design.md §7.10).

    every_task_linear(x, weight, packed, alphas)        [S, *x.shape[:-1], N]: x under every task
    task_row_linear(x, weight, packed, alphas, task)    [*x.shape[:-1], N]: row i under task[i]

A task's weight is `weight ⊙ Σ_t alphas[s, t] M_t` (alphas `[S, T]`, or `[S, T, N]` per output
channel), or with `alphas=None` the weight under mask s alone (SupSup's tasks: S = T). Neither
op builds a bank of every task's dense weight: a backend forms at most one task's weight at a
time (the native composition) or its tiles in registers (Triton). No bias: add the layer's own.

Both are differentiable in x, weight and alphas; the gradient is a loop over the tasks of the
existing ops (impress_linear_grad_input, combine, combine_grad_alpha), each task's rows selected
by a multiply so that the loop has a length known without reading the data (torch.compile and
opcheck trace it).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import check_packed, check_task_ids
from ..format import PackedMasks
from ..primitives import task_count
from .combine import _combine, _combine_grad_alpha
from .dispatch import primitive_op
from .impress_linear import _impress_linear_grad_input


@primitive_op()
def _every_task_linear(x: Tensor, weight: Tensor, words: Tensor, alphas: Tensor | None) -> Tensor: ...


@primitive_op()
def _task_row_linear(x: Tensor, weight: Tensor, words: Tensor, alphas: Tensor | None, task: Tensor) -> Tensor: ...


def _one_task(weight: Tensor, words: Tensor, alphas: Tensor | None, s: int) -> tuple[Tensor, Tensor]:
    """(words, alpha) of task s alone, for the single-task ops."""
    if alphas is None:
        return words[s : s + 1], torch.ones(1, dtype=weight.dtype, device=weight.device)
    return words, alphas[s]


def _task_grads(grads: list[Tensor], x: Tensor, weight: Tensor, words: Tensor, alphas: Tensor | None, needs) -> tuple:
    """Gradients of x, weight and alphas from each task's output gradient `grads[s]` (over all
    rows of x, zero where a row is not the task's)."""
    needs_x, needs_w, needs_a = needs
    grad_x = grad_w = None
    grad_a = []
    for s, g in enumerate(grads):
        w_s, a_s = _one_task(weight, words, alphas, s)
        if needs_x:
            gx = _impress_linear_grad_input(g, weight, w_s, a_s)
            grad_x = gx if grad_x is None else grad_x + gx
        if needs_w or needs_a:
            g_eff = g.t() @ x
            if needs_w:
                gw = _combine(g_eff, w_s, a_s)
                grad_w = gw if grad_w is None else grad_w + gw
            if needs_a and alphas is not None:
                grad_a.append(_combine_grad_alpha(g_eff, weight, w_s, a_s))
    return grad_x, grad_w, (torch.stack(grad_a) if grad_a else None)


def _setup(ctx, inputs, output):
    ctx.has_alphas = inputs[3] is not None
    ctx.save_for_backward(*(t for t in inputs if isinstance(t, Tensor)))


def _unpack(ctx):
    saved = list(ctx.saved_tensors)
    x, weight, words = saved[:3]
    alphas = saved[3] if ctx.has_alphas else None
    rest = saved[4:] if ctx.has_alphas else saved[3:]
    return x, weight, words, alphas, rest


def _every_task_backward(ctx, grad):
    x, weight, words, alphas, _ = _unpack(ctx)
    needs = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[3])
    grad_x, grad_w, grad_a = _task_grads(list(grad.unbind(0)), x, weight, words, alphas, needs)
    return grad_x, grad_w, None, grad_a


def _task_row_backward(ctx, grad):
    x, weight, words, alphas, (task,) = _unpack(ctx)
    needs = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[3])
    tasks = task_count(words, alphas)
    grads = [grad * (task == s).unsqueeze(1).to(grad.dtype) for s in range(tasks)]
    grad_x, grad_w, grad_a = _task_grads(grads, x, weight, words, alphas, needs)
    return grad_x, grad_w, None, grad_a, None


_every_task_linear.register_autograd(_every_task_backward, setup_context=_setup)
_task_row_linear.register_autograd(_task_row_backward, setup_context=_setup)


def every_task_linear(x: Tensor, weight: Tensor, packed: PackedMasks, alphas: Tensor | None = None) -> Tensor:
    """`[S, *x.shape[:-1], N]`: `x @ W_eff(s)ᵀ` for every task s (no bias)."""
    check_packed(weight, packed)
    out = _every_task_linear(x.reshape(-1, x.shape[-1]), weight, packed.words, alphas)
    return out.reshape(out.shape[0], *x.shape[:-1], weight.shape[0])


def task_row_linear(x: Tensor, weight: Tensor, packed: PackedMasks, alphas: Tensor | None, task: Tensor) -> Tensor:
    """`[*x.shape[:-1], N]`: each row of x (all dimensions but the last) through the weight of its
    task `task[i]` (a long tensor of `x.shape[:-1]`; no bias)."""
    check_packed(weight, packed)
    if tuple(task.shape) != tuple(x.shape[:-1]):
        raise ValueError(f"task must give one task per row of x: shape {tuple(x.shape[:-1])}, got {tuple(task.shape)}")
    if not torch.compiler.is_compiling():
        check_task_ids(task, task_count(packed.words, alphas))
    out = _task_row_linear(x.reshape(-1, x.shape[-1]), weight, packed.words, alphas, task.reshape(-1))
    return out.reshape(*x.shape[:-1], weight.shape[0])
