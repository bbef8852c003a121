"""Run every Triton kernel benchmark and write bench/results/<gpu>.json and <gpu>.png.

    python bench/run_triton.py                 # on a CUDA machine: the full run (several minutes)
    python bench/run_triton.py --smoke         # tiny sizes; also on a CPU, through Triton's interpreter
    python bench/run_triton.py --only popup    # one of: combine, impress_linear, popup

The JSON holds the device (name, peak bandwidth, versions), every measured row and a summary
against the Triton kernels' targets. Without a GPU only `--smoke` runs, to show the scripts work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cli_help import HelpFormatter  # noqa: E402

BENCHES = ("combine", "impress_linear", "popup")


def _module(name: str):
    import importlib

    return importlib.import_module(f"bench_{name}_triton")


def _ratio(a, b):
    return a / b if a and b else None


def summarize(rows: list[dict]) -> dict:
    """The Triton kernels' targets, from the rows (None where a row is missing)."""
    ok = [r for r in rows if "ms" in r]

    def pick(**where):
        return [r for r in ok if all(r.get(k) == v for k, v in where.items())]

    def ms_of(impl, **where):
        found = pick(impl=impl, **where)
        return found[0]["ms"] if found else None

    summary = {}
    # combine: fraction of peak bandwidth of the Triton kernel, per T (best and median over layers).
    for t in sorted({r["masks"] for r in pick(bench="combine")}):
        fr = [r.get("peak_fraction") for r in pick(bench="combine", op="forward", impl="triton", masks=t, alpha="per_layer")]
        fr = [f for f in fr if f is not None]
        if fr:
            summary[f"combine_T{t}_peak_fraction"] = {"best": max(fr), "median": statistics.median(fr), "target": 0.7}
    # Which coefficient path of combine is faster, per alpha mode and T (median over layers).
    for alpha in ("per_layer", "per_channel"):
        for t in sorted({r["masks"] for r in pick(bench="combine")}):
            medians = {}
            for impl in ("triton_lut", "triton_shift_add"):
                times = [r["ms"] for r in pick(bench="combine", op="forward", impl=impl, masks=t, alpha=alpha)]
                if times:
                    medians[impl] = statistics.median(times)
            if len(medians) == 2:
                summary[f"combine_{alpha}_T{t}_faster_path"] = min(medians, key=medians.get)
    # the ImpressLearn training step of a ResNet-50 conv layer at T = 75 vs the dense baseline.
    for r in pick(bench="conv_step", impl="triton", masks=75):
        dense_ms = ms_of("dense", bench="conv_step", layer=r["layer"], masks=75)
        summary[f"conv_step_{r['layer']}_T75_speedup_vs_dense"] = {"value": _ratio(dense_ms, r["ms"]), "target": 5.0}
    # impress_linear forward+backward at batch >= 128, relative to F.linear with a precomputed weight.
    lin = pick(bench="impress_linear", op="fwd+bwd", impl="triton")
    big = [
        _ratio(
            r["ms"],
            ms_of(
                "floor",
                bench="impress_linear",
                op="fwd+bwd",
                layer=r["layer"],
                masks=r["masks"],
                dtype=r["dtype"],
                batch=r["batch"],
            ),
        )
        for r in lin
        if r["batch"] >= 128
    ]
    big = [b for b in big if b is not None]
    if big:
        summary["impress_linear_fwd_bwd_batch_ge_128_time_vs_floor"] = {
            "worst": max(big),
            "median": statistics.median(big),
            "target": 1.3,
        }
    # Where the fused forward stops beating combine + GEMM (the fused_max_batch threshold).
    crossover = {}
    for r in pick(bench="impress_linear", op="forward", impl="triton_fused"):
        other = ms_of(
            "triton_combine_gemm",
            bench="impress_linear",
            op="forward",
            layer=r["layer"],
            masks=r["masks"],
            dtype=r["dtype"],
            batch=r["batch"],
        )
        key = f"{r['layer']}/T{r['masks']}/{r['dtype']}"
        if other is not None and r["ms"] <= other:
            crossover[key] = max(crossover.get(key, 0), r["batch"])
        else:
            crossover.setdefault(key, 0)
    if crossover:
        summary["largest_batch_where_fused_forward_wins"] = crossover
    # popup at 25 M scores against the sort-based selection.
    for r in pick(bench="popup", impl="triton_mask", size="25M"):
        summary[f"popup_25M_density{r['density']}_speedup_vs_sort"] = {
            "value": _ratio(ms_of("sort", bench="popup", size="25M", density=r["density"]), r["ms"]),
            "target": 10.0,
        }
    mismatches = [r for r in ok if r.get("matches_reference") is False or r.get("max_rel_error_vs_reference", 0) > 1e-4]
    summary["kernel_results_differing_from_reference"] = len(mismatches)
    return summary


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")


def _print_table(rows: list[dict]) -> None:
    keys = ("bench", "op", "layer", "size", "masks", "alpha", "batch", "dtype", "density")
    groups: dict[tuple, dict[str, str]] = {}
    for r in rows:
        case = tuple((k, r[k]) for k in keys if k in r)
        groups.setdefault(case, {})[r["impl"]] = f"{r['ms']:.3f}" if "ms" in r else r.get("error", "?")
    for case, impls in groups.items():
        print(" ".join(f"{k}={v}" for k, v in case), "|", "  ".join(f"{i}: {ms} ms" for i, ms in impls.items()))


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the scripts (any device)")
    parser.add_argument("--only", choices=BENCHES, action="append", help="run only this benchmark (repeat for more; none: all)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for <gpu>.json and <gpu>.png")
    parser.add_argument("--peak-gbps", type=float, help="the GPU's peak memory bandwidth, if its properties lack it (GB/s)")
    parser.add_argument("--quiet", action="store_true", help="do not print the table")
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        if not args.smoke:
            parser.error("no CUDA device here: the timings need a GPU (use --smoke to check the scripts on a CPU)")
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before the kernels are imported
    import triton
    from triton_timing import Setup, device_name, peak_gbps

    import impresslearn

    if "triton" not in impresslearn.available_backends():
        raise SystemExit(f"triton backend unavailable: {impresslearn.backends.why_unavailable('triton')}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    setup = Setup(device=device, smoke=args.smoke)
    peak = peak_gbps(device, args.peak_gbps)
    started = time.time()
    rows = []
    for name in args.only or BENCHES:
        rows += _module(name).run(setup, peak)
    name = device_name(device)
    results = {
        "device": {
            "name": name,
            "peak_gbps": peak,
            "torch": torch.__version__,
            "triton": triton.__version__,
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
        },
        "config": {
            "smoke": args.smoke,
            "benches": list(args.only or BENCHES),
            "seconds": round(time.time() - started, 1),
            "command": " ".join(["python", "bench/run_triton.py", *(argv if argv is not None else sys.argv[1:])]),
        },
        "summary": summarize(rows),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = _slug(name) + ("-smoke" if args.smoke else "")
    path = args.out / f"{stem}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)  # atomic: an interrupted run never leaves half a file

    from plot_triton import plot

    plot(results, path.with_suffix(".png"))
    if not args.quiet:
        _print_table(rows)
        print(json.dumps(results["summary"], indent=1))
    print(f"wrote {path} and {path.with_suffix('.png')}")
    return path


if __name__ == "__main__":
    main()
