"""What each primitive refuses: the packed format, shape, dtype and device checks its op and every
fake (the ops' and the native library's) run, so a refusal is the same sentence on every backend
and under torch.compile (docs/design.md §5.4). `<primitive>_args(...)` takes a primitive's
arguments as `impresslearn.primitives` declares them."""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from .format import PackedMasks, num_words, rows_cols
from .seeding import kept_count


def check_same_device(**tensors: Tensor | None) -> None:
    present = {k: t.device for k, t in tensors.items() if t is not None}
    if len(set(present.values())) > 1:
        raise ValueError("tensors must be on one device, got " + ", ".join(f"{k} on {d}" for k, d in present.items()))


def check_combine(weight: Tensor, words: Tensor, alpha: Tensor) -> None:
    if not weight.is_floating_point():
        raise TypeError(f"weight must be a floating-point tensor, got {weight.dtype}")
    if not alpha.is_floating_point():
        raise TypeError(f"alpha must be a floating-point tensor, got {alpha.dtype}")
    t, rows = check_packed_words(weight, words)
    if tuple(alpha.shape) not in ((t,), (t, rows)):
        raise ValueError(
            f"alpha must have shape [{t}] (per layer) or [{t}, {rows}] (per output channel) "
            f"for {t} masks, got {tuple(alpha.shape)}"
        )
    check_same_device(weight=weight, words=words, alpha=alpha)


def check_packed_words(weight: Tensor, words: Tensor) -> tuple[int, int]:
    """Packed words `[T, rows, nw]` (T >= 1) that cover `weight`; returns (T, rows). The device is
    the caller's to check, with its other tensors."""
    if not weight.is_floating_point():
        raise TypeError(f"weight must be a floating-point tensor, got {weight.dtype}")
    if words.dtype != torch.int32:
        raise TypeError(f"packed words must be torch.int32, got {words.dtype}")
    # What the packed format cannot hold is refused here, for every backend alike (design.md §5.4).
    if weight.dim() == 0:
        raise ValueError("weight must have at least one dimension (its rows), got a 0-d tensor")
    rows, cols = rows_cols(weight.shape)
    if rows == 0 or cols == 0:
        raise ValueError(f"weight of shape {tuple(weight.shape)} is empty, and masks cover only non-empty weights")
    if words.dim() != 3 or tuple(words.shape[1:]) != (rows, num_words(cols)):
        raise ValueError(
            f"packed words of shape {tuple(words.shape)} do not fit a weight of shape {tuple(weight.shape)} "
            f"(expected [T, {rows}, {num_words(cols)}])"
        )
    t = words.shape[0]
    if t == 0:
        raise ValueError(f"packed words of shape {tuple(words.shape)} hold no masks (T = 0), and at least one is needed")
    return t, rows


def check_packed(weight: Tensor, packed: PackedMasks) -> None:
    if not isinstance(packed, PackedMasks):
        raise TypeError(f"packed must be impresslearn.PackedMasks, got {type(packed).__name__}")
    if tuple(packed.shape) != tuple(weight.shape):
        raise ValueError(f"masks of shape {tuple(packed.shape)} do not cover a weight of shape {tuple(weight.shape)}")


def check_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> None:
    if weight.dim() != 2:
        raise ValueError(f"impress_linear needs a 2-D weight, got shape {tuple(weight.shape)}")
    if x.dim() < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"input of shape {tuple(x.shape)} does not match a weight of shape {tuple(weight.shape)}")
    if x.dtype != weight.dtype:
        raise TypeError(f"input dtype {x.dtype} differs from weight dtype {weight.dtype}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must have shape [{weight.shape[0]}], got {tuple(bias.shape)}")
    check_same_device(x=x, weight=weight, bias=bias)


def check_grad_output(grad: Tensor, weight: Tensor) -> None:
    if grad.dim() < 1 or grad.shape[-1] != weight.shape[0]:
        raise ValueError(f"gradient of shape {tuple(grad.shape)} does not match a weight of shape {tuple(weight.shape)}")
    if grad.dtype != weight.dtype:
        raise TypeError(f"gradient dtype {grad.dtype} differs from weight dtype {weight.dtype}")
    check_same_device(grad=grad, weight=weight)


def check_conv(x: Tensor, weight: Tensor, bias: Tensor | None, groups: int) -> None:
    if weight.dim() != 4:
        raise ValueError(f"impress_conv2d needs a 4-D weight, got shape {tuple(weight.shape)}")
    if x.dim() not in (3, 4) or x.shape[-3] != weight.shape[1] * groups:
        raise ValueError(
            f"input of shape {tuple(x.shape)} does not match a weight of shape {tuple(weight.shape)} with groups={groups}"
        )
    if x.dtype != weight.dtype:
        raise TypeError(f"input dtype {x.dtype} differs from weight dtype {weight.dtype}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must have shape [{weight.shape[0]}], got {tuple(bias.shape)}")
    check_same_device(x=x, weight=weight, bias=bias)


def check_scores(scores: Tensor, *, packed: bool = False) -> None:
    """Floating scores with at least one entry; a 0-d tensor is one score, except for a packed
    mask, which needs a weight shape of at least one dimension (design.md §5.4)."""
    if not scores.is_floating_point():
        raise TypeError(f"scores must be a floating-point tensor, got {scores.dtype}")
    if scores.numel() == 0:
        raise ValueError(f"scores must not be empty, got shape {tuple(scores.shape)}")
    if packed and scores.dim() == 0:
        raise ValueError("popup_pack needs scores of at least one dimension (a weight shape to pack), got a 0-d tensor")


def check_k(scores: Tensor, k: int, *, packed: bool = False) -> None:
    check_scores(scores, packed=packed)
    if not 1 <= k <= scores.numel():
        raise ValueError(f"k must lie in [1, {scores.numel()}], got {k}")


def check_weight_scores(weight: Tensor, scores: Tensor) -> None:
    check_scores(scores)
    if weight.dtype != scores.dtype:
        raise TypeError(f"weight dtype {weight.dtype} differs from scores dtype {scores.dtype}")
    if weight.shape != scores.shape:
        raise ValueError(f"weight of shape {tuple(weight.shape)} and scores of shape {tuple(scores.shape)} differ")
    check_same_device(weight=weight, scores=scores)


def check_bits(bits: Tensor) -> None:
    if bits.dim() != 3:
        raise ValueError(f"bits must have shape [T, rows, cols], got {tuple(bits.shape)}")
    if bits.is_complex():
        raise TypeError(f"bits must be bool, integer or floating, got {bits.dtype}")


def check_words(words: Tensor, cols: int) -> None:
    if words.dtype != torch.int32 or words.dim() != 3:
        raise ValueError(f"words must be int32 [T, rows, nw], got {words.dtype} {tuple(words.shape)}")
    if cols < 0 or num_words(cols) != words.shape[2]:
        raise ValueError(f"{words.shape[2]} words per row cannot hold {cols} columns")


def popup_k(numel: int, density: float) -> int:
    """Entries kept at `density`: `numel - floor((1 - density) * numel)` (the contract's count)."""
    if isinstance(density, bool) or not isinstance(density, numbers.Real):
        raise TypeError(f"density must be a real number, got {type(density).__name__}")
    density = float(density)
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must lie in (0, 1], got {density}")
    return kept_count(numel, density)


# --------------------------------------------------------------------------- per primitive


def combine_grad_alpha_args(grad: Tensor, weight: Tensor, words: Tensor, alpha: Tensor) -> None:
    check_combine(weight, words, alpha)
    if grad.shape != weight.shape:
        raise ValueError(f"grad of shape {tuple(grad.shape)} does not match weight {tuple(weight.shape)}")


def impress_linear_args(x: Tensor, weight: Tensor, words: Tensor, alpha: Tensor, bias: Tensor | None) -> None:
    check_combine(weight, words, alpha)
    check_linear(x, weight, bias)


def impress_linear_grad_input_args(grad: Tensor, weight: Tensor, words: Tensor, alpha: Tensor) -> None:
    check_combine(weight, words, alpha)
    check_grad_output(grad, weight)


def check_task_alphas(weight: Tensor, words: Tensor, alphas: Tensor | None) -> int:
    """The tasks of an all-tasks or task-per-row linear: `alphas` `[S, T]` (per layer) or
    `[S, T, rows]` (per output channel) over the T packed masks, or None for S = T tasks each
    its own mask (SupSup's). Returns S."""
    if weight.dim() != 2:
        raise ValueError(f"a task linear needs a 2-D weight, got shape {tuple(weight.shape)}")
    t, rows = check_packed_words(weight, words)
    if alphas is None:
        return t
    if not alphas.is_floating_point():
        raise TypeError(f"alphas must be a floating-point tensor, got {alphas.dtype}")
    if alphas.dim() not in (2, 3) or alphas.shape[0] < 1 or tuple(alphas.shape[1:]) not in ((t,), (t, rows)):
        raise ValueError(
            f"alphas must have shape [tasks, {t}] (per layer) or [tasks, {t}, {rows}] (per output channel) "
            f"for {t} masks, with at least one task, got {tuple(alphas.shape)}"
        )
    return alphas.shape[0]


def check_task_input(x: Tensor, weight: Tensor) -> None:
    if x.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"input must be [rows, {weight.shape[1]}] for a weight of shape {tuple(weight.shape)}, got {tuple(x.shape)}"
        )
    if x.dtype != weight.dtype:
        raise TypeError(f"input dtype {x.dtype} differs from weight dtype {weight.dtype}")


def every_task_linear_args(x: Tensor, weight: Tensor, words: Tensor, alphas: Tensor | None) -> None:
    check_task_alphas(weight, words, alphas)
    check_task_input(x, weight)
    check_same_device(x=x, weight=weight, words=words, alphas=alphas)


def task_row_linear_args(x: Tensor, weight: Tensor, words: Tensor, alphas: Tensor | None, task: Tensor) -> None:
    check_task_alphas(weight, words, alphas)
    check_task_input(x, weight)
    if task.dtype != torch.int64 or tuple(task.shape) != (x.shape[0],):
        raise ValueError(
            f"task must be int64 of shape [{x.shape[0]}] (one task per input row), got {task.dtype} {tuple(task.shape)}"
        )
    check_same_device(x=x, weight=weight, words=words, alphas=alphas, task=task)


def check_task_ids(task: Tensor, num_tasks: int) -> None:
    """Every row's task is one of the `num_tasks` (a data check: outside fake tensors only)."""
    if task.numel():
        check_task_range(int(task.min()), int(task.max()), num_tasks)


def check_task_range(low: int, high: int, num_tasks: int) -> None:
    """Task ids from `low` to `high` are among the `num_tasks`."""
    if not (0 <= low and high < num_tasks):
        raise IndexError(f"task ids must lie in [0, {num_tasks}), got {low}..{high}")


def masked_weight_args(weight: Tensor, words: Tensor) -> None:
    t, _ = check_packed_words(weight, words)
    if t != 1:
        raise ValueError(f"masked_weight takes words of one mask, got {t} (shape {tuple(words.shape)})")
    check_same_device(weight=weight, words=words)


def popup_pack_args(scores: Tensor, k: int) -> None:
    check_k(scores, k, packed=True)


def popup_weight_args(weight: Tensor, scores: Tensor, k: int) -> None:
    check_weight_scores(weight, scores)
    check_k(scores, k)


def popup_weight_grad_scores_args(grad: Tensor, weight: Tensor, scores: Tensor) -> None:
    check_weight_scores(weight, scores)
    check_weight_scores(grad, scores)
