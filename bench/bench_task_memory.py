"""Memory of a SupSup ResNet-50 that keeps T tasks: finished tasks as packed bits, against the code
before the task states (commit 7a68853), which kept every task's float scores for life.

The model is `convert(torchvision.models.resnet50(weights=None, num_classes=100), "supermask",
density=0.1, num_tasks=T, seed=0)`. For each T, in a child process of its own:

    converted     memory right after convert() (task 0 is selected, so its float scores exist)
    finished      after every task is finished (each selected, then `finish_task`: its mask kept
                  as packed words, its floats dropped): the backbone, T/8 bytes per maskable weight
    step peak     the peak during training steps of one new task (`add_task`, SGD with momentum on
                  `task_parameters`, batch 2 at 224x224, forward + backward + step)
    forward       the eval forward of finished task 0 (batch 2 at 224x224), median of a few runs

with the analytic sizes: backbone bytes, packed mask bytes (sum of `masks.nbytes`), one task's float
scores. The old code (`--old-T`, by default T = 10) is extracted from git (`git archive`, the index
is not touched) into --old-path and put first on sys.path in its child; it holds all T tasks' float
scores and re-selects task 0's mask from floats on every forward.

On a CPU, memory is the child's resident set (VmRSS, MiB above the same process after importing
torch, torchvision and impresslearn); the step's peak is VmHWM after resetting it
(/proc/self/clear_refs) just before the steps. Each child gets an address-space limit (RLIMIT_AS)
below the memory available, so a case that does not fit ends as "out of memory" (as in
bench_memory.py). On a GPU it is torch.cuda.memory_allocated / max_memory_allocated.

    python bench/bench_task_memory.py                     # CPU: T = 10 100 250, and the old code at T = 10
    python bench/bench_task_memory.py --device cuda --T 10 100 --old-T
    python bench/bench_task_memory.py --arch resnet18 --width 4 --image-size 16 --T 3 --old-T 2 --out /tmp/t.json

Results: bench/results/task_memory_<device>.json (every case, the machine, the command) and .md
(the table, and whether a 100-task model fits in backbone + packed masks + 1 GiB).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import io
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # bench_memory beside this file, also when imported from a test

from bench_memory import GIB, MIB, _status_mb, machine, mem_available  # noqa: E402  (stdlib only: no torch here)
from child_process import failure, run_child  # noqa: E402
from cli_help import HelpFormatter  # noqa: E402

OLD_COMMIT = "7a68853"  # the last commit that kept every SupSup task's float scores (an nn.ParameterList)
ARCHS = ("resnet50", "resnet18")  # resnet18: impresslearn.models.cifar_resnet18, narrow, for smoke runs
SLACK_MIB = 1024  # the acceptance figure: backbone + packed masks + 1 GiB


# --------------------------------------------------------------------------- the child: one case


class Meter:
    """Memory now and at its peak: resident set on a CPU, allocated tensor memory on a GPU."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def now(self) -> float:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.memory_allocated() / MIB
        return _status_mb("VmRSS")

    def peak(self) -> float:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / MIB
        return _status_mb("VmHWM")

    def reset_peak(self) -> bool:
        """Start a new peak from here; False if this kernel cannot (the peak is then the lifetime one)."""
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return True
        try:
            Path("/proc/self/clear_refs").write_text("5")  # "5" resets VmHWM to the current RSS
            return True
        except OSError:
            return False


def trimmed(meter: Meter) -> float | None:
    """Memory after handing the C heap's free pages back to the system (glibc's malloc_trim): what
    the process holds, less memory that the allocator keeps for reuse after frees (e.g. the
    buffers that grow by one row per added task, and the floats of finished tasks)."""
    if meter.cuda:
        return meter.now()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        return None
    return meter.now()


def build_model(il, arch: str, width: int, tasks: int, density: float):
    import torchvision

    if arch == "resnet50":
        net = torchvision.models.resnet50(weights=None, num_classes=100)
    else:
        net = il.models.cifar_resnet18(100, width=width)
    return il.convert(net, "supermask", density=density, num_tasks=tasks, seed=0)


def forward_ms(il, model, args) -> list[float]:
    """Eval forward times (ms) of task 0, after one warm-up run."""
    import torch

    model.eval()
    il.set_task(model, 0)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, device=args.device)
    times = []
    with torch.no_grad():
        for _ in range(args.forward_runs + 1):
            t = time.perf_counter()
            model(x)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t) * 1000)
    return times[1:]


def train_new_task(il, model, layers, args, meter: Meter, code: str) -> dict:
    """Add a task and run `args.steps` SGD steps on it; the peak memory and the last step's time."""
    import torch
    import torch.nn.functional as F

    task = il.add_task(model)
    if code == "new":
        params = il.task_parameters(model, task)
    else:  # the old code has no task_parameters: a task's Parameters are its row of every layer's scores
        il.set_task(model, task)
        params = [m.scores[task] for m in layers]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9)  # SupSup's optimizer: one momentum buffer per score
    model.train()
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, device=args.device)
    y = torch.randint(0, 100, (args.batch,), device=args.device)
    base = meter.now()
    out = {
        "train_task": task,
        "trained_floats": sum(p.numel() for p in params),
        "step_base_mb": base,
        "peak_reset": meter.reset_peak(),
    }
    times = []
    for _ in range(args.steps):  # the second step holds the momentum buffers from its start
        t = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    out["step_peak_abs_mb"] = meter.peak()
    out["step_s"] = times[-1]
    out["first_step_s"] = times[0]
    return out


def child(args) -> dict:
    """Run one case (code "new" or "old", T tasks) in this process; return what it measured."""
    if args.code == "old":  # the old package first on the path, before anything imports impresslearn
        sys.path.insert(0, str(Path(args.old_path).resolve()))
    import torch
    import torchvision  # everything imported before the baseline

    import impresslearn as il
    import impresslearn.models  # noqa: F401
    from impresslearn import ops
    from impresslearn.layers import supermask_layers

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    meter = Meter(args.device)
    pkg = Path(il.__file__).resolve().parent
    out = {
        "code": args.code,
        "T": args.T,
        "arch": args.arch,
        "device": args.device,
        "impresslearn": str(pkg),
        "backend": ops.backend_for(args.device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }
    if args.code == "old" and not pkg.is_relative_to(Path(args.old_path).resolve()):
        raise SystemExit(f"the old code was not imported: impresslearn came from {pkg}")
    base = meter.now()
    out["baseline_mb"] = base  # the process with everything imported and nothing built
    try:
        t0 = time.perf_counter()
        model = build_model(il, args.arch, args.width, args.T, args.density).to(args.device)
        out["convert_s"] = time.perf_counter() - t0
        layers = [m for _, m in supermask_layers(model)]
        out["mask_layers"] = len(layers)
        out["masked_weights"] = sum(m.weight.numel() for m in layers)
        out["backbone_bytes"] = sum(m.weight.nbytes + (0 if m.bias is None else m.bias.nbytes) for m in layers)
        out["task_scores_bytes"] = sum(m.weight.numel() * m.weight.element_size() for m in layers)  # one task's floats
        out["converted_mb"] = meter.now() - base
        if args.code == "new":
            t0 = time.perf_counter()
            for t in range(args.T):  # selecting makes the task's scores (from its seed); finishing packs them
                il.set_task(model, t)
                il.finish_task(model, t)
            out["finish_all_s"] = time.perf_counter() - t0
            assert all(m.is_finished(t) for m in layers for t in range(args.T))
            out["packed_mask_bytes"] = sum(m.masks.nbytes for m in layers)  # [T, rows, ceil(cols/32)] int32 each
            out["packed_bytes_per_task"] = sum(m.masks[0].nbytes for m in layers)
            out["finished_mb"] = meter.now() - base
        else:
            out["all_scores_bytes"] = sum(p.nbytes for m in layers for p in m.scores)  # T tasks' floats, for life
        held = trimmed(meter)  # the same, less what the allocator keeps but does not use
        out["held_trimmed_mb"] = None if held is None else held - base
        # every tensor the model holds (parameters, buffers, stashed floats of unfinished tasks)
        stash = sum(v.nbytes for m in layers for v in getattr(m, "_stash", {}).values())
        out["model_tensor_bytes"] = sum(p.nbytes for p in model.parameters()) + sum(b.nbytes for b in model.buffers()) + stash
        out["peak_before_step_mb"] = meter.peak() - base  # convert, finishing (lifetime peak so far)
        times = forward_ms(il, model, args)
        out["forward_ms"] = statistics.median(times)
        out["forward_runs_ms"] = times
        step = train_new_task(il, model, layers, args, meter, args.code)
        out["step_peak_mb"] = step.pop("step_peak_abs_mb") - base
        out.update(step)
        out["status"] = "ok"
    except (MemoryError, RuntimeError) as err:  # CPU allocations beyond RLIMIT_AS; torch.OutOfMemoryError
        text = str(err).lower()
        if isinstance(err, RuntimeError) and "alloc" not in text and "out of memory" not in text:
            raise
        out["status"] = "out of memory"
        out["error"] = str(err).splitlines()[0][:200]
    if not meter.cuda:
        out["vmsize_mb"] = _status_mb("VmSize")
    return out


def probe(args) -> dict:
    """(child) the GPU."""
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: no CUDA device here")
    return {
        "gpu": torch.cuda.get_device_name(0),
        "gpu_memory_gb": round(torch.cuda.get_device_properties(0).total_memory / GIB, 1),
    }


# --------------------------------------------------------------------------- the parent: all cases


def prepare_old(commit: str, path: Path) -> dict:
    """Extract the impresslearn package of `commit` into `path` (git archive: no worktree, no index)
    and copy the built native library beside it; what was done, or {"error": why not}."""
    try:
        full = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{commit}^{{commit}}"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as err:
        return {"error": f"commit {commit} is not in this checkout's history ({type(err).__name__})"}
    marker = path / ".impresslearn-commit"  # says the folder is ours, and which commit it holds
    if path.exists() and not marker.exists():
        return {"error": f"{path} exists and was not made by this script: pass another --old-path"}
    if not (marker.exists() and marker.read_text().strip() == full):
        shutil.rmtree(path, ignore_errors=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", full, "impresslearn"], capture_output=True, check=True)
        path.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(path, filter="data")
        marker.write_text(full + "\n")
    # .so files are not tracked: the old package loads the library built in this checkout (its
    # ops and the loader did not change since), else it falls back to the reference backend.
    copied = []
    for lib in sorted((ROOT / "impresslearn").glob("_native*")):
        if lib.suffix in (".so", ".json"):
            shutil.copy2(lib, path / "impresslearn" / lib.name)
            copied.append(lib.name)
    return {"commit": full, "path": str(path), "native_files": copied}


def run_case(code: str, tasks: int, args) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--code",
        code,
        "--tasks",
        str(tasks),
        "--device",
        args.device,
        "--arch",
        args.arch,
        "--width",
        str(args.width),
        "--batch",
        str(args.batch),
        "--image-size",
        str(args.image_size),
        "--density",
        str(args.density),
        "--steps",
        str(args.steps),
        "--forward-runs",
        str(args.forward_runs),
        "--threads",
        str(args.threads),
        "--old-path",
        str(args.old_path),
    ]
    limit = 0
    if args.device == "cpu":
        # Address space, not resident memory: importing torch maps about 3 GiB it never touches.
        limit = int(min(args.limit_gb * GIB, mem_available() - args.reserve_gb * GIB + 3 * GIB))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    t0 = time.monotonic()
    res, code_, err_text, maxrss = run_child(cmd, limit, env)
    if res is None:
        res = {"code": code, "T": tasks, **failure(code_, err_text)}
    res["wall_s"] = round(time.monotonic() - t0, 1)
    if args.device == "cpu":
        res["ru_maxrss_mb"] = maxrss  # since the step's peak reset (clear_refs resets it too)
        res["address_space_limit_gb"] = round(limit / GIB, 2)
    return res


def _fmt(v, spec: str | None = None) -> str:
    if v is None:
        return "-"
    return format(v, spec or (",.0f" if abs(v) >= 10 else ".1f"))  # small (smoke) sizes keep a decimal


def holds(case: dict) -> bool | None:
    """A new-code case's model (all T tasks finished) within backbone + packed masks + 1 GiB."""
    if case.get("status") != "ok" or case.get("code") != "new":
        return None
    return case["finished_mb"] <= (case["backbone_bytes"] + case["packed_mask_bytes"]) / MIB + SLACK_MIB


def table(res: dict) -> str:
    # memory columns in MiB, as the .md says above the table (resident on a CPU, allocated on a GPU)
    head = [
        "T",
        "code (backend)",
        "after convert",
        "all T tasks finished",
        "all T tasks held, after malloc_trim",
        "backbone + task state",
        "within backbone + packed masks + 1 GiB",
        "peak of a training step",
        "forward of finished task 0 (ms)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in sorted(res["cases"], key=lambda c: (c["T"], c["code"] != "new")):  # each T: now, then before
        name = "now" if c["code"] == "new" else f"before, {res.get('old', {}).get('commit', OLD_COMMIT)[:7]}"
        if c.get("status") != "ok":
            lines.append(f"| {c['T']} | {name} | {c.get('status')}: {c.get('error', '')[:80]} |" + " |" * (len(head) - 3))
            continue
        if c["code"] == "new":
            state = f"{_fmt(c['backbone_bytes'] / MIB)} + {_fmt(c['packed_mask_bytes'] / MIB)} packed"
            finished, ok = _fmt(c["finished_mb"]), ("yes" if holds(c) else "**no**")
        else:  # the old code has no finished state: every task keeps its float scores
            state = f"{_fmt(c['backbone_bytes'] / MIB)} + {_fmt(c['all_scores_bytes'] / MIB)} float scores"
            finished, ok = "- (tasks stay floats)", "-"
        lines.append(
            f"| {c['T']} | {name} ({c['backend']}) | {_fmt(c['converted_mb'])} | {finished} | "
            f"{_fmt(c.get('held_trimmed_mb'))} | {state} | {ok} | "
            f"{_fmt(c['step_peak_mb'])} | {_fmt(c['forward_ms'], ',.1f')} |"
        )
    return "\n".join(lines)


def verdict(res: dict) -> str:
    """Whether the acceptance figure holds at T = 100 (or at the cases measured, if 100 was not)."""
    cases = [c for c in res["cases"] if c.get("code") == "new"]
    wanted = [c for c in cases if c["T"] == 100] or cases
    parts = []
    for c in wanted:
        if c.get("status") != "ok":
            parts.append(f"T = {c['T']}: not measured ({c.get('status')})")
            continue
        bound = (c["backbone_bytes"] + c["packed_mask_bytes"]) / MIB + SLACK_MIB
        parts.append(
            f"T = {c['T']}: the model with all {c['T']} tasks finished takes {c['finished_mb']:,.0f} MiB "
            f"against a bound of {bound:,.0f} MiB (backbone {c['backbone_bytes'] / MIB:,.0f} + packed masks "
            f"{c['packed_mask_bytes'] / MIB:,.0f} + 1,024): **{'holds' if holds(c) else 'does not hold'}** "
            f"(margin {bound - c['finished_mb']:,.0f} MiB); its training-step peak, "
            f"{c['step_peak_mb']:,.0f} MiB, is {'within' if c['step_peak_mb'] <= bound else 'above'} the same bound"
        )
    return "Acceptance (a 100-task model within backbone + packed masks + 1 GiB): " + "; ".join(parts) + "."


def times_table(res: dict) -> str:
    """Seconds each stage took (the conversion grows with T: each added task copies the masks buffer)."""
    lines = [
        "| T | code | convert (s) | finish all T tasks (s) | a training step (s) | the case's process (s) |",
        "|---|---|---|---|---|---|",
    ]
    for c in sorted(res["cases"], key=lambda c: (c["T"], c["code"] != "new")):
        if c.get("status") == "ok":
            lines.append(
                f"| {c['T']} | {'now' if c['code'] == 'new' else 'before'} | {c['convert_s']:.1f} | "
                f"{_fmt(c.get('finish_all_s'), '.1f')} | {c['step_s']:.2f} | {_fmt(c.get('wall_s'), '.0f')} |"
            )
    return "\n".join(lines)


def markdown(res: dict) -> str:
    m = res["machine"]
    gpu = res["config"]["device"].startswith("cuda")
    where = f"{m['processor']} ({m['cpus']} CPUs, {m['memory_gb']} GB" + (f", {m['gpu']}" if "gpu" in m else "") + ")"
    cfg = res["config"]
    what = (
        "torch.cuda.memory_allocated (the step: max_memory_allocated), MiB"
        if gpu
        else "resident memory (VmRSS; the step: VmHWM reset just before it), MiB above the same process after "
        "importing torch, torchvision and impresslearn"
    )
    old = res.get("old", {})
    notes = [
        f"`{res['command']}` on {where}, torch {m['torch']}, torchvision {res['probe']['torchvision']}, "
        f"{cfg['threads']} thread(s); {res['seconds']:.0f} s in all; load average {res['load_average_start'][0]:.1f} "
        f"at the start, {res['load_average_end'][0]:.1f} at the end (times are only as quiet as the machine was).",
        "",
        f'Model: `convert(torchvision.models.resnet50(weights=None, num_classes=100), "supermask", density='
        f"{cfg['density']:g}, num_tasks=T, seed=0)`"
        if cfg["arch"] == "resnet50"
        else f"Model: impresslearn.models.cifar_resnet18(width={cfg['width']}) (a smoke run), SupSup, density {cfg['density']:g}",
        f"(batch {cfg['batch']} at {cfg['image_size']}x{cfg['image_size']}). Memory: {what}.",
        "",
        "- *now*: the working tree. Every task is finished (selected, then `finish_task`: packed words, floats "
        "dropped); *after convert* includes task 0's float scores (selected on conversion). The training step is "
        f"{cfg['steps']} SGD steps (momentum 0.9) of a new task (`add_task`, `task_parameters`): its scores, "
        "their gradient and momentum buffer, and the activations.",
        f"- *before*: commit {old.get('commit', OLD_COMMIT)[:7]} (`git archive`, run from {old.get('path', '-')}), "
        "where every task keeps its float scores for life, so there is no finished state; its forward selects "
        "task 0's top-k mask from floats each time.",
        "- *all T tasks held, after malloc_trim*: the same process once glibc has handed its free heap pages back "
        "(`malloc_trim(0)`): what the tensors take, without the memory the allocator keeps for reuse after the "
        "frees of conversion and finishing (the old code: right after conversion).",
        "- *backbone + task state*: analytic, the frozen weights of the mask layers (4 bytes per weight) plus what the "
        "tasks hold (sum of `masks.nbytes`, 1 bit per weight per task, rows padded to 32 bits; or all T tasks' "
        "float scores).",
        "",
        res["table"],
        "",
        res["verdict"],
        "",
        "Times (the same runs):",
        "",
        times_table(res),
    ]
    if old.get("error"):
        notes += ["", f"The old code was not measured: {old['error']}."]
    return "\n".join(notes) + "\n"


def parent(args) -> dict:
    device = "cuda" if args.device.startswith("cuda") else "cpu"
    out = Path(args.out or HERE / "results" / f"task_memory_{device}.json")
    started = time.monotonic()
    # This process never imports torch (a child's ru_maxrss counts what it was forked from): the
    # versions come from the installed packages' metadata, the GPU from one light child.
    probed = {"torch": metadata.version("torch"), "torchvision": metadata.version("torchvision")}
    if device == "cuda":
        probe_cmd = [sys.executable, str(Path(__file__).resolve()), "--probe", "--device", args.device]
        done = subprocess.run(probe_cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit((done.stderr.strip().splitlines() or [f"the probe exited with {done.returncode}"])[-1])
        probed |= json.loads(done.stdout.splitlines()[-1])
    res = {
        "command": shlex.join(["python", "bench/bench_task_memory.py", *args.argv]),
        "machine": machine(args.device, probed),
        "probe": probed,
        "config": {
            "T": args.T,
            "old_T": args.old_T,
            "arch": args.arch,
            "width": args.width,
            "device": args.device,
            "batch": args.batch,
            "image_size": args.image_size,
            "density": args.density,
            "steps": args.steps,
            "forward_runs": args.forward_runs,
            "threads": args.threads,
        },
        "load_average_start": os.getloadavg(),
        "cases": [],
    }
    if args.old_T:
        res["old"] = prepare_old(args.old_commit, Path(args.old_path))
    plan = [("new", t) for t in args.T] + [("old", t) for t in args.old_T]
    for code, tasks in plan:
        print(f"T={tasks} {code}: ", end="", file=sys.stderr, flush=True)
        if code == "old" and "error" in res["old"]:
            case = {"code": code, "T": tasks, "status": "not run", "error": res["old"]["error"]}
        else:
            case = run_case(code, tasks, args)
        res["cases"].append(case)
        if "torch" in case:  # the metadata's versions can lack the local part (+cu130) that __version__ has
            res["machine"]["torch"] = res["probe"]["torch"] = case["torch"]
            res["probe"]["torchvision"] = case["torchvision"]
        print(
            case["status"],
            {
                k: round(case[k], 1)
                for k in ("converted_mb", "finished_mb", "step_peak_mb", "forward_ms", "wall_s")
                if case.get(k) is not None
            },
            file=sys.stderr,
            flush=True,
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1))  # after every case: an interruption keeps what ran
    res["load_average_end"] = os.getloadavg()
    res["seconds"] = round(time.monotonic() - started, 1)
    res["table"] = table(res)
    res["verdict"] = verdict(res)
    out.write_text(json.dumps(res, indent=1))
    out.with_suffix(".md").write_text(markdown(res))
    print(res["table"])
    print(res["verdict"])
    print(f"results: {out} (.md beside it)")
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--T", type=int, nargs="+", default=[10, 100, 250], help="task counts of the current code")
    p.add_argument("--old-T", type=int, nargs="*", default=[10], help="task counts of the old code (none: skip it)")
    p.add_argument("--old-commit", default=OLD_COMMIT, help="the code before the task states")
    p.add_argument("--old-path", default="/tmp/il-old", help="where the old package is extracted")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    p.add_argument("--arch", default="resnet50", choices=ARCHS, help="the backbone")
    p.add_argument("--width", type=int, default=64, help="resnet18 only")
    p.add_argument("--batch", type=int, default=2, help="images per training step")
    p.add_argument("--image-size", type=int, default=224, help="input images' height and width")
    p.add_argument("--density", type=float, default=0.1, help="fraction of weights each task's mask keeps")
    p.add_argument("--steps", type=int, default=2, help="training steps of the new task (the peak is over all)")
    p.add_argument("--forward-runs", type=int, default=5, help="timed forwards after one warm-up (median reported)")
    p.add_argument("--threads", type=int, default=1, help="torch threads in each child (torch.set_num_threads)")
    p.add_argument("--limit-gb", type=float, default=16.0, help="CPU: most address space a child may map")
    p.add_argument("--reserve-gb", type=float, default=3.0, help="CPU: memory left to others besides the child")
    p.add_argument("--out", help="results JSON (none: bench/results/task_memory_<device>.json; .md beside it)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--code", choices=["new", "old"], default="new", help=argparse.SUPPRESS)
    p.add_argument("--tasks", type=int, help=argparse.SUPPRESS)
    p.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--as-limit", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)  # for the command in the results
    if args.as_limit:  # before anything is imported or allocated
        resource.setrlimit(resource.RLIMIT_AS, (args.as_limit, args.as_limit))
    if args.probe:
        print(json.dumps(probe(args)))
        return 0
    if args.child:
        args.T = args.tasks
        print(json.dumps(child(args)), flush=True)
        return 0
    parent(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
