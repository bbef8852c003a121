"""The learning rate of the ViT's pretraining for `impresslearn adapt --arch vit`, checked on a
validation split: models.mnist_vit trained as `impresslearn adapt` pretrains it (Adam, 1,500 steps
of 64 images of digits 0-4, torch.manual_seed(0)) on the first 50,000 MNIST training images, scored
on the digits 0-4 of the last 10,000. One thread. Writes --out (JSON).

    python results/vit/sweep_adapt.py --data-root ../shared/data --out results/vit/tuning/pretrain.json
"""

import argparse
import json
import time

import torch

from impresslearn import models
from impresslearn.continual.metrics import accuracy
from impresslearn.continual.training import TrainConfig, fit
from impresslearn.data import AdaptationTasks, load_mnist
from impresslearn.seeding import derive_seed

p = argparse.ArgumentParser()
p.add_argument("--data-root", default="../shared/data")
p.add_argument("--lrs", default="3e-4,1e-3,3e-3")
p.add_argument("--iterations", type=int, default=1500)
p.add_argument("--out", default="results/vit/tuning/pretrain.json")
a = p.parse_args()
torch.set_num_threads(1)

arrays = load_mnist(a.data_root).holdout(10_000)
stream = AdaptationTasks(arrays, ("digits0-4", "digits5-9"))
out = {
    "what": "ViT pretraining on digits 0-4, validation accuracy (last 10,000 training images)",
    "data": arrays.source,
    "iterations": a.iterations,
    "batch_size": 64,
    "optimizer": "adam",
    "runs": [],
}
for lr in [float(v) for v in a.lrs.split(",")]:
    torch.manual_seed(0)
    net = models.mnist_vit(10)
    t0 = time.time()
    tc = TrainConfig(optimizer="adam", lr=lr, epochs=1e9, iterations=a.iterations, batch_size=64)
    fit(
        net,
        list(net.parameters()),
        stream.train(0, 64, derive_seed(0, "data/pretrain/0") % 2**31),
        tc,
        desc=f"lr {lr:g}",
        progress=False,
    )
    net.eval()
    acc = accuracy(net, stream.test(0))
    out["runs"].append({"lr": lr, "val_acc": acc, "train_s": round(time.time() - t0, 1)})
    print(f"lr {lr:g}: validation accuracy {acc:.4f} ({time.time() - t0:.0f} s)", flush=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
