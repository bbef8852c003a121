"""Structural reductions of per-channel alphas tried on PermutedMNIST (docs/results.md, "What did
not move the frontier"): K impressions per channel over the cached basis of run.sh, 3 new tasks,
seed 0, the library's alpha fit (Adam 0.1, cosine, 5 epochs of 1,024) written out so that the
alphas can be reparametrised:

    rank R      alpha = 1/K + A @ P per layer, A [K, R] learned, P a seeded [R, rows] projection
                (rows <= R: every coefficient); bytes: A's coefficients at 4 bytes, or coded
    l1 L        the quantised fit with L * sum|alpha| added to the loss (sparser codes)
    bits/scale/mse   the library's AlphaQuant, for comparison

Bytes are each layer's codes range-coded (coding.code_levels) and its float16 scales, or 4 bytes
a float. Run from the repository root: python results/quantise/structure.py > results/quantise/structure.jsonl
"""

import json
import math
import os
import sys

import torch
import torch.nn.functional as F

from impresslearn.coding import code_levels
from impresslearn.continual import backbone as bb
from impresslearn.continual import metrics
from impresslearn.experiments.mnist import RunConfig, Runner
from impresslearn.layers import AlphaQuant, impress_layers, set_task
from impresslearn.layers.quantise import codes, quantise

torch.set_num_threads(1)
K = int(os.environ.get("K", 5))
cfg = RunConfig(
    benchmark="permuted-mnist",
    data_root="../shared/data",
    basis_size=K,
    per_channel=True,
    new_tasks=3,
    incorrect_tasks=0,
    cache=os.environ.get("CACHE", "/tmp/impresslearn-quantise-masks"),
    verbose=False,
    progress=False,
)
runner = Runner(cfg)
runner.results["supsup"] = {}
basis = runner.build_basis()


def fit(rank=None, bits=None, scale="layer", step="max", l1=0.0) -> dict:
    q = AlphaQuant(bits, scale, step) if bits else None
    model = bb.impress_model(runner.backbone, basis, per_channel=True, num_tasks=len(runner.tasks.new))
    layers = [m for _, m in impress_layers(model)]
    accs, sizes = [], []
    for i, t in enumerate(runner.tasks.new):
        set_task(model, i)
        params, views = [], []
        for j, m in enumerate(layers):
            m.alpha_quant = q
            k, rows = m.alpha_shape()
            if rank is None or rows <= rank:
                params.append(m.task_floats(i))
                views.append(None)
                continue
            proj = torch.randn(rank, rows, generator=torch.Generator().manual_seed(1234 + j)) / math.sqrt(rank)
            a = torch.zeros(k, rank, requires_grad=True)
            params.append(a)
            views.append((a, proj))
            m.current_alpha = lambda a=a, p=proj, k=k: (lambda v: quantise(v, q) if q else v)(1.0 / k + a @ p)
        opt = torch.optim.Adam(params, lr=runner.alpha_train.lr)
        steps = int(runner.alpha_train.epochs * math.ceil(60_000 / runner.alpha_train.batch_size))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        done, epoch = 0, 0
        while done < steps:
            for x, y in runner.alpha_batches(t, seed=runner.data_seed(10_000 + i + 100 * epoch, t)):
                if done >= steps:
                    break
                loss = F.cross_entropy(model(x), y)
                if l1:
                    loss = loss + l1 * sum(p.abs().sum() for p in params)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                done += 1
            epoch += 1
        with torch.no_grad():
            accs.append(metrics.accuracy(model, runner.test_batches(t), task=i))
            size = 0
            for m, v in zip(layers, views):
                alpha = m.current_alpha().detach()
                if q is not None and v is None:
                    c, s = codes(alpha, q)
                    size += len(code_levels(c, q.levels)) + 2 * s.numel()
                elif q is not None:  # the learned A is what is stored: code it the same way
                    c, s = codes(v[0].detach(), q)
                    size += len(code_levels(c, q.levels)) + 2 * s.numel()
                else:
                    size += 4 * (alpha.numel() if v is None else v[0].numel())
            sizes.append(size)
        for m in layers:
            m.__dict__.pop("current_alpha", None)
    return {"mean_acc": sum(accs) / len(accs), "bytes_per_task": sum(sizes) / len(sizes), "task_acc": accs}


for spec in sys.argv[1:] or [
    '{"rank": 32}',
    '{"rank": 64}',
    '{"rank": 128}',
    '{"bits": 4}',
    '{"bits": 4, "l1": 1e-4}',
    '{"bits": 4, "l1": 1e-3}',
    '{"bits": 3}',
    '{"bits": 3, "step": "mse"}',
    '{"bits": 2, "step": "mse"}',
]:
    print(json.dumps({"K": K, **json.loads(spec), **fit(**json.loads(spec))}), flush=True)
