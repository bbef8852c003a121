"""Task inference over many tasks, side by side: the task bank the library used before (every
task's dense effective weight built once, then `torch.func.vmap`; bench/task_bank.py) against
the library's path now (a task per sample over the packed bits: every_task_linear /
task_row_linear, a convolution one task's weight at a time; impresslearn.continual.inference).

For each model and task count, three ways of inferring, on batches whose samples belong to
random tasks (random inputs: these runs time the work, docs/results.md has the accuracies):

    exhaustive, batch     every task's outputs on the batch; the task of the lowest mean entropy
    exhaustive, sample    the same outputs; the task of the lowest entropy of each sample
    one-shot, sample      each sample's gradient of its entropy with respect to the uniform mixture
                          of the tasks (bank: vmap(grad) over the samples; now: one forward, one
                          backward)

Each case runs in a child process of its own (one thread by default) under an address-space limit:
images per second (after one warm-up batch; the bank's build is timed apart, as the runs of
docs/results.md reported it), the peak resident set above the model and its inputs (bank build
included; measured from the resident set after glibc's malloc_trim, so that pages freed while
the model was built and reused later still count), and whether both ways chose the same task for
each sample. A ViT takes no bank (its attention reads
its projections' weights): "before" there is one forward per task, and per-sample inference did
not exist.

    python bench/bench_task_inference.py                        # the issue's grid, about 15 min on one core
    python bench/bench_task_inference.py --models lenet --T 20  # one row
    python bench/bench_task_inference.py --quick                # tiny models: a smoke run

Results: bench/results/task_inference_<device>.json (every case, the machine, the command) and
.md (the tables, with the ratios now / before).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import sys
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_memory import GIB, machine, mem_available  # noqa: E402  (stdlib only: no torch here)
from bench_task_memory import Meter, trimmed  # noqa: E402
from child_process import failure, run_child  # noqa: E402
from cli_help import HelpFormatter  # noqa: E402

MODES = ("exhaustive_batch", "exhaustive_sample", "oneshot_sample")
PATHS = ("bank", "packed")
# model -> (task counts, batch size): the grid
GRID = {"lenet": ((20, 250), 128), "resnet18": ((20, 100), 16), "vit": ((20, 100), 16), "resnet50": ((100,), 1)}
QUICK = {"lenet": ((3,), 8), "resnet18": ((3,), 2), "vit": ((3,), 2)}


# --------------------------------------------------------------------------- the child: one case


def build(name: str, tasks: int, quick: bool):
    """(model, input batch maker): a torchvision or LeNet model converted as a user would, SupSup
    masks (threshold, about half the weights: SupSup's settings) for every task, finished."""
    import torch
    import torch.nn as nn
    import torchvision

    import impresslearn as il
    from impresslearn.layers import supermask_layers

    if name == "lenet":
        width = (30, 10) if quick else (300, 100)
        net = nn.Sequential(
            nn.Flatten(), nn.Linear(784, width[0]), nn.ReLU(), nn.Linear(*width), nn.ReLU(), nn.Linear(width[1], 100)
        )
        shape = (1, 28, 28)
    elif name == "vit":
        hidden = 16 if quick else 128
        net = torchvision.models.VisionTransformer(
            image_size=32, patch_size=4 if not quick else 16, num_layers=1 if quick else 4, num_heads=2 if quick else 4,
            hidden_dim=hidden, mlp_dim=2 * hidden, num_classes=10,
        )  # fmt: skip
        shape = (3, 32, 32)
    elif name == "resnet18":
        net = torchvision.models.resnet18(num_classes=10)
        shape = (3, 16, 16) if quick else (3, 32, 32)
    else:
        net = torchvision.models.resnet50(num_classes=100)
        shape = (3, 224, 224)
    net = il.convert(net, "supermask", mask="threshold", num_tasks=tasks, seed=0)
    g = torch.Generator().manual_seed(1)
    for _, layer in supermask_layers(net):
        bits = torch.rand((tasks, *layer.weight.shape), generator=g) < 0.5
        layer.load_masks(il.pack_masks(bits))
    for _, m in il.layers.task_modules(net):
        if hasattr(m, "bns"):
            for bn in m.bns:
                bn.running_var.uniform_(0.5, 2.0, generator=g)
    return net.eval(), shape


def child(args) -> dict:
    import torch

    from impresslearn import ops
    from impresslearn.continual import inference

    torch.set_num_threads(args.threads)
    meter = Meter(args.device)
    out = {"model": args.model, "T": args.tasks, "mode": args.mode, "path": args.path, "batch": args.batch}
    out["backend"] = ops.backend_for(args.device)
    out["threads"] = torch.get_num_threads()
    out["torch"] = torch.__version__
    net, shape = build(args.model, args.tasks, args.quick)
    net = net.to(args.device)
    gen = torch.Generator().manual_seed(2)
    batches = [torch.randn((args.batch, *shape), generator=gen).to(args.device) for _ in range(args.batches + 1)]
    h = inference.sample_objective("H")
    # the baseline after the allocator hands back what building freed (the random masks), so
    # that a peak that reuses those pages still counts
    trimmed(meter)
    base = meter.now()
    meter.reset_peak()
    bank_s = None
    if args.path == "bank":
        from task_bank import TaskBank, bank_supports

        if not bank_supports(net):
            if args.mode != "exhaustive_batch":
                return {**out, "status": "not available", "error": "per-sample inference needed a task bank"}
            logits = lambda x: torch.stack([_task(net, t, x) for t in range(args.tasks)])  # noqa: E731
            sample_grads = None
        else:
            t0 = time.perf_counter()
            bank = TaskBank(net)
            bank_s = time.perf_counter() - t0
            out["bank_bytes"] = bank.nbytes
            logits = bank.logits

            def sample_grads(x):
                return bank.sample_gradients(x, lambda y: h(y).mean())

    else:
        logits = lambda x: inference.every_task_logits(net, x)  # noqa: E731

        def sample_grads(x):
            return inference.sample_gradients(net, x, h)

    def infer(x):
        if args.mode == "oneshot_sample":
            return sample_grads(x).argmin(1)
        with torch.no_grad():
            scores = h(logits(x))  # [T, B]
        if args.mode == "exhaustive_batch":
            return scores.mean(1).argmin().expand(x.shape[0])
        return scores.argmin(0)

    try:
        chosen = [infer(batches[0])]  # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for x in batches[1:]:
            chosen.append(infer(x))
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        spent = time.perf_counter() - t0
    except (MemoryError, RuntimeError) as err:
        if isinstance(err, RuntimeError) and "alloc" not in str(err).lower() and "out of memory" not in str(err).lower():
            raise
        return {**out, "status": "out of memory", "error": str(err).splitlines()[0][:200]}
    out.update(
        status="ok",
        images_per_s=args.batch * args.batches / spent,
        seconds=spent,
        bank_s=bank_s,
        peak_above_model_mb=meter.peak() - base,
        chosen=torch.cat(chosen).tolist(),
    )
    return out


def _task(net, t, x):
    import torch

    from impresslearn import set_task

    set_task(net, t)
    with torch.no_grad():
        return net(x)


# --------------------------------------------------------------------------- the parent


def run_case(model: str, tasks: int, mode: str, path: str, batch: int, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--model", model, "--tasks", str(tasks)]
    cmd += ["--mode", mode, "--path", path, "--batch", str(batch), "--batches", str(args.batches)]
    cmd += ["--device", args.device, "--threads", str(args.threads)] + (["--quick"] if args.quick else [])
    limit = int(max(1.0, min(args.limit_gb, mem_available() / GIB - args.reserve_gb)) * GIB)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    t0 = time.monotonic()
    res, code, err, rss = run_child(cmd, limit, env)
    case = res if res is not None else {"model": model, "T": tasks, "mode": mode, "path": path, **failure(code, err)}
    case["wall_s"] = round(time.monotonic() - t0, 1)
    case["child_peak_rss_mb"] = round(rss, 1)
    return case


def _fmt(v, spec: str) -> str:
    if v is None:
        return "-"
    if spec == ",.0f" and abs(v) < 10:  # a few images per second: keep two significant digits
        return format(v, ".2g")
    return format(v, spec)


def table(res: dict) -> str:
    """Markdown: per model, task count and mode, both paths' images/s and peak memory, and ratios."""
    by = {(c["model"], c["T"], c["mode"], c["path"]): c for c in res["cases"]}
    head = [
        "model",
        "tasks",
        "inference",
        "bank img/s",
        "packed img/s",
        "speed packed / bank",
        "bank peak (MiB)",
        "packed peak (MiB)",
        "memory bank / packed",
        "same tasks",
    ]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = sorted({k[:3] for k in by}, key=lambda k: (list(GRID).index(k[0]) if k[0] in GRID else 9, k[1], MODES.index(k[2])))
    for model, tasks, mode in keys:
        b, p = by.get((model, tasks, mode, "bank"), {}), by.get((model, tasks, mode, "packed"), {})

        def cell(c, key, spec):
            return _fmt(c.get(key), spec) if c.get("status") == "ok" else c.get("status", "-")

        both = b.get("status") == "ok" and p.get("status") == "ok"
        speed = p["images_per_s"] / b["images_per_s"] if both else None
        mem = b["peak_above_model_mb"] / max(p["peak_above_model_mb"], 1e-9) if both else None
        same = None
        if both:
            same = sum(x == y for x, y in zip(b["chosen"], p["chosen"])) / max(1, len(p["chosen"]))
        rows.append(
            "| "
            + " | ".join(
                [
                    model,
                    str(tasks),
                    mode.replace("_", ", "),
                    cell(b, "images_per_s", ",.0f"),
                    cell(p, "images_per_s", ",.0f"),
                    _fmt(speed, ".2f"),
                    cell(b, "peak_above_model_mb", ",.1f"),
                    cell(p, "peak_above_model_mb", ",.1f"),
                    _fmt(mem, ".1f"),
                    _fmt(None if same is None else 100 * same, ".1f") + ("" if same is None else " %"),
                ]
            )
            + " |"
        )
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--models", nargs="+", default=list(GRID), choices=list(GRID), help="the models")
    p.add_argument("--T", type=int, nargs="*", help="task counts (none: the grid's for each model)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS, help="bank: the code before; packed: now")
    p.add_argument("--batches", type=int, default=4, help="timed batches after one warm-up batch")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    p.add_argument("--threads", type=int, default=1, help="torch threads in each child")
    p.add_argument("--quick", action="store_true", help="tiny models and 3 tasks: a smoke run")
    p.add_argument("--limit-gb", type=float, default=16.0, help="CPU: most address space a child may map")
    p.add_argument("--reserve-gb", type=float, default=3.0, help="CPU: memory left to others besides the child")
    p.add_argument("--out", help="results JSON (none: bench/results/task_inference_<device>.json; .md beside it)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--tasks", type=int, help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--as-limit", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    if args.as_limit:  # before anything is imported or allocated
        resource.setrlimit(resource.RLIMIT_AS, (args.as_limit, args.as_limit))
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return 0
    device = "cuda" if args.device.startswith("cuda") else "cpu"
    out = Path(args.out or HERE / "results" / f"task_inference_{device}.json")
    grid = QUICK if args.quick else GRID
    res = {
        "command": shlex.join(["python", "bench/bench_task_inference.py", *argv]),
        "machine": machine(args.device, {"torch": metadata.version("torch")}),
        "config": {"batches": args.batches, "threads": args.threads, "device": args.device, "quick": args.quick},
        "load_average_start": os.getloadavg(),
        "cases": [],
    }
    started = time.monotonic()
    for model in args.models:
        if model not in grid:
            continue
        counts, batch = grid[model]
        for tasks in args.T or counts:
            for mode in args.modes:
                for path in args.paths:
                    if model == "resnet50" and (path == "bank" and tasks > 20 or mode == "oneshot_sample"):
                        # the bank of 100 ResNet-50 tasks is 10 GB; its size is computed, not run
                        continue
                    print(f"{model} T={tasks} {mode} {path}: ", end="", file=sys.stderr, flush=True)
                    case = run_case(model, tasks, mode, path, batch, args)
                    res["cases"].append(case)
                    print(case["status"], _fmt(case.get("images_per_s"), ",.0f"), "img/s,",
                          _fmt(case.get("peak_above_model_mb"), ",.1f"), "MiB", file=sys.stderr, flush=True)  # fmt: skip
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_text(json.dumps(res, indent=1))  # after every case: an interruption keeps what ran
    res["load_average_end"] = os.getloadavg()
    res["seconds"] = round(time.monotonic() - started, 1)
    res["table"] = table(res)
    out.write_text(json.dumps(res, indent=1))
    md = [f"# Task inference: the task bank against the packed path ({args.device})", "", f"`{res['command']}`", ""]
    md += [f"Machine: {json.dumps(res['machine'])}", "", res["table"], ""]
    out.with_suffix(".md").write_text("\n".join(md))
    print(res["table"])
    print(f"results: {out} (.md beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
