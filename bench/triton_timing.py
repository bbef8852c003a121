"""Timing, memory and device facts shared by the Triton kernel benchmarks (bench_*_triton.py).

On a GPU every time is `triton.testing.do_bench`'s median (CUDA events, cache flushed between
runs). `--smoke` runs on a CPU too, with tiny sizes and a wall-clock median, only to show that
the scripts work; those numbers mean nothing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

# Peak memory bandwidth (GB/s) of GPUs whose properties do not give it (older torch).
KNOWN_PEAK_GBPS = {
    "H200": 4800.0,
    "H100 SXM": 3350.0,
    "H100 80GB HBM3": 3350.0,
    "H100 PCIe": 2000.0,
    "A100-SXM4-80GB": 2039.0,
    "A100-SXM4-40GB": 1555.0,
    "A100-PCIE-40GB": 1555.0,
    "L4": 300.0,
    "T4": 320.0,
}


@dataclass(frozen=True)
class Setup:
    """What one benchmark run uses."""

    device: torch.device
    smoke: bool
    warmup_ms: int = 25
    rep_ms: int = 100

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def peak_gbps(device: torch.device, override: float | None = None) -> float | None:
    """The GPU's peak memory bandwidth: given, from its properties (DDR: 2 transfers per clock), or known."""
    if override:
        return float(override)
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "memory_clock_rate", 0)
    bus_bits = getattr(props, "memory_bus_width", 0)
    if clock_khz and bus_bits:
        return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9
    for name, gbps in KNOWN_PEAK_GBPS.items():
        if name in props.name:
            return gbps
    return None


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def measure_ms(setup: Setup, fn: Callable[[], object]) -> float:
    """Median time of `fn` in milliseconds."""
    if setup.cuda:
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=setup.warmup_ms, rep=setup.rep_ms, return_mode="median"))
    if not setup.smoke:
        fn()  # warm-up (fills caches)
    times = []
    for _ in range(1 if setup.smoke else 5):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def peak_memory_mb(setup: Setup, fn: Callable[[], object]) -> float | None:
    """Peak CUDA memory allocated while `fn` runs, above what was allocated before (None on a CPU)."""
    if not setup.cuda:
        return None
    torch.cuda.synchronize(setup.device)
    before = torch.cuda.memory_allocated(setup.device)
    torch.cuda.reset_peak_memory_stats(setup.device)
    fn()
    torch.cuda.synchronize(setup.device)
    return (torch.cuda.max_memory_allocated(setup.device) - before) / 2**20


def out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err)


def timed_row(setup: Setup, fn: Callable[[], object], row: dict, more: Callable[[float], dict] | None = None) -> dict:
    """`row` with `ms` (and what `more(ms)` adds), or with an `error` when the GPU ran out of memory."""
    try:
        row["ms"] = measure_ms(setup, fn)
        if more is not None:
            row.update(more(row["ms"]))
    except Exception as err:
        if not out_of_memory(err):
            raise
        torch.cuda.empty_cache()
        row["error"] = "out of memory"
    return row
