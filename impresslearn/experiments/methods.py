"""The ExSSNeT comparison behind `impresslearn compare` (`--methods supsup,ssnet,exssnet,exssnet-kkt`).

Each method learns the run's new tasks in sequence on its own model over the same frozen seeded
backbone, with the same data order per task. After every task the accuracy of every task so far
is measured (the accuracy matrix); a method's record, under its name in the results file
(`exssnet-kkt` as `exssnet_kkt`), holds the final accuracy per task, the matrix, backward
transfer, bytes per task (docs/design.md §2.8), seconds per task, the accuracy early in each
task's mask phase, KKT's choices, and a checkpoint round trip (saved with the trained weights
beside the seed, loaded into a fresh model, every task evaluated again).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from pathlib import Path

import torch

from ..checkpoint import load_checkpoint, save_checkpoint
from ..continual import backbone as bb
from ..continual import metrics, storage
from ..continual.training import num_steps
from ..layers import supermask_layers
from ..methods.exssnet import ExSSNeT
from ..seeding import init_backbone

DEFAULT_EARLY = (0.1, 0.25)


def result_key(method: str) -> str:
    return method.replace("-", "_")


def run_methods(runner) -> None:
    """Run every method of `runner.cfg.methods` (an `mnist.Runner`), saving after each; a method
    finished by an earlier start of the same run is taken from its results."""
    for method in runner.cfg.methods:
        key = result_key(method)
        done = runner.previous.get(key) if runner.resumed else None
        if isinstance(done, dict) and done.get("done"):
            runner.results[key] = done
            runner.log(f"{method}: finished by an earlier start, kept")
            continue
        runner.results[key] = run_method(runner, method)
        runner.save()
    runner.results["methods"] = list(runner.cfg.methods)


def run_method(runner, method: str) -> dict:
    cfg, tasks = runner.cfg, runner.tasks
    ecfg = cfg.exssnet_config(method)
    n = len(tasks.new)
    model = bb.supermask_model(runner.backbone, num_tasks=n).to(runner.device)
    learner = ExSSNeT(model, ecfg)
    acc = metrics.AccuracyMatrix(n)
    early = cfg.early_eval if cfg.early_eval is not None else DEFAULT_EARLY
    records = []
    for i, t in enumerate(tasks.new):
        seed = runner.data_seed(i, t)  # the same order for every method
        batches = tasks.stream.train(t, ecfg.mask.batch_size, seed=seed, device=runner.device)
        kkt_batches = tasks.stream.train(t, ecfg.mask.batch_size, seed=seed, device=runner.device)
        steps = num_steps(ecfg.mask, len(batches))
        probe_at = {max(1, math.ceil(f * steps)): f for f in early}
        curve: dict[str, float] = {}

        def probe(step, i=i, t=t, curve=curve):
            if step in probe_at:
                curve[f"{probe_at[step]:g}"] = metrics.accuracy(model, runner.test_batches(t), task=i)

        rec = learner.learn(i, batches, begin_batches=kkt_batches, probe=probe if early else None, progress=cfg.progress)
        rec["early_acc"] = curve
        acc.measure_row(i, lambda j: metrics.accuracy(model, runner.test_batches(tasks.new[j]), task=j))
        records.append(rec)
        kkt = rec.get("kkt")
        note = (
            f", KKT from task {kkt['source']}"
            if kkt and kkt["source"] is not None
            else (", KKT: none beats chance" if kkt else "")
        )
        runner.log(f"{method} task {i + 1}/{n} ({tasks.stream.describe(t)}): {acc.R[i][i]:.4f}{note} ({rec['seconds']:.1f}s)")
    return summarise(runner, method, model, learner, acc, records)


def summarise(runner, method: str, model, learner: ExSSNeT, acc: metrics.AccuracyMatrix, records: list) -> dict:
    shapes = bb.weight_shapes(bb.network(runner.backbone))
    new_entries = [r["new_entries"] for r in records]
    mask_bytes = storage.supsup_bytes_packed(shapes)
    per_task = storage.exssnet_bytes(shapes, new_entries) if learner.cfg.trains_weights else [mask_bytes] * len(records)
    smallest = [learner.task_bytes(i)["smallest"] for i in range(len(records))]
    out = {
        "method": method,
        "task_acc": acc.final,
        "mean_acc": acc.average_accuracy(),
        "acc_matrix": acc.to_dict(),
        "bwt": acc.backward_transfer(),
        "forgetting": acc.forgetting(),
        "bytes_per_task": per_task,
        "mean_bytes_per_task": sum(per_task) / len(per_task),
        # the same tasks in their smallest exact form: the mask coded for cold storage (§2.8)
        "smallest_bytes_per_task": smallest,
        "mean_smallest_bytes_per_task": sum(smallest) / len(smallest),
        "mask_bytes_per_task": mask_bytes,
        "new_entries": new_entries,
        "changed_entries": changed_entries(model),
        "seconds_per_task": [r["seconds"] for r in records],
        "early_acc": [r["early_acc"] for r in records],
        "kkt": [r.get("kkt") for r in records],
        "phases": [{k: r[k] for k in ("mask_phase", "weight_phase", "trained_entries") if k in r} for r in records],
        "training": {
            "mask": dataclasses.asdict(learner.cfg.mask),
            "weight": dataclasses.asdict(learner.cfg.weight) if learner.cfg.trains_weights else None,
        },
    }
    out["checkpoint"] = checkpoint_round_trip(runner, method, model, learner.cfg.trains_weights, acc.final)
    out["done"] = True
    return out


@torch.no_grad()
def changed_entries(model) -> int:
    """Weights that differ from their seed's value, counted (what a store beside the seed must hold)."""
    total = 0
    for _, m in supermask_layers(model):
        seed = init_backbone(m.weight.shape, init=m.init, seed=m.seed, density=m.scale_density).to(m.weight.device)
        total += int((m.weight != seed).sum())
    return total


def checkpoint_round_trip(runner, method: str, model, trained: bool, final: list) -> dict:
    """Save the method's model (masks, and the trained weights beside the seed), load it into a
    fresh model and evaluate every task again: `exact` when every accuracy and weight is equal."""
    n = len(runner.tasks.new)
    with tempfile.TemporaryDirectory() as tmp:
        folder = runner.folder if runner.folder is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{result_key(method)}.safetensors"
        start = time.time()
        save_checkpoint(path, model, include_trained=trained, metadata={"method": method})
        fresh = bb.supermask_model(runner.backbone, num_tasks=1).to(runner.device)
        load_checkpoint(path, fresh)
        again = [metrics.accuracy(fresh, runner.test_batches(t), task=j) for j, t in enumerate(runner.tasks.new)]
        same_weights = all(
            torch.equal(a.weight, b.weight) for (_, a), (_, b) in zip(supermask_layers(model), supermask_layers(fresh))
        )
        return {
            "file_bytes": path.stat().st_size,
            "tasks": n,
            "seconds": round(time.time() - start, 2),
            "task_acc": again,
            "exact": again == list(final) and same_weights,
        }
