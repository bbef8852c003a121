"""Peak memory and time of one ImpressLearn training step of ResNet-50, packed masks vs dense.

One step = forward + backward + Adam step on the alphas of one task (with the paper's λ = 0.005
penalty) of torchvision's ResNet-50 converted with a basis of T masks per layer (53 convs and
the head), on a batch of random 224x224 images with 10 classes. Two implementations:

    packed   impresslearn's ImpressConv2d / ImpressLinear: the basis as 1-bit packed words, the
             combine op of the backend in use ("auto": triton on CUDA; native, else reference, on
             CPUs; the reference unpacks one layer's masks at a time, transiently)
    dense    the SupSup-style baseline (`impresslearn.dense.densify`): the basis as stacked
             float32 masks [T, *shape], `combine_dense`

Every case runs in a child process of its own, one at a time. On a CPU the peak is the child's
peak resident set (VmHWM, and ru_maxrss from wait4 in the parent); each child gets an address-space
limit (RLIMIT_AS) below the memory available, so a case too big for the machine fails inside its
limit and is recorded as "out of memory" instead of pushing the machine into swap or the OOM
killer. On a GPU the peak is torch.cuda.max_memory_allocated, and each case also searches the
largest batch that fits (doubling, then bisection).

    python bench/bench_memory.py                    # CPU: T = 10 35 75 150, batch 2
    python bench/bench_memory.py --device cuda      # GPU: batch 32, and the largest batch per T
    python bench/bench_memory.py --T 10 --modes packed --batch 1 --out /tmp/m.json

Results: bench/results/memory_<device>.json (every case, the machine, the command) and .md
(the table the README shows). Basis masks are random bits (density 1/2, bench_cases.random_basis):
memory and time do not depend on the density.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # child_process beside this file, also when imported from elsewhere

from child_process import failure, run_child  # noqa: E402
from cli_help import HelpFormatter  # noqa: E402

GIB = 1024**3
MIB = 1024**2
ARCHS = ("resnet50", "resnet18")  # resnet18 (narrow) only for smoke runs


# --------------------------------------------------------------------------- the child: one case


def _status_mb(key: str) -> float:
    text = Path("/proc/self/status").read_text()
    m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) / 1024 if m else float("nan")


def build_model(mode: str, masks: int, arch: str, width: int, device: str):
    from bench_cases import random_basis  # (here, in the child: the parent never imports torch)

    from impresslearn import convert, models
    from impresslearn.dense import densify

    net = models.resnet50(num_classes=10) if arch == "resnet50" else models.cifar_resnet18(10, width=width)
    basis = random_basis(net, masks)
    model = convert(net, "impress", basis=basis, density=0.5)
    del basis
    if mode == "dense":
        densify(model)
    return model.to(device)


def make_step(model, batch: int, image_size: int, device: str):
    """A closure running one training step on a fresh batch of `batch` images."""
    import torch
    import torch.nn.functional as F

    from impresslearn import task_parameters

    alphas = task_parameters(model, 0)
    opt = torch.optim.Adam(alphas, lr=0.0025)
    model.train()

    def step(b: int = batch):
        x = torch.randn(b, 3, image_size, image_size, device=device)
        y = torch.randint(0, 10, (b,), device=device)
        penalty = sum(((a.abs().sum(0) - 1) ** 2).sum() for a in alphas)  # eq. 2, as alpha_penalty
        loss = F.cross_entropy(model(x), y) + 0.005 * penalty
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step


def child(args) -> dict:
    """Run one case in this process; return what it measured."""
    import torch

    from impresslearn import convert, models, ops  # noqa: F401  everything imported before the baseline
    from impresslearn.dense import densify  # noqa: F401

    torch.manual_seed(0)
    out = {"mode": args.mode, "T": args.masks, "batch": args.batch, "rss_import_mb": _status_mb("VmRSS")}
    dev = args.device
    try:
        t0 = time.perf_counter()
        model = build_model(args.mode, args.masks, args.arch, args.width, dev)
        out["build_s"] = time.perf_counter() - t0
        out["backend"] = ops.backend_for(dev) if args.mode == "packed" else "dense (combine_dense)"
        out["basis_mb"] = (
            sum(b.numel() * b.element_size() for n, b in model.named_buffers() if n.endswith(("basis_words", "stacked"))) / MIB
        )
        out["rss_model_mb"] = _status_mb("VmRSS")
        step = make_step(model, args.batch, args.image_size, dev)
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        times = []
        for _ in range(args.steps + 1):  # the first step warms up (allocator, kernel choice)
            t = time.perf_counter()
            step()
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        out["step_s"] = sorted(times[1:])[len(times[1:]) // 2] if args.steps else times[0]
        out["first_step_s"] = times[0]
        if dev.startswith("cuda"):
            out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / MIB
            out["cuda_model_mb"] = base / MIB
            out["max_batch"] = largest_batch(step, args.batch, args.max_batch)
        out["status"] = "ok"
    except (MemoryError, RuntimeError) as err:  # CPU allocations beyond RLIMIT_AS; torch.OutOfMemoryError
        if isinstance(err, RuntimeError) and "alloc" not in str(err).lower() and "out of memory" not in str(err).lower():
            raise
        out["status"] = "out of memory"
        out["error"] = str(err).splitlines()[0][:200]
    out["peak_rss_mb"] = _status_mb("VmHWM")
    return out


def largest_batch(step, start: int, cap: int) -> int:
    """The largest batch (up to `cap`) whose training step fits in GPU memory."""
    import torch

    def fits(b: int) -> bool:
        try:
            step(b)
            torch.cuda.synchronize()
            return True
        except torch.cuda.OutOfMemoryError:
            return False
        finally:
            torch.cuda.empty_cache()

    if not fits(start):
        return 0
    lo = start
    while lo * 2 <= cap and fits(lo * 2):
        lo *= 2
    hi = min(lo * 2, cap + 1)  # lo fits; hi does not (or is past the cap)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


# --------------------------------------------------------------------------- the parent: all cases


def mem_available() -> int:
    text = Path("/proc/meminfo").read_text()
    return int(re.search(r"^MemAvailable:\s+(\d+) kB", text, re.M).group(1)) * 1024


def probe(args) -> dict:
    """(child) torch's version, the GPU, and the (rows, cols) of every maskable layer."""
    import torch
    import torch.nn as nn

    from impresslearn import models
    from impresslearn.format import rows_cols

    with torch.device("meta"):
        net = models.resnet50(num_classes=10) if args.arch == "resnet50" else models.cifar_resnet18(10, width=args.width)
    info = {
        "torch": torch.__version__,
        "layers": [rows_cols(m.weight.shape) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))],
    }
    if args.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / GIB, 1)
    return info


def basis_bytes(mode: str, masks: int, layers) -> int:
    """Bytes of a basis of `masks` masks: packed words (rows padded to 32 bits), or float32 masks."""
    per_mask = sum(rows * (((cols + 31) // 32) * 4 if mode == "packed" else cols * 4) for rows, cols in layers)
    return masks * per_mask


def run_case(mode: str, masks: int, args, layers) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--mode",
        mode,
        "--masks",
        str(masks),
        "--batch",
        str(args.batch),
        "--image-size",
        str(args.image_size),
        "--device",
        args.device,
        "--steps",
        str(args.steps),
        "--arch",
        args.arch,
        "--width",
        str(args.width),
        "--max-batch",
        str(args.max_batch),
    ]
    limit = None
    if args.device == "cpu":
        avail = mem_available()
        # Address space, not resident memory: importing torch maps about 3 GiB it never touches.
        free_limit = avail - args.reserve_gb * GIB + 3 * GIB
        limit = int(min(args.limit_gb * GIB, free_limit))
        need = basis_bytes(mode, masks, layers) + 3 * GIB
        if need > limit:  # certain to fail: do not make the machine page it in first
            base = {"mode": mode, "T": masks, "batch": args.batch, "address_space_limit_gb": round(limit / GIB, 2)}
            if need > args.limit_gb * GIB:
                return base | {
                    "status": "out of memory",
                    "error": f"not run: its basis alone needs {(need - 3 * GIB) / GIB:.1f} GiB, more than "
                    f"the {args.limit_gb:g} GiB of address space a case may use (--limit-gb)",
                }
            return base | {
                "status": "skipped: too little free memory now",
                "error": f"needs {need / GIB:.1f} GiB of address space, {avail / GIB:.1f} GiB available",
            }
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(args.threads))
    res, code, err_text, maxrss = run_child(cmd, limit or 0, env)
    if res is None:
        res = {"mode": mode, "T": masks, "batch": args.batch, **failure(code, err_text)}
    res["ru_maxrss_mb"] = maxrss
    res["address_space_limit_gb"] = None if limit is None else round(limit / GIB, 2)
    return res


def machine(device: str, probed: dict) -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1),
        "torch": probed["torch"],
        "python": platform.python_version(),
        "device": device,
    }
    for key in ("gpu", "gpu_memory_gb"):
        if key in probed:
            info[key] = probed[key]
    return info


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(res: dict) -> str:
    """Markdown: one row per T, packed and dense side by side, and their ratio."""
    gpu = res["config"]["device"].startswith("cuda")
    by = {(c["mode"], c["T"]): c for c in res["cases"]}
    key, unit = ("cuda_peak_mb", "GPU peak") if gpu else ("peak_rss_mb", "peak RSS")
    head = ["T", f"packed {unit} (MiB)", f"dense {unit} (MiB)", "dense / packed", "packed step (s)", "dense step (s)"]
    if not gpu:
        head[4:4] = ["above import: packed / dense (MiB)"]
    else:
        head += ["packed max batch", "dense max batch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in res["config"]["T"]:
        p, d = by.get(("packed", t), {}), by.get(("dense", t), {})

        def peak(c):
            return _fmt(c.get(key), ",.0f") if c.get("status") == "ok" else (c.get("status") or "-")

        ratio = d[key] / p[key] if p.get("status") == d.get("status") == "ok" else None
        row = [
            str(t),
            peak(p),
            peak(d),
            _fmt(ratio, ".1f"),
            _fmt(p.get("step_s"), ".2f") if p.get("status") == "ok" else "-",
            _fmt(d.get("step_s"), ".2f") if d.get("status") == "ok" else "-",
        ]
        if not gpu:
            above = [c[key] - c["rss_import_mb"] if c.get("status") == "ok" else None for c in (p, d)]
            row[4:4] = [f"{_fmt(above[0], ',.0f')} / {_fmt(above[1], ',.0f')}"]
        else:
            row += [_fmt(p.get("max_batch"), "d"), _fmt(d.get("max_batch"), "d")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def parent(args) -> dict:
    out = Path(args.out or HERE / "results" / f"memory_{'cuda' if args.device.startswith('cuda') else 'cpu'}.json")
    # This process stays small and never imports torch: a child's ru_maxrss counts what it was
    # forked from. One light child reports the versions and the layer shapes.
    probe_cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--probe",
        "--arch",
        args.arch,
        "--width",
        str(args.width),
        "--device",
        args.device,
    ]
    probed = json.loads(subprocess.run(probe_cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    res = {
        "command": "python bench/bench_memory.py " + shlex.join(sys.argv[1:]),
        "machine": machine(args.device, probed),
        "config": {
            "T": args.T,
            "modes": args.modes,
            "batch": args.batch,
            "image_size": args.image_size,
            "arch": args.arch,
            "device": args.device,
            "steps": args.steps,
            "threads": args.threads,
        },
        "cases": [],
    }
    for t in args.T:
        for mode in args.modes:
            print(f"T={t} {mode}: ", end="", file=sys.stderr, flush=True)
            case = run_case(mode, t, args, probed["layers"])
            res["cases"].append(case)
            print(
                case["status"],
                {
                    k: round(v, 2)
                    for k, v in case.items()
                    if k in ("peak_rss_mb", "cuda_peak_mb", "step_s", "max_batch") and v is not None
                },
                file=sys.stderr,
                flush=True,
            )
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res, indent=1))  # after every case: an interruption keeps what ran
    res["table"] = table(res)
    out.write_text(json.dumps(res, indent=1))
    out.with_suffix(".md").write_text(
        f"`{res['command']}` on {res['machine']['processor']} "
        f"({res['machine']['cpus']} CPUs, {res['machine']['memory_gb']} GB"
        + (f", {res['machine']['gpu']}" if "gpu" in res["machine"] else "")
        + f"), torch {res['machine']['torch']}\n\n"
        + res["table"]
        + "\n"
    )
    print(res["table"])
    print(f"results: {out}")
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--T", type=int, nargs="+", default=[10, 35, 75, 150], help="basis sizes")
    p.add_argument(
        "--modes",
        nargs="+",
        default=["packed", "dense"],
        choices=["packed", "dense"],
        help="bases kept as packed bits, as dense floats",
    )
    p.add_argument("--batch", type=int, help="images per step (none: 2 on a CPU, 32 on a GPU)")
    p.add_argument("--image-size", type=int, default=224, help="input images' height and width")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    p.add_argument("--steps", type=int, default=1, help="timed steps after one warm-up step (median reported)")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each child (unless set already)")
    p.add_argument("--limit-gb", type=float, default=16.0, help="CPU: most address space a child may map")
    p.add_argument("--reserve-gb", type=float, default=3.0, help="CPU: memory left to others besides the child")
    p.add_argument("--max-batch", type=int, default=4096, help="GPU: largest batch tried")
    p.add_argument("--arch", default="resnet50", choices=ARCHS, help="the backbone")
    p.add_argument("--width", type=int, default=64, help="resnet18 only")
    p.add_argument("--out", help="results JSON (none: bench/results/memory_<device>.json)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["packed", "dense"], help=argparse.SUPPRESS)
    p.add_argument("--masks", type=int, help=argparse.SUPPRESS)
    p.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--as-limit", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.batch is None:
        args.batch = 32 if args.device.startswith("cuda") else 2
    if args.as_limit:  # before anything is imported or allocated
        resource.setrlimit(resource.RLIMIT_AS, (args.as_limit, args.as_limit))
    if args.probe:
        print(json.dumps(probe(args)))
        return 0
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return 0
    parent(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
