"""Does one-shot inference over ImpressLearn tasks come back when each task's first layer is its own?

The diagnosis (docs/results.md, "Task inference without labels") finds all of SupSup's one-shot
signal in the first layer (the image matched against each task's first-layer mask) and none in
the first layer of per-channel ImpressLearn tasks, which mixes the basis masks. The causal test:
the same 20 PermutedMNIST tasks and settings as `impresslearn-per-channel.json` (SupSup's
settings, per-channel alphas over K = 10 heterogeneous basis masks), except that each task's
first layer is its own SupSup mask (learned on the task, as the SupSup run learns it) and only
the later layers' alphas are fitted. Then one-shot G and H, the per-layer diagnosis, and the
accuracy with labels, beside the all-alpha tasks of that file.

    python results/inference/first_layer_own_mask.py [--data-root ../shared/data]

writes results/inference/first-layer-own-mask.json (masks come from, and go to, .mask-cache).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from impresslearn.continual import backbone as bb
from impresslearn.continual import inference, masks, metrics, storage
from impresslearn.continual.training import fit
from impresslearn.experiments import RunConfig, Runner
from impresslearn.layers import impress_layers, set_task

ROOT = Path(__file__).resolve().parents[2]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--new-tasks", type=int, default=20)
    p.add_argument("--gn-batches", type=int, default=20)
    p.add_argument("--out", default=str(ROOT / "results" / "inference" / "first-layer-own-mask.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()
    cfg = RunConfig(
        data_root=a.data_root,
        preset="supsup",
        basis_size=10,
        per_channel=True,
        new_tasks=a.new_tasks,
        incorrect_tasks=0,
        cache=str(ROOT / ".mask-cache"),
        progress=False,
    )
    run = Runner(cfg)
    run.results["supsup"] = {}
    new = run.tasks.new
    n = len(new)
    supsup, info = run.learn_masks(new, "SupSup", matrix=False)
    basis = run.build_basis()
    # a hybrid-first model (its first layer a SupSup mask per task) whose masks are the tasks' own
    # from the SupSup run, not learned with the alphas as `--hybrid first` learns them
    first = bb.first_layer_name(bb.network(run.backbone))
    model = bb.impress_model(run.backbone, basis, per_channel=True, num_tasks=n, hybrid="first").to(run.device)
    model.get_submodule(first).load_masks(masks.task_masks(supsup)[first])
    layers = dict(impress_layers(model))
    fits, acc = [], []
    for i, t in enumerate(new):
        set_task(model, i)
        params = [m.task_floats(i) for m in layers.values()]  # the alphas only: the first layer's mask stays
        t0 = time.time()
        res = fit(
            model,
            params,
            run.alpha_batches(t, seed=run.data_seed(10_000 + i, t)),
            run.alpha_train,
            desc=f"alpha {i + 1}/{n}",
            progress=False,
        )
        fits.append({**res, "seconds": round(time.time() - t0, 1)})
        acc.append(metrics.accuracy(model, run.test_batches(t), task=i))
        print(
            f"[{time.time() - start:7.1f}s] task {i + 1}/{n}: {acc[-1]:.4f} (SupSup mask {info['task_acc'][i]:.4f})",
            file=sys.stderr,
        )
    sup = inference.superposition_model(run.backbone, model)  # takes a task mixture in every layer
    batches = lambda t: run.test_batches(t, 128, limit=a.gn_batches, shuffle=True)  # noqa: E731
    diagnosis, found = [], []
    for objective in ("G", "H"):
        diagnosis.append(inference.diagnose_superposition(sup, batches, new, objective=objective, classes=run.backbone.classes))
        for method in ("oneshot", "exhaustive"):
            t0 = time.time()
            r = inference.task_inference(sup, batches, new, objective=objective, method=method, classes=run.backbone.classes)
            r["seconds"] = round(time.time() - t0, 1)
            found.append(r)
            print(
                f"[{time.time() - start:7.1f}s] {objective} {method}: task found for {r['task_acc']:.4f} of "
                f"{r['batches']} batches, accuracy {r['acc']:.4f}",
                file=sys.stderr,
            )
    shapes = bb.weight_shapes(supsup)
    bytes_ = storage.impress_bytes(shapes, cfg.basis_size, per_channel=True, hybrid_layer=first)
    result = {
        "command": "python results/inference/first_layer_own_mask.py",
        "config": {
            "preset": "supsup",
            "basis": "heterogeneous",
            "basis_size": 10,
            "per_channel": True,
            "new_tasks": n,
            "first_layer": first,
            "gn_batches": a.gn_batches,
        },
        "tasks": [run.tasks.stream.describe(t) for t in new],
        "task_acc": acc,
        "mean_acc": sum(acc) / n,
        "supsup_task_acc": info["task_acc"],
        "supsup_mean_acc": info["mean_acc"],
        "fits": fits,
        "storage_per_task": {
            "first_layer_mask_bytes": bytes_.mask_bytes,
            "alpha_bytes": bytes_.alpha_bytes,
            "total": int(bytes_.per_task),
            "supsup_packed": storage.supsup_bytes_packed(shapes),
        },
        "task_inference": found,
        "task_inference_diagnosis": diagnosis,
        "machine": {"platform": platform.platform(), "cpus": torch.get_num_threads(), "torch": torch.__version__},
        "elapsed_s": round(time.time() - start, 1),
    }
    Path(a.out).write_text(json.dumps(result, indent=1))
    print(f"results: {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
