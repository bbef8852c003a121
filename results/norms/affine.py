"""Per-task or frozen LayerNorm affine in a converted ViT: which keeps more accuracy per byte.

convert() freezes every LayerNorm's affine (docs/design.md §4.5). The alternative is a per-task
affine: each task trains its own LayerNorm weight and bias beside its masks (2 floats per
feature per norm, kept per task). This script measures both on the same seeded random ViT
(docs/own-model.md's small ViT on 28x28 digits), SupSup masks at density 0.5, PermutedMNIST tasks,
the same data order and steps: the per-task variant trains the LayerNorm parameters of the task
(reset to their initial values first) with the scores and restores each task's own at evaluation.

    python results/norms/affine.py --tasks 3 --epochs 2 --out results/norms/affine.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import impresslearn as il
from impresslearn.data import PermutedMNIST, load_mnist


class Digits(nn.Module):
    def __init__(self):
        super().__init__()
        self.vit = torchvision.models.VisionTransformer(
            image_size=28, patch_size=7, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=10
        )

    def forward(self, x):
        return self.vit(x.view(-1, 1, 28, 28).expand(-1, 3, -1, -1))


def norms(model):
    return [m for m in model.modules() if isinstance(m, nn.LayerNorm)]


def run(variant: str, stream, args) -> dict:
    torch.manual_seed(0)
    model = il.convert(Digits(), "supermask", density=0.5, num_tasks=args.tasks, seed=0)
    start = {id(m): (m.weight.detach().clone(), m.bias.detach().clone()) for m in norms(model)}
    kept: dict[int, list] = {}
    accs, t0 = [], time.time()
    for task in range(args.tasks):
        il.set_task(model, task)
        params = il.task_parameters(model, task)
        if variant == "per_task":
            for m in norms(model):
                with torch.no_grad():
                    m.weight.copy_(start[id(m)][0]), m.bias.copy_(start[id(m)][1])
                m.weight.requires_grad_(True), m.bias.requires_grad_(True)
                params += [m.weight, m.bias]
        opt = torch.optim.Adam(params, lr=args.lr)
        model.train()
        for _ in range(args.epochs):
            for x, y in stream.train(task, 128, seed=task):
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                opt.step()
        il.finish_task(model, task)
        if variant == "per_task":
            kept[task] = [(m.weight.detach().clone(), m.bias.detach().clone()) for m in norms(model)]
            for m in norms(model):
                m.weight.requires_grad_(False), m.bias.requires_grad_(False)
    model.eval()
    for task in range(args.tasks):
        il.set_task(model, task)
        if variant == "per_task":
            with torch.no_grad():
                for m, (w, b) in zip(norms(model), kept[task]):
                    m.weight.copy_(w), m.bias.copy_(b)
        with torch.no_grad():
            right = sum(int((model(x).argmax(1) == y).sum()) for x, y in stream.test(task, 1000))
        accs.append(right / sum(int(y.numel()) for _, y in stream.test(task, 1000)))
    mask_bytes = sum(m.masks[0].numel() * 4 for _, m in il.layers.supermask_layers(model))
    affine_bytes = 4 * sum(m.weight.numel() + m.bias.numel() for m in norms(model)) if variant == "per_task" else 0
    return {
        "variant": variant,
        "task_acc": accs,
        "mean_acc": sum(accs) / len(accs),
        "bytes_per_task": mask_bytes + affine_bytes,
        "affine_bytes_per_task": affine_bytes,
        "seconds": round(time.time() - t0, 1),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="results/norms/affine.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    stream = PermutedMNIST(load_mnist(args.data_root), num_tasks=args.tasks)
    rows = [run(v, stream, args) for v in ("frozen", "per_task")]
    out = {
        "command": "python " + " ".join(sys.argv),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "settings": vars(args),
        "rows": rows,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    for r in rows:
        print(
            f"{r['variant']:9s} mean {100 * r['mean_acc']:.1f} %  per task {[round(100 * a, 1) for a in r['task_acc']]}  "
            f"{r['bytes_per_task']:,} B/task  {r['seconds']} s"
        )


if __name__ == "__main__":
    main()
