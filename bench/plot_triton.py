"""Plot a results file of bench/run_triton.py: `python bench/plot_triton.py bench/results/<gpu>.json`."""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _median_by(rows, x_key, y_fn, **where):
    """{impl: ([x], [median y])} over the rows matching `where` (medians across the other axes)."""
    groups = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if "ms" in r and all(r.get(k) == v for k, v in where.items()):
            y = y_fn(r)
            if y is not None:
                groups[r["impl"]][r[x_key]].append(y)
    return {impl: (sorted(by_x), [statistics.median(by_x[x]) for x in sorted(by_x)]) for impl, by_x in groups.items()}


def _panel(ax, series, title, xlabel, ylabel, logx=False):
    for impl, (xs, ys) in sorted(series.items()):
        ax.plot(xs, ys, marker="o", label=impl)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, yscale="log")
    if logx:
        ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center")


def plot(results: dict, path: Path) -> None:
    rows = results["rows"]
    bandwidth = (lambda r: r.get("peak_fraction")) if results["device"].get("peak_gbps") else (lambda r: r.get("gbps"))
    unit = "fraction of peak bandwidth" if results["device"].get("peak_gbps") else "effective GB/s"
    floor_ms = {
        (r["layer"], r["masks"], r["dtype"], r["batch"]): r["ms"]
        for r in rows
        if r["bench"] == "impress_linear" and r["op"] == "fwd+bwd" and r["impl"] == "floor" and "ms" in r
    }

    def vs_floor(r):
        base = floor_ms.get((r["layer"], r["masks"], r["dtype"], r["batch"]))
        return r["ms"] / base if base else None

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    _panel(
        axes[0, 0],
        _median_by(rows, "masks", bandwidth, bench="combine", op="forward", alpha="per_layer"),
        "combine (median over ResNet-50 layers)",
        "masks T",
        unit,
        logx=True,
    )
    _panel(
        axes[0, 1],
        _median_by(rows, "masks", bandwidth, bench="combine", op="grad_alpha", alpha="per_layer"),
        "grad of alpha",
        "masks T",
        unit,
        logx=True,
    )
    _panel(
        axes[1, 0],
        _median_by(rows, "batch", vs_floor, bench="impress_linear", op="fwd+bwd"),
        "impress_linear forward+backward",
        "batch",
        "time / F.linear with precomputed W_eff",
        logx=True,
    )
    _panel(
        axes[1, 1],
        _median_by(rows, "numel", lambda r: r["ms"], bench="popup", density=0.1),
        "popup at density 0.1",
        "scores",
        "ms",
        logx=True,
    )
    fig.suptitle(f"impresslearn Triton kernels on {results['device']['name']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    source = Path(sys.argv[1])
    plot(json.loads(source.read_text()), source.with_suffix(".png"))
