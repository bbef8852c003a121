"""Peak memory per case of the CPU methods (native, reference, the dense and torch baselines), each
in a fresh child process; joined with the suites' timings, the CPU tables and the targets the
native ops were built to meet.

Times come from the pytest-benchmark suites (bench/test_<primitive>.py); what they cannot measure
is the memory one call takes, which needs a process of its own per call. The cases and the calls
are the suites' own (bench_cases.py).

    python bench/bench_native.py                        # memory of every case: bench/results/cpu-native-memory.json
    python bench/bench_native.py --only combine popup   # some primitives: combine, grad_alpha, popup, lenet_step,
                                                        # impress_linear, impress_linear_backward
    python bench/bench_native.py --quick                # tiny cases: a smoke test of the script (no file)
    pytest bench --benchmark-only --benchmark-json=/tmp/t.json
    python bench/bench_native.py --timings /tmp/t.json  # ... with the times: tables of time (× native) and
                                                        # memory, and the native ops' targets

Memory: `inputs_mb` is the resident memory the case's inputs take (the method's own mask storage:
dense float stacks or packed words), `peak_mb` the peak resident memory above the child's
baseline while one call runs (inputs included), read from /proc/self/status (VmHWM, reset
through /proc/self/clear_refs). The results of the script before the suites existed (time and
memory in one run) are bench/results/cpu-native*.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_cases  # noqa: E402

import impresslearn  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "cpu-native-memory.json"
PRIMITIVES = ("combine", "grad_alpha", "popup", "lenet_step")
ALL_PRIMITIVES = PRIMITIVES + ("impress_linear", "impress_linear_backward")


def cpu_methods(primitive: str) -> list[bench_cases.Method]:
    """The methods that run compiled or in PyTorch on the CPU (no kernel variants: they take the
    memory of the native default, and Triton's interpreter is no measure)."""
    return [m for m in bench_cases.methods(primitive, variants=False) if m.device == "cpu" and m.backend != "triton"]


# --------------------------------------------------------------------------- memory, in a child


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def measure_here(primitive: str, case_id: str, method: str, quick: bool) -> dict:
    """In a fresh child: the case's inputs' resident memory and the peak during one call (MB)."""
    case = bench_cases.find_case(primitive, case_id, quick)
    # One call on a tiny case first: what the first call of an op loads once (the native library,
    # the modules torch imports lazily on a custom op's first dispatch) is not the call's memory.
    bench_cases.setup(primitive, bench_cases.cases(primitive, quick=True)[0], bench_cases.Method(method))()
    gc.collect()
    base = _status_mb("VmRSS")
    fn = bench_cases.setup(primitive, case, bench_cases.Method(method))
    if primitive == "lenet_step":
        fn()  # the optimizer's state exists from the first step on
    gc.collect()
    inputs = _status_mb("VmRSS") - base
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident size
    fn()
    return {"inputs_mb": inputs, "peak_mb": _status_mb("VmHWM") - base}


def measure(primitive: str, case_id: str, method: str, quick: bool) -> dict:
    spec = json.dumps({"primitive": primitive, "case": case_id, "method": method, "quick": quick})
    proc = subprocess.run(
        [sys.executable, __file__, "--child", spec, "--threads", str(torch.get_num_threads())], capture_output=True, text=True
    )
    if proc.returncode != 0:
        return {"memory_error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "backends": impresslearn.available_backends(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    if "native" in info["backends"]:
        from impresslearn import native

        info["native_variant"] = native.variant()
    return info


# --------------------------------------------------------------------------- timings and report


def read_timings(path: Path) -> dict:
    """{(primitive, case id, method id): {median_ms, min_ms, rounds}} from a --benchmark-json file."""
    out = {}
    for b in json.loads(path.read_text())["benchmarks"]:
        info, stats = b.get("extra_info", {}), b["stats"]
        if "primitive" in info:
            out[(info["primitive"], info["case"], info["method"])] = {
                "median_ms": stats["median"] * 1e3,
                "min_ms": stats["min"] * 1e3,
                "rounds": stats["rounds"],
            }
    return out


TARGETS = [  # (primitive, case fields, method, at least this many times slower than native, memory ratio)
    ("combine", {"masks": 75}, "dense_matvec", 4, None),
    ("combine", {"masks": 75}, "dense_supsup", 40, 8),
    ("popup", {}, "torch_sort", 10, None),
    ("popup", {}, "torch_topk", 2, None),
    ("lenet_step", {}, "dense_supsup", 3, None),
    ("lenet_step", {}, "dense_matvec", 3, None),
]


def summarize(rows: list[dict]) -> tuple[str, list[dict]]:
    """A markdown table per primitive (time and speed-up of native where timed, memory) and the targets."""
    lines, checks = [], []
    by: dict[str, dict[str, dict[str, dict]]] = {}
    for r in rows:
        by.setdefault(r["primitive"], {}).setdefault(r["case"], {})[r["method"]] = r
    for primitive, table in by.items():
        methods = list(dict.fromkeys(m for row in table.values() for m in row))
        lines += [f"\n### {primitive}\n", "| case | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
        for case, row in table.items():
            base = row.get("native", {}).get("median_ms")
            cells = []
            for m in methods:
                r = row.get(m, {})
                parts = []
                if "median_ms" in r:
                    relative = f" ({r['median_ms'] / base:.1f}×)" if base and m != "native" else ""
                    parts.append(f"{r['median_ms']:.2f} ms" + relative)
                if "peak_mb" in r:
                    parts.append(f"{r['peak_mb']:.0f} MB")
                cells.append(", ".join(parts) or r.get("memory_error", "—"))
            lines.append(f"| {case} | " + " | ".join(cells) + " |")
    lines.append("\n(× = time relative to native; MB = peak resident memory of the call with its inputs)")
    for primitive, fields, method, speedup, mem_ratio in TARGETS:
        for case, row in by.get(primitive, {}).items():
            native, other = row.get("native"), row.get(method)
            if not native or not other or any(native["params"].get(k) != v for k, v in fields.items()):
                continue
            if "median_ms" not in native or "median_ms" not in other:
                continue
            check = {
                "primitive": primitive,
                "case": case,
                "against": method,
                "speedup": other["median_ms"] / native["median_ms"],
                "speedup_target": speedup,
            }
            if mem_ratio and "peak_mb" in native and "peak_mb" in other:
                check["memory_ratio"] = other["peak_mb"] / max(native["peak_mb"], 1e-9)
                check["memory_ratio_target"] = mem_ratio
            check["met"] = check["speedup"] >= speedup and check.get("memory_ratio", mem_ratio or 0) >= (mem_ratio or 0)
            checks.append(check)
    if checks:
        lines.append("\nTargets of the native ops:")
    for c in checks:
        mem = f", memory {c['memory_ratio']:.1f}× (≥ {c['memory_ratio_target']}×)" if "memory_ratio" in c else ""
        lines.append(
            f"- {c['primitive']} [{c['case']}] vs {c['against']}: {c['speedup']:.1f}× (≥ {c['speedup_target']}×)"
            f"{mem}: {'met' if c['met'] else 'NOT met'}"
        )
    return "\n".join(lines), checks


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=ALL_PRIMITIVES, help=f"these primitives (none: {' '.join(PRIMITIVES)})")
    parser.add_argument("--methods", nargs="+", help="only these methods, e.g. native (none: every CPU method)")
    parser.add_argument("--quick", action="store_true", help="tiny cases: a smoke test of the script")
    parser.add_argument("--timings", type=Path, help="a pytest-benchmark JSON of the suites, joined into the tables")
    parser.add_argument("--no-memory", action="store_true", help="no child processes: the timings alone")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (none: torch's own choice)")
    parser.add_argument("--out", type=Path, default=None, help=f"results file (none: {RESULTS}; with --quick no file)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(measure_here(spec["primitive"], spec["case"], spec["method"], spec["quick"])))
        return {}
    if "native" not in impresslearn.available_backends():
        sys.exit(f"the native backend is not available: {impresslearn.backends.why_unavailable('native')}")
    timings = read_timings(args.timings) if args.timings else {}
    rows = []
    for primitive in args.only or PRIMITIVES:
        for case in bench_cases.cases(primitive, args.quick):
            for method in cpu_methods(primitive):
                if args.methods and method.id not in args.methods:
                    continue
                rows.append(
                    {
                        "primitive": primitive,
                        "case": case.id,
                        "method": method.id,
                        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(case).items()},
                        **timings.get((primitive, case.id, method.id), {}),
                    }
                )
    if not args.no_memory:
        for r in tqdm(rows, desc="memory", unit="case"):
            r.update(measure(r["primitive"], r["case"], r["method"], args.quick))
    table, checks = summarize(rows)
    print(table)
    record = {
        "command": "python bench/bench_native.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "quick": args.quick,
        "timings": str(args.timings) if args.timings else None,
        "results": rows,
        "targets": checks,
        "table": table,
    }
    out = args.out or (None if args.quick else RESULTS)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(out)  # an interrupted run leaves the previous results intact
        print(f"\nwrote {out}")
    return record


if __name__ == "__main__":
    main()
