"""Task inference without task labels (SupSup's GN scenario), for SupSup and ImpressLearn tasks.

The `n` learned tasks are superposed with coefficients `beta_s = 1/n`; the gradient of an
objective with respect to beta tells which task the data belongs to (the most negative
component). For SupSup masks the superposition `W ⊙ Σ_s beta_s M_s` is an Impress model whose
basis is the n task masks and whose task s has a one-hot alpha (`superposition_model`); for
ImpressLearn tasks it is `alpha = beta @ A` over the same basis, which the Impress layers
compute when given a mixture (`set_task(model, beta)`), through the same combine op.

    entropy(logits)                H: per-sample output entropy, averaged over the batch
    g_objective(logits, classes)   G: logsumexp over all outputs with the real ones detached,
                                   so only the superfluous neurons carry gradient (SupSup's)
    sample_score(name, classes)    what exhaustive inference compares across tasks, per sample:
                                   H the entropy; G the log of the probability on the superfluous
                                   outputs (G's own value, a logsumexp over every output, grows
                                   with a confident task's real logits and would pick the worst)
    infer_task(model, x, ...)      one-shot (one gradient), binary search (halve the
                                   candidates by gradient until one is left), or exhaustive
                                   (every task's score on the batch, the lowest wins: exact)
    every_task_logits(model, x)    [n, B, C]: every task's outputs, the batch repeated once per
                                   task with a task per sample (TaskRows): one forward over the
                                   packed bits, no dense weight of any task kept
    sample_gradients(model, x, f)  [B, n]: each sample's own d f / d beta at the uniform mixture,
                                   from one forward and one backward (SampleMixture)
    diagnose_superposition(...)    why one-shot works or not: the uniform superposition's own
                                   accuracy and output scale against the tasks', where the
                                   true task's gradient component ranks, and which layers'
                                   shares of the gradient point at it (layer_gradients)
    infer_sample_tasks(model, x)   a task for each sample of a batch that mixes tasks: one-shot
                                   from per-sample gradients or exhaustive per sample
    task_inference(model, ...)     how often the right task is found, and the accuracy with the
                                   inferred task, over test batches of every task, whole
                                   ("batch"), from their first image ("first") or mixed across
                                   tasks and inferred per sample ("mixed")
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from ..choices import Choice
from ..layers import (
    ImpressLayer,
    SampleMixture,
    SupermaskLayer,
    TaskRows,
    impress_layers,
    per_sample_refusals,
    per_sample_supported,
    set_task,
    supermask_layers,
    task_modules,
)
from .backbone import BackboneConfig, impress_model
from .masks import task_masks

# Input elements per forward of every_task_logits (the batch repeated for a chunk of the tasks):
# 1 Mi floats, 4 MiB of input, what bounds the activations of a pass whatever the task count.
# Each task's rows are multiplied apart anyway, so larger passes gain nothing; a ViT's 85 tasks
# of 16 images in one pass ran 1.45x slower than 21 at a time (cache misses on its activations).
PASS_ELEMENTS = 1 << 20


class GnMethod(Choice):
    """How the task is searched (docs/design.md §2.6)."""

    ONESHOT = "oneshot"
    BINARY = "binary"
    EXHAUSTIVE = "exhaustive"


class Objective(Choice):
    G = "G"  # the superfluous outputs' log-sum-exp
    H = "H"  # the entropy of the prediction


class Inputs(Choice):
    BATCH = "batch"  # the task of a whole batch
    FIRST = "first"  # from its first image
    MIXED = "mixed"  # batches mixing every task's samples, a task per sample


METHODS = GnMethod.names()
OBJECTIVES = Objective.names()
INPUTS = Inputs.names()


def entropy(logits: Tensor) -> Tensor:
    """H: mean over the batch of the entropy of softmax(logits)."""
    logp = logits.log_softmax(1)
    return -(logp.exp() * logp).sum(1).mean()


def g_objective(logits: Tensor, classes: int = 10) -> Tensor:
    """G: mean over the batch of logsumexp of all outputs, the first `classes` (real) outputs
    detached, so that only the superfluous outputs pass gradient to beta."""
    if logits.shape[1] <= classes:
        raise ValueError(
            f"G needs superfluous outputs: the model has {logits.shape[1]} outputs for {classes} classes "
            "(build it with more outputs, e.g. outputs=100)"
        )
    real = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
    real[:classes] = True
    mixed = torch.where(real, logits.detach(), logits)
    return mixed.logsumexp(1).mean()


def sample_objective(name: str, classes: int = 10) -> Callable[[Tensor], Tensor]:
    """The objective of each sample: logits [..., C] -> values [...] (what exhaustive inference
    compares across tasks)."""
    if name == "H":

        def h(logits: Tensor) -> Tensor:
            logp = logits.log_softmax(-1)
            return -(logp.exp() * logp).sum(-1)

        return h
    if name == "G":

        def g(logits: Tensor) -> Tensor:
            if logits.shape[-1] <= classes:
                raise ValueError(
                    f"G needs superfluous outputs: the model has {logits.shape[-1]} outputs for "
                    f"{classes} classes (build it with more outputs, e.g. outputs=100)"
                )
            real = torch.arange(logits.shape[-1], device=logits.device) < classes
            return torch.where(real, logits.detach(), logits).logsumexp(-1)  # as g_objective, per sample

        return g
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {name!r}")


def sample_score(name: str, classes: int = 10) -> Callable[[Tensor], Tensor]:
    """The score exhaustive inference minimises over tasks, per sample: logits [..., C] -> [...].
    H: the entropy. G: log of the softmax mass on the superfluous outputs (the ones G's gradient
    flows through; a task that fits puts almost none there)."""
    if name == "H":
        return sample_objective("H", classes)
    if name == "G":

        def g(logits: Tensor) -> Tensor:
            if logits.shape[-1] <= classes:
                raise ValueError(
                    f"G needs superfluous outputs: the model has {logits.shape[-1]} outputs for "
                    f"{classes} classes (build it with more outputs, e.g. outputs=100)"
                )
            return logits[..., classes:].logsumexp(-1) - logits.logsumexp(-1)

        return g
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {name!r}")


def objective_fn(name: str, classes: int = 10) -> Callable[[Tensor], Tensor]:
    if name == "H":
        return entropy
    if name == "G":
        return lambda logits: g_objective(logits, classes)
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {name!r}")


def num_tasks(model: nn.Module) -> int:
    counts = {m.num_tasks for _, m in task_modules(model)}
    if len(counts) != 1:
        raise ValueError(f"task-aware modules disagree on the number of tasks: {sorted(counts)}")
    return counts.pop()


def superposition_model(cfg: BackboneConfig, model: nn.Module, tasks: Sequence[int] | None = None) -> nn.Module:
    """An Impress model whose task i computes exactly as task `tasks[i]` of `model` (all tasks by
    default) and which takes a task mixture in every layer. A SupSup layer's masks become that
    layer's basis, task i's alpha one-hot at i, so a mixture beta computes `W ⊙ Σ_s beta_s M_s`,
    SupSup's superposition; an Impress layer (a hybrid model's others) keeps its basis and the
    tasks' alphas."""
    if not supermask_layers(model):
        raise ValueError(
            "superposition_model needs a SupSup or hybrid model (Supermask layers); an Impress model takes a mixture as it is"
        )
    picked = list(range(num_tasks(model))) if tasks is None else [int(t) for t in tasks]
    own = task_masks(model, picked)
    kept = dict(impress_layers(model))
    per_channel = any(m.per_channel for m in kept.values())
    out = impress_model(
        cfg, {**own, **{name: m.basis for name, m in kept.items()}}, per_channel=per_channel, num_tasks=len(picked)
    )
    with torch.no_grad():
        for name, m in impress_layers(out):
            for i, s in enumerate(picked):
                if name in own:  # one-hot at i (in every output channel when per channel)
                    one_hot = torch.zeros(m.alpha_shape())
                    one_hot[i] = 1.0
                    m.load_alpha(i, one_hot)
                else:
                    m.load_alpha(i, kept[name].task_alpha(s).detach())
    return out.to(next(model.buffers()).device)


def _gradient(model: nn.Module, x: Tensor, objective, beta: Tensor) -> Tensor:
    beta = beta.detach().requires_grad_(True)
    set_task(model, beta)
    loss = objective(model(x))
    (g,) = torch.autograd.grad(loss, beta)
    return g


def infer_task(
    model: nn.Module,
    x: Tensor,
    objective: str | Callable = "H",
    *,
    method: str = "oneshot",
    classes: int = 10,
    first_image: bool = False,
) -> int:
    """The task whose superposition coefficient has the most negative gradient of `objective`
    (one-shot), the survivor of repeatedly keeping the half of the candidates with the most
    negative gradients (binary), or the task with the lowest objective on the batch (exhaustive,
    `every_task_logits`). `first_image` infers from `x[:1]` only, as SupSup's paper does."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if first_image:
        x = x[:1]
    if method == "exhaustive":
        if not isinstance(objective, str):
            raise ValueError("exhaustive inference takes an objective by name ('G' or 'H')")
        with torch.no_grad():
            return int(sample_score(objective, classes)(every_task_logits(model, x)).mean(1).argmin())
    obj = objective_fn(objective, classes) if isinstance(objective, str) else objective
    n = num_tasks(model)
    device = x.device
    was_training = model.training
    model.eval()
    try:
        if method == "oneshot" or n == 1:
            g = _gradient(model, x, obj, torch.full((n,), 1.0 / n, device=device))
            return int(g.argmin())
        alive = torch.ones(n, dtype=torch.bool, device=device)
        while int(alive.sum()) > 1:
            beta = alive.float() / alive.sum()
            g = _gradient(model, x, obj, beta)
            keep = math.ceil(int(alive.sum()) / 2)
            g = torch.where(alive, g, torch.full_like(g, math.inf))
            alive = torch.zeros_like(alive)
            alive[torch.topk(g, keep, largest=False).indices] = True
        return int(alive.nonzero()[0])
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _evaluating(model: nn.Module):
    """The model in evaluation mode for the block; its training mode and selected task after."""
    was_training, task = model.training, next(m for _, m in task_modules(model)).task
    model.eval()
    try:
        yield
    finally:
        set_task(model, task)
        model.train(was_training)


@torch.no_grad()
def every_task_logits(model: nn.Module, x: Tensor, tasks_per_pass: int | None = None) -> Tensor:
    """`[n, B, C]`: the outputs of every task on `x`, in evaluation mode. Where every task-aware
    module takes a task per sample, the batch is repeated for `tasks_per_pass` tasks at a time
    (by default as many as keep a pass within PASS_ELEMENTS input elements) and run once with a
    task per row (the mask layers read the packed bits, one task's weight or tile at a time);
    otherwise one forward per task, which any converted model takes."""
    n = num_tasks(model)
    with _evaluating(model):
        if not per_sample_supported(model):
            outs = []
            for t in range(n):
                set_task(model, t)
                outs.append(model(x))
            return torch.stack(outs)
        b = x.shape[0]
        if tasks_per_pass is None:
            tasks_per_pass = max(1, PASS_ELEMENTS // max(1, x.numel()))
        outs = []
        for first in range(0, n, tasks_per_pass):
            chunk = min(n, first + tasks_per_pass) - first
            ids = torch.arange(first, first + chunk, device=x.device).repeat_interleave(b)
            set_task(model, TaskRows(ids))
            y = model(x.repeat(chunk, *([1] * (x.dim() - 1))))
            outs.append(y.reshape(chunk, b, *y.shape[1:]))
        return torch.cat(outs)


def sample_gradients(model: nn.Module, x: Tensor, objective: Callable[[Tensor], Tensor], beta: Tensor | None = None) -> Tensor:
    """`[B, n]`: for each sample alone, d objective(its outputs) / d beta at the mixture `beta`
    (default: uniform), in evaluation mode: one forward of the mixture and one backward, each
    mask layer adding its share `<dL/dy_i, y_s,i>` (SampleMixture). `objective` maps outputs
    `[B, C]` to per-sample values `[B]`."""
    n = num_tasks(model)
    if beta is None:
        beta = torch.full((n,), 1.0 / n, device=x.device)
    probe = torch.zeros((x.shape[0], n), device=x.device, requires_grad=True)
    with _evaluating(model), torch.enable_grad():
        set_task(model, SampleMixture(beta.detach(), probe))
        (g,) = torch.autograd.grad(objective(model(x)).sum(), probe)
        return g


def infer_sample_tasks(
    model: nn.Module, x: Tensor, objective: str = "H", *, method: str = "oneshot", classes: int = 10
) -> Tensor:
    """A task for each sample of `x` [B, ...] (a batch that may mix tasks): the most negative
    component of the sample's own gradient with respect to the uniform mixture (one-shot), or its
    lowest score over the tasks (exhaustive)."""
    if method == "oneshot":
        return sample_gradients(model, x, sample_objective(objective, classes)).argmin(1)
    if method == "exhaustive":
        return sample_score(objective, classes)(every_task_logits(model, x)).argmin(0)
    raise ValueError(f"per-sample inference takes 'oneshot' or 'exhaustive', got {method!r}")


@torch.no_grad()
def rows_forward(model: nn.Module, x: Tensor, tasks: Tensor) -> Tensor:
    """The outputs of `x` with sample i under task `tasks[i]`, in one forward where the model
    takes a task per sample, else one forward per task present (evaluation mode)."""
    with _evaluating(model):
        if per_sample_supported(model):
            set_task(model, TaskRows(tasks))
            return model(x)
        out = None
        for t in torch.unique(tasks).tolist():
            pick = tasks == t
            set_task(model, t)
            y = model(x[pick])
            if out is None:
                out = y.new_empty((x.shape[0], *y.shape[1:]))
            out[pick] = y
        return out


@torch.no_grad()
def _spread(logits: Tensor) -> float:
    """The mean over samples of the standard deviation of a sample's outputs."""
    return float(logits.float().std(-1).mean())


def diagnose_superposition(
    model: nn.Module, test_batches: Callable[[int], Iterable], tasks: Sequence[int], *, objective: str = "H", classes: int = 10
) -> dict:
    """What one-shot inference sees. The gradient at the uniform superposition only points at the
    right task where that superposition is itself a network whose outputs respond to the data:
    the output entropy is stationary at a uniform output, so a superposition whose outputs are
    nearly flat gives a gradient of second order, led by noise. Measured over the test batches
    of every task: the superposition's accuracy (classifying with it directly) and the spread of
    its outputs (std over outputs, mean over samples) against the tasks' own, how often the true task's component is the
    most negative (what one-shot picks) or the most positive; and, layer by layer, how often
    that layer's share of the gradient alone would pick the true task."""
    n = len(tasks)
    obj = objective_fn(objective, classes)
    uniform = torch.full((n,), 1.0 / n)
    layers = mixture_layers(model)
    by_layer = {name: 0 for name, _ in layers}
    most_neg = most_pos = batches = correct = samples = 0
    rank = 0.0
    mix_spread = task_spread = 0.0
    was_training = model.training
    model.eval()
    try:
        for s, stream_task in enumerate(tasks):
            for x, y in test_batches(stream_task):
                # one backward: the layers' shares sum to the whole one-shot gradient
                parts = layer_gradients(model, x, obj, uniform.to(x.device))
                g = sum(parts.values())
                most_neg += int(g.argmin()) == s
                for name, g_layer in parts.items():
                    by_layer[name] += int(g_layer.argmin()) == s
                most_pos += int(g.argmax()) == s
                rank += float((g < g[s]).sum())  # 0: the true task is the most negative
                with torch.no_grad():  # the model itself under the mixture: every layer superposes its tasks
                    set_task(model, uniform.to(x.device))
                    mix = model(x)
                    correct += int((mix[:, :classes].argmax(1) == y).sum())
                    mix_spread += _spread(mix)
                    set_task(model, s)
                    task_spread += _spread(model(x))
                samples += y.numel()
                batches += 1
    finally:
        model.train(was_training)
        set_task(model, 0)
    return {
        "objective": objective,
        "batches": batches,
        "superposition_acc": correct / samples,
        "superposition_output_std": mix_spread / batches,
        "task_output_std": task_spread / batches,
        "true_task_most_negative": most_neg / batches,
        "true_task_most_positive": most_pos / batches,
        "true_task_mean_rank": rank / batches,
        "true_task_most_negative_by_layer": {k: v / batches for k, v in by_layer.items()},
    }


def mixture_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers that superpose tasks under a mixture: Impress and SupSup layers."""
    return [(n, m) for n, m in task_modules(model) if isinstance(m, (ImpressLayer, SupermaskLayer))]


def layer_gradients(model: nn.Module, x: Tensor, objective: Callable[[Tensor], Tensor], beta: Tensor) -> dict[str, Tensor]:
    """The one-shot gradient split by layer: each Impress or SupSup layer gets its own copy of the
    mixture `beta`, so d objective / d beta_layer is that layer's share of the gradient (they sum
    to it)."""
    layers = mixture_layers(model)
    leaves = {name: beta.detach().clone().requires_grad_(True) for name, _ in layers}
    set_task(model, beta)  # every task-aware module (BatchNorm too) in mixture mode
    for name, layer in layers:
        layer.mixture = leaves[name]
    loss = objective(model(x))
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return dict(zip(leaves, grads))


def mixed_batches(test_batches: Callable[[int], Iterable], tasks: Sequence[int], seed: int = 0):
    """Batches whose samples come from every task, shuffled: (x, y, model task of each sample).
    Built from the tasks' own test batches, so that every sample is used once, in batches of
    their size."""
    xs, ys, ts = [], [], []
    for s, stream_task in enumerate(tasks):
        for x, y in test_batches(stream_task):
            xs.append(x)
            ys.append(y)
            ts.append(torch.full((y.shape[0],), s, dtype=torch.long, device=y.device))
    if not xs:
        return
    size = xs[0].shape[0]
    x, y, t = torch.cat(xs), torch.cat(ys), torch.cat(ts)
    order = torch.randperm(y.shape[0], generator=torch.Generator().manual_seed(seed)).to(y.device)
    for i in range(0, y.shape[0], size):
        pick = order[i : i + size]
        yield x[pick], y[pick], t[pick]


def task_inference(
    model: nn.Module,
    test_batches: Callable[[int], Iterable],
    tasks: Sequence[int],
    *,
    objective: str = "H",
    method: str = "oneshot",
    classes: int = 10,
    first_image: bool = False,
    inputs: str | None = None,
    progress: Callable[[], None] | None = None,
) -> dict:
    """For every model task s (data: stream task `tasks[s]`), infer the task of each test batch
    (`inputs` "batch", or "first": from its first image), or of each sample of batches that mix
    every task's samples ("mixed"). Returns the fraction of batches (samples, when mixed) whose
    task was found (`task_acc`), the classification accuracy with the inferred task (`acc`, wrong
    tasks included), the confusion counts and the samples per second of the inference itself."""
    inputs = inputs or ("first" if first_image else "batch")
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {INPUTS}, got {inputs!r}")
    first_image = inputs == "first"
    n = len(tasks)
    if n != num_tasks(model):
        raise ValueError(f"{n} stream tasks given for a model with {num_tasks(model)} tasks")
    if inputs == "mixed":
        return _mixed_inference(model, test_batches, tasks, objective, method, classes, progress)
    confusion = [[0] * n for _ in range(n)]
    found = batches = correct = samples = 0
    spent = 0.0
    for s, stream_task in enumerate(tasks):
        for x, y in test_batches(stream_task):
            t0 = time.perf_counter()
            guess = infer_task(model, x, objective, method=method, classes=classes, first_image=first_image)
            spent += time.perf_counter() - t0
            confusion[s][guess] += 1
            found += guess == s
            batches += 1
            set_task(model, guess)
            with torch.no_grad():
                model.eval()
                correct += (model(x).argmax(1) == y).sum().item()
            samples += y.numel()
            if progress is not None:
                progress()
    set_task(model, 0)
    return {
        "task_acc": found / batches,
        "acc": correct / samples,
        "batches": batches,
        "confusion": confusion,
        "objective": objective,
        "method": method,
        "first_image": first_image,
        "input": inputs,
        "samples_per_s": samples / spent if spent else None,
    }


def _mixed_inference(model, test_batches, tasks, objective, method, classes, progress) -> dict:
    n = len(tasks)
    refused = per_sample_refusals(model)
    if refused:
        raise ValueError(f"mixed batches need a task per sample, which {', '.join(refused)} cannot take")
    confusion = [[0] * n for _ in range(n)]
    found = correct = samples = batches = 0
    spent = 0.0
    for x, y, truth in mixed_batches(test_batches, tasks):
        t0 = time.perf_counter()
        guess = infer_sample_tasks(model, x, objective, method=method, classes=classes)
        spent += time.perf_counter() - t0
        pred = rows_forward(model, x, guess).argmax(1)  # each sample classified under its own inferred task
        for s, g in zip(truth.tolist(), guess.tolist()):
            confusion[s][g] += 1
        found += int((guess == truth).sum())
        correct += int((pred == y).sum())
        samples += y.numel()
        batches += 1
        if progress is not None:
            progress()
    return {
        "task_acc": found / samples,
        "acc": correct / samples,
        "batches": batches,
        "samples": samples,
        "confusion": confusion,
        "objective": objective,
        "method": method,
        "first_image": False,
        "input": "mixed",
        "samples_per_s": samples / spent if spent else None,
    }
