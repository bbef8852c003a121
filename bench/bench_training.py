"""One training step of each method against the plain network, in one run; and a real mask epoch
against its bare step loop.

A step is zero_grad, forward, cross-entropy, backward and an RMSprop step on what the method
trains: every weight for the plain network (the dense baseline a masked method should cost
about as much as), the scores of one task for SupSup (top-k and threshold masks), the alphas of
one task for ImpressLearn (per layer and per channel, K random basis masks). Methods alternate
round by round, so a busy machine slows them alike; each round times `--steps` steps, the
figure is the median over rounds, and the ratio to the plain network is taken in the same run.

The epoch part times `impresslearn.continual.masks.train_mask` over a PermutedMNIST epoch
(data, permutation, batching, progress bookkeeping included) against the same number of bare
steps on tensors already in memory.

    python bench/bench_training.py                           # LeNet-300-100 and CIFAR ResNet-18, CPU
    python bench/bench_training.py --nets lenet --rounds 7
    python bench/bench_training.py --device cuda --nets lenet,resnet18,resnet50

Results: bench/results/training_<device>.json (every round, the machine, the command) and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from cli_help import HelpFormatter

from impresslearn.continual import TrainConfig
from impresslearn.continual import backbone as bb
from impresslearn.layers import random_basis

NETS = {  # name: (backbone settings, input shape, batch)
    "lenet": (dict(), (1, 28, 28), 128),
    "resnet18": (dict(arch="resnet18", classes=10, outputs=10), (3, 32, 32), 64),
    "resnet50": (dict(arch="resnet50", classes=1000, outputs=1000), (3, 224, 224), 8),
}
METHODS = (
    "plain",
    "supsup-topk",
    "supsup-threshold",
    "impress-K10",
    "impress-K100",
    "impress-K10-channel",
    "impress-K100-channel",
)


def build(net: str, method: str, device: str):
    """(model, trained parameters) of one method on one network."""
    kw, _, _ = NETS[net]
    if method == "plain":
        model = bb.network(bb.BackboneConfig(**kw))
        return model.to(device).train(), list(model.parameters())
    if method.startswith("supsup"):
        cfg = bb.BackboneConfig(**kw, mask="threshold" if method.endswith("threshold") else "topk")
        model = bb.supermask_model(cfg).to(device).train()
        return model, [p for p in model.parameters() if p.requires_grad]
    k = int(method.split("-")[1][1:])
    cfg = bb.BackboneConfig(**kw)
    shapes = bb.weight_shapes(bb.network(cfg))
    basis = {n: random_basis(s, k, 0.1, seed=i) for i, (n, s) in enumerate(shapes.items())}
    model = bb.impress_model(cfg, basis, per_channel=method.endswith("channel")).to(device).train()
    return model, [p for p in model.parameters() if p.requires_grad]


def stepper(model, params, x, y):
    opt = torch.optim.RMSprop(params, lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def steps_table(net: str, methods, device: str, rounds: int, steps: int) -> dict:
    _, shape, batch = NETS[net]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *shape, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    fns = {}
    for m in methods:
        model, params = build(net, m, device)
        fns[m] = stepper(model, params, x, y)
        fns[m]()  # warm-up: allocations, first dispatch
    times = {m: [] for m in methods}
    for _ in range(rounds):
        for m in methods:
            sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                fns[m]()
            sync(device)
            times[m].append((time.perf_counter() - t0) / steps)
    med = {m: statistics.median(v) for m, v in times.items()}
    base = med.get("plain")
    return {
        "net": net,
        "batch": batch,
        "steps_per_round": steps,
        "methods": {
            m: {
                "median_ms": 1000 * med[m],
                "ratio_to_plain": med[m] / base if base else None,
                "rounds_ms": [1000 * t for t in times[m]],
            }
            for m in methods
        },
    }


def epoch_table(device: str, data_root: str | None, rounds: int) -> dict:
    """A real SupSup mask epoch (train_mask over PermutedMNIST batches) against bare steps."""
    from impresslearn.continual.masks import train_mask
    from impresslearn.data import PermutedMNIST, load_mnist, load_subset

    arrays = load_mnist(data_root) if data_root else load_subset()
    stream = PermutedMNIST(arrays, num_tasks=1)
    batches = stream.train(0, 128, seed=0, device=device)
    n = len(batches)
    cfg = TrainConfig(optimizer="rmsprop", lr=1e-4, epochs=1)
    real, bare = [], []
    x, y = next(iter(batches))
    for _ in range(rounds):
        model = bb.supermask_model(bb.BackboneConfig()).to(device).train()
        sync(device)
        t0 = time.perf_counter()
        train_mask(model, 0, batches, cfg, progress=False)
        sync(device)
        real.append(time.perf_counter() - t0)
        model = bb.supermask_model(bb.BackboneConfig()).to(device).train()
        step = stepper(model, [p for p in model.parameters() if p.requires_grad], x, y)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        sync(device)
        bare.append(time.perf_counter() - t0)
    r, b = statistics.median(real), statistics.median(bare)
    return {
        "data": arrays.source,
        "steps": n,
        "epoch_s": r,
        "bare_steps_s": b,
        "ratio": r / b,
        "rounds_epoch_s": real,
        "rounds_bare_s": bare,
    }


def markdown(out: dict) -> str:
    lines = [f"Training steps, {out['machine']['device_name']} ({out['machine']['threads']} thread(s)); `{out['command']}`", ""]
    for t in out["steps"]:
        lines += [f"**{t['net']}**, batch {t['batch']}", "", "| method | ms per step | × plain |", "| --- | --- | --- |"]
        for m, r in t["methods"].items():
            ratio = "-" if r["ratio_to_plain"] is None else f"{r['ratio_to_plain']:.2f}"
            lines.append(f"| {m} | {r['median_ms']:.2f} | {ratio} |")
        lines.append("")
    if out.get("epoch"):
        e = out["epoch"]
        lines.append(
            f"A SupSup mask epoch ({e['steps']} steps, {e['data']}): {e['epoch_s']:.2f} s against "
            f"{e['bare_steps_s']:.2f} s of bare steps ({e['ratio']:.2f}×)."
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    p.add_argument("--nets", default="lenet,resnet18", help=f"comma-separated networks ({', '.join(NETS)})")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per method (median reported)")
    p.add_argument("--steps", type=int, default=0, help="steps per round (0: by network)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1: the library's choice for LeNet)")
    p.add_argument("--no-epoch", action="store_true", help="skip the epoch-against-steps part")
    p.add_argument(
        "--data-root",
        default=os.environ.get("IMPRESSLEARN_DATA"),
        help="real MNIST for the epoch part (from $IMPRESSLEARN_DATA; none: the shipped subset)",
    )
    p.add_argument("--out", help="results JSON (none: bench/results/training_<device>.json); .md beside it")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    methods = [m for m in a.methods.split(",") if m]
    bad = [m for m in methods if m not in METHODS] + [n for n in a.nets.split(",") if n not in NETS]
    if bad:
        p.error(f"unknown method or network {bad}: methods {', '.join(METHODS)}; networks {', '.join(NETS)}")
    if "plain" not in methods:
        methods.insert(0, "plain")  # every ratio is to the plain network of the same run
    steps = {"lenet": 20, "resnet18": 2, "resnet50": 5}
    out = {
        "command": "python bench/bench_training.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "device": a.device,
            "device_name": torch.cuda.get_device_name(0) if a.device.startswith("cuda") else (platform.processor() or "cpu"),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        },
        "steps": [],
    }
    for net in a.nets.split(","):
        t = steps_table(net, methods, a.device, a.rounds, a.steps or steps[net])
        out["steps"].append(t)
        for m, r in t["methods"].items():
            print(f"{net:9s} {m:22s} {r['median_ms']:9.2f} ms  ×{r['ratio_to_plain']:.2f}", flush=True)
    if not a.no_epoch:
        out["epoch"] = epoch_table(a.device, a.data_root, max(1, a.rounds // 2))
        print(
            f"epoch {out['epoch']['epoch_s']:.2f} s, bare steps {out['epoch']['bare_steps_s']:.2f} s "
            f"(×{out['epoch']['ratio']:.2f})"
        )
    path = Path(a.out or Path(__file__).resolve().parent / "results" / f"training_{a.device.split(':')[0]}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    path.with_suffix(".md").write_text(markdown(out))
    print(f"written {path} and {path.with_suffix('.md').name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
