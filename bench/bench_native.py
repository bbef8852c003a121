"""The native CPU ops side by side with the reference backend and the dense baselines.

    python bench/bench_native.py                  # everything; writes bench/results/cpu-native.json
    python bench/bench_native.py --only popup     # one group: combine, grad_alpha, popup, lenet, variants
    python bench/bench_native.py --quick          # small sizes, a smoke test of the script
    python bench/bench_native.py --only combine --methods native --no-memory --out F.json
                                                  # the native op alone: to compare two builds

Groups (DESIGN.md section 4 / issue 5):
    combine      W ⊙ Σ_t alpha_t M_t for a 512×512×3×3 layer at T ∈ {1, 8, 32, 75, 250}
    grad_alpha   d alpha_t = Σ G ⊙ W ⊙ M_t for the same layer
    popup        the top-10 % mask of 2.4 M and 25 M scores
    lenet        one ImpressLearn training step (forward, cross-entropy, backward, RMSprop) of
                 LeNet-300-100 with 100 basis masks at batch 128
    variants     the native combine's inner loops (AVX-512, AVX2, portable, byte tables) against
                 each other: the measurement behind csrc/variant.cpp's choice

Methods: "native" (the C++ ops, through impresslearn.ops), "reference" (the pure-PyTorch
backend), "dense_supsup" (masks stored as stacked float tensors and combined by broadcasting, as
public SupSup code does: impresslearn.dense.combine_dense), "dense_matvec" (the same stack, one
matrix-vector product: dense.combine_matvec), and for popup torch.sort-based selection (SupSup's
GetSubnet), torch.topk and torch.kthvalue.

Time: median and minimum wall time of repeated calls in this process, after one warm-up call,
with torch's default number of threads. Memory: each (case, method) once more in a fresh child
process: `inputs_mb` is the resident memory its inputs take (the method's own mask storage: dense
float stacks or packed words), `peak_mb` the peak resident memory above the child's baseline
while the call runs (inputs included), read from /proc/self/status (VmHWM, reset through
/proc/self/clear_refs).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

import impresslearn
from impresslearn import dense, models, ops
from impresslearn.format import PackedMasks, num_words

RESULTS = Path(__file__).resolve().parent / "results" / "cpu-native.json"
LAYER = (512, 512, 3, 3)
MASK_COUNTS = (1, 8, 32, 75, 250)
POPUP_SIZES = (2_400_000, 25_000_000)
DENSITY = 0.1


@dataclass
class Case:
    group: str
    method: str
    params: dict
    result: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- inputs

def random_words(t: int, shape, seed: int = 0) -> PackedMasks:
    """T random masks (density 1/2) made directly as packed words: no dense masks anywhere."""
    rows, cols = shape[0], math.prod(shape[1:])
    g = torch.Generator().manual_seed(seed)
    words = torch.randint(-2**31, 2**31, (t, rows, num_words(cols)), generator=g, dtype=torch.int64).to(torch.int32)
    if cols % 32:
        words[..., -1] &= (1 << (cols % 32)) - 1  # padding bits are zero
    return PackedMasks(words, shape)


def on(backend: str, fn: Callable) -> Callable:
    def run():
        with impresslearn.backend(backend):
            return fn()
    return run


# --------------------------------------------------------------------------- the cases
# Each setup builds the method's inputs and returns the call to time.

def setup_combine(method: str, T: int, shape=LAYER) -> Callable:
    g = torch.Generator().manual_seed(1)
    weight, alpha = torch.randn(shape, generator=g), torch.randn(T, generator=g) / T
    packed = random_words(T, shape)
    if method in ("native", "reference"):
        return on(method, lambda: ops.combine(weight, packed, alpha))
    stacked = dense.stack_masks(packed)
    del packed
    combine = dense.combine_dense if method == "dense_supsup" else dense.combine_matvec
    return lambda: combine(weight, stacked, alpha)


def setup_grad_alpha(method: str, T: int, shape=LAYER) -> Callable:
    g = torch.Generator().manual_seed(2)
    weight, alpha, grad = torch.randn(shape, generator=g), torch.randn(T, generator=g), torch.randn(shape, generator=g)
    packed = random_words(T, shape)
    if method in ("native", "reference"):
        return on(method, lambda: ops._combine_grad_alpha(grad, weight, packed.words, alpha))
    stacked = dense.stack_masks(packed)
    del packed
    if method == "dense_supsup":  # what autograd does through combine_dense: a [T, ...] product
        dims = tuple(range(1, stacked.dim()))
        return lambda: (stacked * (grad * weight)).sum(dim=dims)
    return lambda: stacked.reshape(T, -1) @ (grad * weight).reshape(-1)  # ... and through combine_matvec


def _sort_select(scores: torch.Tensor, k: int) -> torch.Tensor:
    """SupSup's GetSubnet: sort all scores, zero the smallest, one the rest."""
    out = torch.empty_like(scores)
    _, idx = scores.flatten().sort()
    j = scores.numel() - k
    flat = out.flatten()
    flat[idx[:j]] = 0
    flat[idx[j:]] = 1
    return out


def _topk_select(scores: torch.Tensor, k: int) -> torch.Tensor:
    out = torch.zeros_like(scores)
    out.view(-1)[torch.topk(scores.view(-1), k, sorted=False).indices] = 1
    return out


def _kthvalue_select(scores: torch.Tensor, k: int) -> torch.Tensor:
    threshold = torch.kthvalue(scores.view(-1), scores.numel() - k + 1).values
    return (scores >= threshold).to(scores.dtype)


def setup_popup(method: str, n: int) -> Callable:
    scores = torch.randn(n // 1000, 1000, generator=torch.Generator().manual_seed(3)).abs()
    k = ops.popup_k(n, DENSITY)
    if method in ("native", "reference"):
        return on(method, lambda: ops.popup_mask(scores, DENSITY))
    if method == "native_pack":
        return on("native", lambda: ops.popup_pack(scores, DENSITY))
    select = {"torch_sort": _sort_select, "torch_topk": _topk_select, "torch_kthvalue": _kthvalue_select}[method]
    return lambda: select(scores, k)


class DenseImpressLinear(nn.Module):
    """An ImpressLinear whose basis is a stack of float masks, combined by a dense baseline."""

    def __init__(self, layer, combine):
        super().__init__()
        self.register_buffer("weight", layer.weight)
        self.register_buffer("stacked", dense.stack_masks(layer.basis))
        self.alpha = nn.Parameter(layer.alpha[0].detach().clone())
        self.combine = combine

    def forward(self, x):
        return F.linear(x, self.combine(self.weight, self.stacked, self.alpha))


def setup_lenet(method: str, basis_size: int = 100, batch: int = 128) -> Callable:
    model = impresslearn.convert(models.lenet_300_100(), "impress", basis_size=basis_size, density=DENSITY, seed=0)
    if method.startswith("dense"):
        combine = dense.combine_dense if method == "dense_supsup" else dense.combine_matvec
        for i, m in enumerate(model):
            if isinstance(m, impresslearn.ImpressLinear):
                model[i] = DenseImpressLinear(m, combine)
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(batch, 1, 28, 28, generator=g), torch.randint(0, 10, (batch,), generator=g)
    opt = torch.optim.RMSprop([p for p in model.parameters() if p.requires_grad], lr=0.002)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return on(method if method in ("native", "reference") else "auto", step)


def setup_variant(method: str, T: int, shape=LAYER) -> Callable:
    from impresslearn import native

    call = setup_combine("native", T, shape)

    def run():
        previous = native.set_variant(method)
        try:
            return call()
        finally:
            native.set_variant(previous)
    return run


SETUPS = {"combine": setup_combine, "grad_alpha": setup_grad_alpha, "popup": setup_popup, "lenet": setup_lenet,
          "variants": setup_variant}


def cases(quick: bool) -> list[Case]:
    shape = (64, 64, 3, 3) if quick else LAYER
    ts = (1, 8, 75) if quick else MASK_COUNTS
    dense_methods = ("native", "reference", "dense_supsup", "dense_matvec")
    out = []
    for group in ("combine", "grad_alpha"):
        out += [Case(group, m, {"T": t, "shape": list(shape)}) for t in ts for m in dense_methods]
    for n in ((24_000, 250_000) if quick else POPUP_SIZES):
        out += [Case("popup", m, {"n": n, "density": DENSITY}) for m in
                ("native", "native_pack", "reference", "torch_sort", "torch_topk", "torch_kthvalue")]
    out += [Case("lenet", m, {"basis_size": 10 if quick else 100, "batch": 128}) for m in dense_methods]
    if "native" in impresslearn.available_backends():
        from impresslearn import native

        variants = []
        for name in ("generic", "lut", "avx2", "avx512"):
            try:
                native.set_variant(name)
            except RuntimeError:  # not on this CPU
                continue
            variants.append(name)
        native.set_variant("auto")
        out += [Case("variants", v, {"T": t, "shape": list(shape)}) for t in ts for v in variants]
    return out


# --------------------------------------------------------------------------- measuring

def setup_call(case: Case) -> Callable:
    params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in case.params.items() if k != "density"}
    return SETUPS[case.group](case.method, **params)


def time_call(fn: Callable, min_runs: int = 3, max_runs: int = 30, budget_s: float = 1.0) -> dict:
    t0 = time.perf_counter()
    fn()  # warm-up
    if time.perf_counter() - t0 > 5 * budget_s:
        min_runs = 1  # the slow baselines (seconds per call): one timed run is enough
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or (len(times) < max_runs and time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3, "runs": len(times)}


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def measure_memory_here(case: Case) -> dict:
    """Run in a fresh child: inputs' resident memory and the peak during one call (MB)."""
    gc.collect()
    base = _status_mb("VmRSS")
    fn = setup_call(case)
    if case.group == "lenet":
        fn()  # the optimizer's state exists from the first step on
    gc.collect()
    inputs = _status_mb("VmRSS") - base
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident size
    fn()
    return {"inputs_mb": inputs, "peak_mb": _status_mb("VmHWM") - base}


def measure_memory(case: Case) -> dict:
    spec = json.dumps({"group": case.group, "method": case.method, "params": case.params})
    threads = ["--threads", str(torch.get_num_threads())]
    proc = subprocess.run([sys.executable, __file__, "--child", spec, *threads], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"memory_error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "backends": impresslearn.available_backends()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    if "native" in info["backends"]:
        from impresslearn import native
        info["native_variant"] = native.variant()
    return info


# --------------------------------------------------------------------------- report

TARGETS = [  # (group, params subset, method, at least this many times slower than native, memory ratio)
    ("combine", {"T": 75}, "dense_matvec", 4, None),
    ("combine", {"T": 75}, "dense_supsup", 40, 8),
    ("popup", {}, "torch_sort", 10, None),
    ("popup", {}, "torch_topk", 2, None),
    ("lenet", {}, "dense_supsup", 3, None),
    ("lenet", {}, "dense_matvec", 3, None),
]


def _key(case: Case) -> str:
    return ", ".join(f"{k}={v}" for k, v in case.params.items() if k not in ("shape", "density"))


def summarize(results: list[Case]) -> tuple[str, list[dict]]:
    """A markdown table per group (time, speed-up of native, memory) and the issue's targets."""
    lines, checks = [], []
    by_group: dict[str, dict[str, dict[str, Case]]] = {}
    for c in results:
        by_group.setdefault(c.group, {}).setdefault(_key(c), {})[c.method] = c
    for group, rows in by_group.items():
        methods = list(dict.fromkeys(m for r in rows.values() for m in r))
        base = "native" if group != "variants" else None
        lines += [f"\n### {group}\n", "| case | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
        for key, row in rows.items():
            cells = []
            for m in methods:
                c = row.get(m)
                if c is None or "median_ms" not in c.result:
                    cells.append("—")
                    continue
                cell = f"{c.result['median_ms']:.2f} ms"
                if base and m != base and base in row and "median_ms" in row[base].result:
                    cell += f" ({c.result['median_ms'] / row[base].result['median_ms']:.1f}×)"
                if "peak_mb" in c.result:
                    cell += f", {c.result['peak_mb']:.0f} MB"
                cells.append(cell)
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines.append("\n(× = time relative to native; MB = peak resident memory of the call with its inputs)")
    for group, subset, method, speedup, mem_ratio in TARGETS:
        for key, row in by_group.get(group, {}).items():
            native, other = row.get("native"), row.get(method)
            if not native or not other or any(native.params.get(k) != v for k, v in subset.items()):
                continue
            if "median_ms" not in native.result or "median_ms" not in other.result:
                continue
            check = {"group": group, "case": key, "against": method,
                     "speedup": other.result["median_ms"] / native.result["median_ms"], "speedup_target": speedup}
            if mem_ratio and "peak_mb" in native.result and "peak_mb" in other.result:
                check["memory_ratio"] = other.result["peak_mb"] / max(native.result["peak_mb"], 1e-9)
                check["memory_ratio_target"] = mem_ratio
            check["met"] = check["speedup"] >= speedup and check.get("memory_ratio", mem_ratio or 0) >= (mem_ratio or 0)
            checks.append(check)
    lines.append("\nTargets (issue 5):")
    for c in checks:
        mem = f", memory {c['memory_ratio']:.1f}× (≥ {c['memory_ratio_target']}×)" if "memory_ratio" in c else ""
        lines.append(f"- {c['group']} [{c['case']}] vs {c['against']}: {c['speedup']:.1f}× (≥ {c['speedup_target']}×)"
                     f"{mem}: {'met' if c['met'] else 'NOT met'}")
    return "\n".join(lines), checks


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SETUPS), help="run only these groups")
    parser.add_argument("--methods", nargs="+", help="run only these methods (e.g. native native_pack: the native "
                                                     "ops alone, to compare two builds)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test of the script")
    parser.add_argument("--no-memory", action="store_true", help="skip the child processes that measure memory")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--out", type=Path, default=None, help=f"results file (default {RESULTS}; --quick: none)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(measure_memory_here(Case(spec["group"], spec["method"], spec["params"]))))
        return
    if "native" not in impresslearn.available_backends():
        sys.exit(f"the native backend is not available: {impresslearn.backends.why_unavailable('native')}")
    todo = [c for c in cases(args.quick) if (not args.only or c.group in args.only)
            and (not args.methods or c.method in args.methods or c.group == "variants")]
    for case in tqdm(todo, desc="bench", unit="case"):
        try:
            case.result.update(time_call(setup_call(case)))
        except RuntimeError as err:  # e.g. out of memory for a dense baseline
            case.result["error"] = str(err).splitlines()[0]
        gc.collect()
        if not args.no_memory and case.group != "variants":
            case.result.update(measure_memory(case))
    table, checks = summarize(todo)
    print(table)
    out = args.out or (None if args.quick else RESULTS)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {"command": "python bench/bench_native.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "results": [asdict(c) for c in todo], "targets": checks, "table": table}
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(out)  # an interrupted run leaves the previous results intact
        print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
