"""The primitives, declared once: the set every backend is held to (docs/design.md §5.1).

A primitive is a tensors-in, tensors-out function with one signature on every backend, what it
refuses (`check`, from `impresslearn.checks`) and the shape of what it returns (`fake`): the ops
(`impresslearn.ops`) and the native library's fakes are made from these. Each backend module
(`impresslearn.reference`, `impresslearn.native`, `impresslearn.kernels`) says which it
implements in a `KERNELS` table ({name: function}); the reference implements them all.
Where a backend has no kernel of its own, the declaration says what runs instead, and nothing
else may:

    composed   built from the backend's own kernels of other primitives (a fused linear from
               its combine: at batch sizes that train, combine then one dense GEMM is what a
               fused kernel must beat)
    portable   the reference's code, plain PyTorch that runs on any device as fast as a kernel
               would (one elementwise pass): a backend need not repeat it

Any other gap is an error (`MissingKernel`), never a silent run of the reference: a kernel whose
name is misspelt fails its tests instead of comparing the reference with itself.

    PRIMITIVES                  name -> Primitive (parameters, what it computes, check, fake, fallbacks)
    resolve(kernels, name, reference_kernels) -> Resolved(fn, how)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from . import checks
from .format import words_shape


@dataclasses.dataclass(frozen=True)
class Primitive:
    """One primitive: its `params` (every backend's function takes exactly these, in order),
    `summary` (what it computes, for docs and doctor), `check(*args)` (what it refuses, in a
    sentence), `fake(*args)` (an empty result of the right shape and dtype, for torch.compile),
    and what runs where a backend has no kernel: `compose(*kernels of composed_from)`, or with
    `portable` the reference's code."""

    name: str
    params: tuple[str, ...]
    summary: str
    check: Callable[..., None]
    fake: Callable[..., torch.Tensor]
    composed_from: tuple[str, ...] = ()
    compose: Callable[..., Callable] | None = None
    portable: bool = False

    def __post_init__(self):
        if bool(self.composed_from) != (self.compose is not None):
            raise ValueError(f"primitive {self.name}: composed_from and compose go together")


class MissingKernel(NotImplementedError):
    """A backend was asked for a primitive it has no kernel for and no declared fallback."""


@dataclasses.dataclass(frozen=True)
class Resolved:
    """What runs for one primitive on one backend: `fn`, and `how` it was found: "kernel" (the
    backend's own), "composed" (from its kernels of `Primitive.composed_from`) or "portable"
    (the reference's code)."""

    fn: Callable
    how: str


def _linear(combine):
    return lambda x, weight, words, alpha, bias: F.linear(x, combine(weight, words, alpha), bias)


def _grad_input(combine):
    return lambda grad, weight, words, alpha: grad @ combine(weight, words, alpha)


def _masked_weight(combine):
    return lambda weight, words: combine(weight, words, torch.ones(1, dtype=weight.dtype, device=weight.device))


def _popup_weight(popup_mask):
    return lambda weight, scores, k: weight * popup_mask(scores.abs(), k)


def task_weight(combine, masked_weight, weight, words, alphas, s: int):
    """Task `s`'s effective weight: its own mask over the weight (alphas None) or its alphas."""
    if alphas is None:
        return masked_weight(weight, words[s : s + 1])
    return combine(weight, words, alphas[s])


def task_count(words, alphas) -> int:
    return words.shape[0] if alphas is None else alphas.shape[0]


def _every_task_linear(combine, masked_weight):
    # one task's weight at a time: memory of one weight whatever the number of tasks (docs/design.md §7.10)
    def every_task_linear(x, weight, words, alphas):
        out = x.new_empty((task_count(words, alphas), x.shape[0], weight.shape[0]))
        for s in range(out.shape[0]):
            torch.mm(x, task_weight(combine, masked_weight, weight, words, alphas, s).t(), out=out[s])
        return out

    return every_task_linear


def task_segments(task: torch.Tensor, num_tasks: int) -> tuple[torch.Tensor | None, list[int]]:
    """(order, counts): the rows grouped by task (`order` None where they already are, as a
    batch repeated task by task), and how many rows each task has."""
    counts = torch.bincount(task, minlength=num_tasks).tolist()
    if task.numel() < 2 or bool((task[1:] >= task[:-1]).all()):
        return None, counts
    return torch.argsort(task, stable=True), counts


def _task_row_linear(combine, masked_weight):
    def task_row_linear(x, weight, words, alphas, task):
        order, counts = task_segments(task, task_count(words, alphas))
        xs = x if order is None else x[order]
        out = x.new_empty((x.shape[0], weight.shape[0]))
        start = 0
        for s, n in enumerate(counts):
            if n:
                w_s = task_weight(combine, masked_weight, weight, words, alphas, s)
                torch.mm(xs[start : start + n], w_s.t(), out=out[start : start + n])
            start += n
        if order is not None:
            out = torch.empty_like(out).index_copy_(0, order, out)
        return out

    return task_row_linear


def _like(t: torch.Tensor) -> torch.Tensor:
    return t.new_empty(t.shape)


PRIMITIVES: dict[str, Primitive] = {
    p.name: p
    for p in (
        Primitive(
            "combine",
            ("weight", "words", "alpha"),
            "weight * Σ_t alpha[t] * masks[t] from the packed words",
            check=checks.check_combine,
            fake=lambda weight, words, alpha: _like(weight),
        ),
        Primitive(
            "combine_grad_alpha",
            ("grad", "weight", "words", "alpha"),
            "d alpha[t] = Σ grad ⊙ weight ⊙ masks[t] (per row for per-channel alpha)",
            check=checks.combine_grad_alpha_args,
            fake=lambda grad, weight, words, alpha: _like(alpha),
        ),
        Primitive(
            "impress_linear",
            ("x", "weight", "words", "alpha", "bias"),
            "F.linear(x, combine(weight, words, alpha), bias)",
            check=checks.impress_linear_args,
            fake=lambda x, weight, words, alpha, bias: x.new_empty((*x.shape[:-1], weight.shape[0])),
            composed_from=("combine",),
            compose=_linear,
        ),
        Primitive(
            "impress_linear_grad_input",
            ("grad", "weight", "words", "alpha"),
            "grad @ combine(weight, words, alpha): impress_linear's input gradient",
            check=checks.impress_linear_grad_input_args,
            fake=lambda grad, weight, words, alpha: grad.new_empty((*grad.shape[:-1], weight.shape[1])),
            composed_from=("combine",),
            compose=_grad_input,
        ),
        Primitive(
            "masked_weight",
            ("weight", "words"),
            "weight * masks[0]: one packed mask over the weight (a finished task's effective weight)",
            check=checks.masked_weight_args,
            fake=lambda weight, words: _like(weight),
            composed_from=("combine",),
            compose=_masked_weight,
        ),
        Primitive(
            "every_task_linear",
            ("x", "weight", "words", "alphas"),
            "[S, rows, N]: x @ W_eff(s)^T for every task s (alphas [S, T] / [S, T, N], or None: task s is mask s)",
            check=checks.every_task_linear_args,
            fake=lambda x, weight, words, alphas: x.new_empty((task_count(words, alphas), x.shape[0], weight.shape[0])),
            composed_from=("combine", "masked_weight"),
            compose=_every_task_linear,
        ),
        Primitive(
            "task_row_linear",
            ("x", "weight", "words", "alphas", "task"),
            "[rows, N]: x[i] @ W_eff(task[i])^T, rows grouped by task (alphas as every_task_linear's)",
            check=checks.task_row_linear_args,
            fake=lambda x, weight, words, alphas, task: x.new_empty((x.shape[0], weight.shape[0])),
            composed_from=("combine", "masked_weight"),
            compose=_task_row_linear,
        ),
        Primitive(
            "popup_mask",
            ("scores", "k"),
            "1.0 at the k largest scores (ties toward the lower flat index), else 0.0",
            check=checks.check_k,
            fake=lambda scores, k: _like(scores),
        ),
        Primitive(
            "popup_pack",
            ("scores", "k"),
            "popup_mask as packed words [1, rows, nw]",
            check=checks.popup_pack_args,
            fake=lambda scores, k: scores.new_empty(words_shape(scores.shape), dtype=torch.int32),
        ),
        Primitive(
            "popup_weight",
            ("weight", "scores", "k"),
            "weight * popup_mask(abs(scores), k): an edge-popup layer's effective weight",
            check=checks.popup_weight_args,
            fake=lambda weight, scores, k: _like(scores),
            composed_from=("popup_mask",),
            compose=_popup_weight,
        ),
        Primitive(
            "popup_weight_grad_scores",
            ("grad", "weight", "scores"),
            "grad * weight * sgn(scores): popup_weight's scores gradient",
            check=checks.popup_weight_grad_scores_args,
            fake=lambda grad, weight, scores: _like(scores),
            portable=True,
        ),
        Primitive(
            "threshold_mask", ("scores",), "1.0 where scores >= 0, else 0.0", check=checks.check_scores, fake=_like, portable=True
        ),
        Primitive(
            "threshold_weight",
            ("weight", "scores"),
            "weight * (scores >= 0)",
            check=checks.check_weight_scores,
            fake=lambda weight, scores: _like(scores),
            portable=True,
        ),
        Primitive(
            "pack_bits",
            ("bits",),
            "bool [T, rows, cols] as int32 words [T, rows, ceil(cols / 32)]",
            check=checks.check_bits,
            fake=lambda bits: bits.new_empty(words_shape(bits.shape[1:], bits.shape[0]), dtype=torch.int32),
            portable=True,
        ),
        Primitive(
            "unpack_bits",
            ("words", "cols"),
            "int32 words [T, rows, nw] as bool [T, rows, cols]",
            check=checks.check_words,
            fake=lambda words, cols: words.new_empty((words.shape[0], words.shape[1], cols), dtype=torch.bool),
            portable=True,
        ),
    )
}


def resolve(
    kernels: Mapping[str, Callable], name: str, reference_kernels: Mapping[str, Callable], backend: str = "this backend"
) -> Resolved:
    """The function a backend with `kernels` runs for primitive `name`, by the declaration's
    rules; `MissingKernel` (a sentence naming the backend) where none applies."""
    if name not in PRIMITIVES:
        raise KeyError(f"{name!r} is not a primitive; the primitives are {', '.join(PRIMITIVES)}")
    spec = PRIMITIVES[name]
    if name in kernels:
        return Resolved(kernels[name], "kernel")
    if spec.compose is not None and all(base in kernels for base in spec.composed_from):
        return Resolved(spec.compose(*(kernels[base] for base in spec.composed_from)), "composed")
    if spec.portable:
        return Resolved(reference_kernels[name], "portable")
    raise MissingKernel(
        f"backend {backend} has no {name} kernel, and {name} declares no fallback "
        f"({'no composition' if spec.compose is None else 'composed from ' + ', '.join(spec.composed_from)}"
        f"{' it lacks' if spec.compose is not None else ''}, not portable)"
    )
