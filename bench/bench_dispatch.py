"""The op layer's per-call cost: an op on tiny inputs (where the kernel's own work is negligible)
against the same backend kernel called directly, on one thread, eager and with autograd.

    python bench/bench_dispatch.py [--calls 2000] [--repeats 7] [--out bench/results/dispatch_timing_cpu.json]

The difference is the Python plumbing of a call (input checks, the backend choice, the custom
op's dispatch and, with a gradient, the autograd node). Medians of `repeats` rounds of `calls`
calls each; compare two versions in one sitting, as ratios. On a shared machine timings of a few
microseconds drift by tens of percent: count instructions instead (`bench/dispatch_calls.py`
under callgrind; bench/results/dispatch_cpu.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import impresslearn as il
from impresslearn import backends, ops


def _per_call(fn, calls: int, repeats: int) -> float:
    for _ in range(50):
        fn()
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - start) / calls)
    return statistics.median(rounds)


def cases(backend: str):
    """(name, op call, the kernel alone) on tiny inputs."""
    kernels = backends.module(backend)
    w = torch.randn(3, 5)
    masks = il.pack_masks(torch.rand(2, 3, 5) < 0.5)
    alpha = torch.tensor([0.3, 0.7])
    scores = torch.randn(3, 5)
    x = torch.randn(2, 5)
    alpha_grad = alpha.clone().requires_grad_(True)
    ones = torch.ones_like(w)
    return [
        ("combine", lambda: ops.combine(w, masks, alpha), lambda: kernels.combine(w, masks.words, alpha)),
        (
            "combine+backward",
            lambda: ops.combine(w, masks, alpha_grad).sum().backward(),
            # the kernels the op runs: the forward's combine, then the backward's alpha gradient
            lambda: (kernels.combine(w, masks.words, alpha), kernels.combine_grad_alpha(ones, w, masks.words, alpha)),
        ),
        ("popup_mask", lambda: ops.popup_mask(scores, 0.4), lambda: kernels.popup_mask(scores, 6)),
        (
            "impress_linear",
            lambda: ops.impress_linear(x, w, masks, alpha),
            lambda: torch.nn.functional.linear(x, kernels.combine(w, masks.words, alpha)),
        ),
    ]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--backend", default="native" if "native" in il.available_backends() else "reference")
    p.add_argument("--out", default=str(Path(__file__).with_name("results") / "dispatch_timing_cpu.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    with il.backend(a.backend):
        for name, op, kernel in cases(a.backend):
            t_op, t_kernel = _per_call(op, a.calls, a.repeats), _per_call(kernel, a.calls, a.repeats)
            rows.append(
                {
                    "case": name,
                    "op_us": round(t_op * 1e6, 2),
                    "kernel_us": round(t_kernel * 1e6, 2),
                    "plumbing_us": round((t_op - t_kernel) * 1e6, 2),
                }
            )
            print(
                f"{name:18s} op {t_op * 1e6:8.1f} us  kernel {t_kernel * 1e6:8.1f} us  plumbing {(t_op - t_kernel) * 1e6:8.1f} us"
            )
    result = {
        "backend": a.backend,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "threads": 1,
        "calls": a.calls,
        "repeats": a.repeats,
        "rows": rows,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
