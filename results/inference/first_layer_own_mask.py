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
from impresslearn.format import PackedMasks
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
    cfg = RunConfig(data_root=a.data_root, preset="supsup", basis_size=10, per_channel=True,
                    new_tasks=a.new_tasks, incorrect_tasks=0, cache=str(ROOT / ".mask-cache"), progress=False)
    run = Runner(cfg)
    run.results["supsup"] = {}
    new = run.tasks.new
    n = len(new)
    supsup, info = run.learn_masks(new, "SupSup", matrix=False)
    basis = run.build_basis()
    first = bb.mask_layers(supsup)[0][0]
    own = masks.task_masks(supsup)[first]            # the n tasks' own first-layer masks
    layer_basis: dict[str, PackedMasks] = {**basis, first: own}
    model = bb.impress_model(run.backbone, layer_basis, per_channel=True, num_tasks=n).to(run.device)
    layers = dict(impress_layers(model))
    with torch.no_grad():  # task s's first layer: its own mask alone (alpha one-hot at s, every channel)
        for s in range(n):
            layers[first].alpha[s].zero_()
            layers[first].alpha[s][s] = 1.0
    fits, acc = [], []
    for i, t in enumerate(new):
        set_task(model, i)
        params = [m.alpha[i] for name, m in layers.items() if name != first]
        t0 = time.time()
        res = fit(model, params, run.alpha_batches(t, seed=run.data_seed(10_000 + i, t)), run.alpha_train,
                  desc=f"alpha {i + 1}/{n}", progress=False)
        fits.append({**res, "seconds": round(time.time() - t0, 1)})
        acc.append(metrics.accuracy(model, run.test_batches(t), task=i))
        print(f"[{time.time() - start:7.1f}s] task {i + 1}/{n}: {acc[-1]:.4f} (SupSup mask {info['task_acc'][i]:.4f})",
              file=sys.stderr)
    batches = lambda t: run.test_batches(t, 128, limit=a.gn_batches, shuffle=True)  # noqa: E731
    diagnosis, found = [], []
    for objective in ("G", "H"):
        diagnosis.append(inference.diagnose_superposition(model, batches, new, objective=objective,
                                                          classes=run.backbone.classes))
        for method in ("oneshot", "exhaustive"):
            t0 = time.time()
            r = inference.task_inference(model, batches, new, objective=objective, method=method,
                                         classes=run.backbone.classes)
            r["seconds"] = round(time.time() - t0, 1)
            found.append(r)
            print(f"[{time.time() - start:7.1f}s] {objective} {method}: task found for {r['task_acc']:.4f} of "
                  f"{r['batches']} batches, accuracy {r['acc']:.4f}", file=sys.stderr)
    own_bytes = storage.supsup_bytes_packed({first: tuple(own.shape)})  # as SupSup's are counted: 32-bit words
    alpha_bytes = sum(m.alpha[0].numel() * 4 for name, m in layers.items() if name != first)
    result = {
        "command": "python results/inference/first_layer_own_mask.py",
        "config": {"preset": "supsup", "basis": "heterogeneous", "basis_size": 10, "per_channel": True,
                   "new_tasks": n, "first_layer": first, "gn_batches": a.gn_batches},
        "tasks": [run.tasks.stream.describe(t) for t in new],
        "task_acc": acc, "mean_acc": sum(acc) / n,
        "supsup_task_acc": info["task_acc"], "supsup_mean_acc": info["mean_acc"],
        "fits": fits,
        "storage_per_task": {"first_layer_mask_bytes": own_bytes, "alpha_bytes": alpha_bytes,
                             "total": own_bytes + alpha_bytes,
                             "supsup_packed": storage.supsup_bytes_packed(bb.weight_shapes(supsup))},
        "task_inference": found, "task_inference_diagnosis": diagnosis,
        "machine": {"platform": platform.platform(), "cpus": torch.get_num_threads(), "torch": torch.__version__},
        "elapsed_s": round(time.time() - start, 1),
    }
    Path(a.out).write_text(json.dumps(result, indent=1))
    print(f"results: {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
