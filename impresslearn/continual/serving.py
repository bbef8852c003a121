"""Answering a stream of requests, each with a task or none, in batches mixed across tasks
(docs/design.md §2.6, §7.10).

    serve(model, requests, batch_size=128, ...)   yields an Answer per request, in order

A batch takes the next `batch_size` requests whatever their tasks: those without a task get one
inferred per sample (exhaustive by default: every task's score over the packed bits; or one-shot
from each sample's gradient), then the whole batch runs in one forward, each sample under its own
task (`TaskRows`). Nothing is built per task: memory is the model's and one pass's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn as nn
from torch import Tensor

from .inference import infer_sample_tasks, num_tasks, rows_forward


@dataclasses.dataclass(frozen=True)
class Answer:
    """The model's `output` for request `index` (its position in the stream), under `task`, which
    was given or `inferred`."""

    index: int
    output: Tensor
    task: int
    inferred: bool


def serve(
    model: nn.Module,
    requests: Iterable[tuple[Tensor, int | None]],
    *,
    batch_size: int = 128,
    objective: str = "H",
    method: str = "exhaustive",
    classes: int = 10,
    on_batch: Callable[[int], None] | None = None,
) -> Iterator[Answer]:
    """Answer `requests` (pairs of one input, without a batch dimension, and its task or None) in
    batches of `batch_size`; `on_batch(n)` is called after each batch of n (a progress bar's
    update). Tasks without a label are inferred per sample by `method` ("exhaustive" or
    "oneshot") with `objective` ("H" or "G")."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    n = num_tasks(model)
    device = next(model.buffers()).device
    pending: list[tuple[Tensor, int | None]] = []
    index = 0

    def flush() -> Iterator[Answer]:
        nonlocal index
        x = torch.stack([r[0] for r in pending]).to(device)
        given = [r[1] for r in pending]
        for t in given:
            if t is not None and not (isinstance(t, int) and 0 <= t < n):
                raise ValueError(f"a request's task must be an int in [0, {n}) or None, got {t!r}")
        tasks = torch.tensor([-1 if t is None else t for t in given], device=device)
        unknown = tasks < 0
        if bool(unknown.any()):
            tasks[unknown] = infer_sample_tasks(model, x[unknown], objective, method=method, classes=classes)
        out = rows_forward(model, x, tasks)
        for i, t in enumerate(tasks.tolist()):
            yield Answer(index + i, out[i], t, given[i] is None)
        index += len(pending)
        if on_batch is not None:
            on_batch(len(pending))
        pending.clear()

    for request in requests:
        pending.append(request)
        if len(pending) == batch_size:
            yield from flush()
    if pending:
        yield from flush()
