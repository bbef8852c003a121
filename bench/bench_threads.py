"""How many threads a mask-training step should use: one thread against all of them, per model size.

Each case is one SupSup mask-training step (forward, backward, RMSprop on the scores) of a model
at its usual batch; the thread counts alternate round by round in one process, so a busy or a
quiet machine affects them alike. The ratio `1 thread / all threads` below 1 says one thread is
faster: the rule `impresslearn.threads.default_threads` is checked against it. Run it on the
machine as you use it: a 2-core machine shared with other work is exactly the case the rule is for.

    python bench/bench_threads.py                    # LeNet-300-100 and CIFAR ResNet-18 (width 16, 64)
    python bench/bench_threads.py --rounds 5 --out bench/results/threads-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from cli_help import HelpFormatter

from impresslearn import threads
from impresslearn.continual import backbone as bb

CASES = {  # name: (backbone settings, input shape, batch)
    "lenet_300_100": (dict(), (1, 28, 28), 128),
    "resnet18_w16": (dict(arch="resnet18", width=16, classes=10, outputs=10), (3, 32, 32), 64),
    "resnet18_w64": (dict(arch="resnet18", width=64, classes=10, outputs=10), (3, 32, 32), 64),
}


def step_fn(name: str):
    kw, shape, batch = CASES[name]
    cfg = bb.BackboneConfig(**kw)
    model = bb.supermask_model(cfg).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.RMSprop(params, lr=1e-4)
    x = torch.randn(batch, *shape)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    weights = sum(m.weight.numel() for m in model.modules() if hasattr(m, "scores") or hasattr(m, "alpha"))
    return step, weights


def measure(name: str, counts: list[int], rounds: int, steps: int) -> dict:
    step, weights = step_fn(name)
    times = {n: [] for n in counts}
    for n in counts:  # warm-up at each count
        torch.set_num_threads(n)
        step()
    for _ in range(rounds):
        for n in counts:
            torch.set_num_threads(n)
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            times[n].append((time.perf_counter() - t0) / steps)
    med = {n: statistics.median(v) for n, v in times.items()}
    return {
        "case": name,
        "weights": weights,
        "median_s": {str(n): med[n] for n in counts},
        "rounds_s": {str(n): v for n, v in times.items()},
        "one_over_all": med[counts[0]] / med[counts[-1]],
        "rule_chooses": threads.default_threads(weights).threads,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated cases to time")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per case and thread count (median reported)")
    p.add_argument("--steps", type=int, default=0, help="steps per round (0: about 0.5 s of work)")
    p.add_argument("--out", default="bench/results/threads-cpu.json", help="results JSON")
    a = p.parse_args()
    cpus = threads.usable_cpus()
    counts = [1, cpus] if cpus > 1 else [1]
    rows = []
    for name in a.cases.split(","):
        if name not in CASES:
            raise SystemExit(f"bench_threads: unknown case {name!r} (one of {', '.join(CASES)})")
        steps = a.steps or {"lenet_300_100": 10, "resnet18_w16": 2, "resnet18_w64": 1}[name]
        r = measure(name, counts, a.rounds, steps)
        rows.append(r)
        print(
            f"{name:15s} {r['weights']:>11,} weights  "
            + "  ".join(f"{n} thread{'s' if n > 1 else ''} {1000 * r['median_s'][str(n)]:8.2f} ms" for n in counts)
            + f"  1/{counts[-1]}: {r['one_over_all']:.2f}  rule: {r['rule_chooses']}",
            flush=True,
        )
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    out = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": cpus,
            "load_average": load,
            "torch": torch.__version__,
        },
        "threads_compared": counts,
        "cases": rows,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(f"written {a.out}")


if __name__ == "__main__":
    main()
