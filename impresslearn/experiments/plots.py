"""Plots of `impresslearn run` results (matplotlib, PNG).

accuracy_vs_bytes(results, path)    mean new-task accuracy against bytes per task, every method
impressions_box(results, path)      the paper's box plots: new-task accuracy by number (K) and
                                    type (basis kind) of impressions, per-layer and per-channel
adapt_accuracy_vs_bytes(rs, path)   `impresslearn adapt` (KSM) files: mean new-task accuracy
                                    against bytes per task of every method and variant
methods_overview(paths, path)       every method of the library on one figure: the random
                                    backbone's methods on PermutedMNIST, and KSM's adaptation
quickstart_plot(rows, path)         the quickstart's lessons, ImpressLearn beside SupSup
frontier_plots(paths, out_dir)      one figure per benchmark: every method at its smallest form,
                                    seeds pooled (error bars), the Pareto front drawn
plot_results(paths, out_dir)        all that apply, for each benchmark found in the JSON files
"""

from __future__ import annotations

import io
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib

from ..continual.backbone import hybrid_label
from ..files import atomic_write, read_text_file
from .frontier import frontier_points, pareto, pareto_front, reach, reference
from .tables import is_adapt_run, is_methods_run, load_methods_results, load_results

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KIND_COLORS = {"heterogeneous": "tab:blue", "homogeneous": "tab:orange", "random": "tab:green"}
ALPHA_MARKERS = {False: "o", True: "s"}


def _save(fig, path) -> None:
    """The figure written atomically, in the format its suffix names (png without one)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".").lower() or "png", dpi=110)
    atomic_write(path, buf.getvalue())


def _label(alpha_per_channel: bool) -> str:
    return "per-channel α" if alpha_per_channel else "per-layer α"


def load(paths: Sequence[str | Path]) -> list[dict]:
    out = []
    for p in paths:
        r = load_results(p)
        if r.get("impresslearn", {}).get("new_task_acc"):
            out.append(r)
    return out


def finish_log_x(fig, ax, path: str | Path, ylabel: str, title: str, legend: bool = True) -> Path:
    """Every accuracy-against-bytes figure ends the same way: log bytes axis, grid, legend, PNG."""
    ax.set_xscale("log")
    ax.set_xlabel("bytes per task (log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if legend:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return Path(path)


def quickstart_plot(rows: list[dict], path: str | Path) -> Path:
    """The quickstart's lessons: each ImpressLearn row beside the SupSup mask of the same tasks."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, r in enumerate(rows):
        color = f"C{i}"
        ax.scatter(
            r["impresslearn_bytes"],
            100 * r["impresslearn_acc"],
            color=color,
            marker="o",
            label=f"ImpressLearn: {r['lesson']}",
            zorder=3,
        )
        ax.scatter(
            r["supsup_bytes"],
            100 * r["supsup_acc"],
            color=color,
            marker="*",
            s=120,
            label=f"SupSup mask: {r['lesson'].split(',')[0]}",
            zorder=3,
        )
        ax.plot(
            [r["impresslearn_bytes"], r["supsup_bytes"]],
            [100 * r["impresslearn_acc"], 100 * r["supsup_acc"]],
            color=color,
            alpha=0.4,
        )
    return finish_log_x(fig, ax, path, "mean accuracy on the new tasks (%)", "impresslearn quickstart (shipped MNIST subset)")


def accuracy_vs_bytes(results: list[dict], path: str | Path, title: str = "") -> Path:
    """ImpressLearn runs and SupSup in each form it can be stored in, accuracy against bytes per
    task, with the Pareto front over every point drawn (a step line)."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    supsup = defaultdict(list)
    seen = set()
    points = []
    for r in results:
        imp, st = r["impresslearn"], r["storage"]
        pc = bool(imp["per_channel"])
        key = (imp["basis"], pc)
        size = st.get("impresslearn_smallest") or st["impresslearn"]  # its smallest form where measured
        ax.scatter(
            size,
            100 * imp["mean_acc"],
            color=KIND_COLORS[imp["basis"]],
            marker=ALPHA_MARKERS[pc],
            label=None if key in seen else f"ImpressLearn {imp['basis']}, {_label(pc)}",
            zorder=3,
        )
        seen.add(key)
        points.append((size, 100 * imp["mean_acc"]))
        bits = r["config"].get("alpha_bits")
        ax.annotate(
            f"K={imp['basis_size']}{hybrid_label(imp['hybrid'])}{f' {bits}b' if bits else ''}",
            (size, 100 * imp["mean_acc"]),
            textcoords="offset points",
            xytext=(4, 3),
            fontsize=7,
        )
        if r["supsup"]["mean_acc"] is not None:  # (a run with --no-supsup has none)
            supsup["packed"].append((st["supsup_packed"], r["supsup"]["mean_acc"]))
            supsup["index16"].append((st["supsup_index16"], r["supsup"]["mean_acc"]))
            if st.get("supsup_coded") is not None:  # (runs before cold storage have none)
                supsup["coded"].append((st["supsup_coded"], r["supsup"]["mean_acc"]))
    labels = {
        "packed": "SupSup, 1-bit packed mask",
        "index16": "SupSup, 16-bit indices (papers' count)",
        "coded": "SupSup, coded mask (its smallest form)",
    }
    for name, marker in (("packed", "*"), ("index16", "P"), ("coded", "X")):
        if supsup[name]:
            b = sum(v[0] for v in supsup[name]) / len(supsup[name])
            a = sum(v[1] for v in supsup[name]) / len(supsup[name])
            ax.scatter(b, 100 * a, color="black", marker=marker, s=120, label=labels[name], zorder=4)
            points.append((b, 100 * a))
    front = pareto_front(points)
    if len(front) > 1:
        xs, ys = zip(*front)
        ax.step(xs, ys, where="post", color="gray", linestyle="--", linewidth=1, label="Pareto front", zorder=2)
    return finish_log_x(fig, ax, path, "mean accuracy on new tasks (%)", title or "Accuracy against storage per task")


def impressions_box(results: list[dict], path: str | Path, title: str = "") -> Path:
    by = defaultdict(list)  # (per_channel, K, kind) -> accuracies of every new task
    supsup = []
    for r in results:
        imp = r["impresslearn"]
        if imp["hybrid"]:
            continue
        by[(bool(imp["per_channel"]), imp["basis_size"], imp["basis"])].extend(100 * a for a in imp["new_task_acc"])
        supsup.extend(100 * a for a in r["supsup"]["task_acc"])
    panels = sorted({k[0] for k in by})
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6 * max(1, len(panels)), 4.5), squeeze=False)
    for ax, pc in zip(axes[0], panels):
        ks = sorted({k[1] for k in by if k[0] == pc})
        kinds = [k for k in KIND_COLORS if any((pc, K, k) in by for K in ks)]
        width = 0.8 / max(1, len(kinds))
        for i, kind in enumerate(kinds):
            data = [by.get((pc, K, kind), []) for K in ks]
            pos = [x + (i - (len(kinds) - 1) / 2) * width for x in range(len(ks))]
            keep = [(p, d) for p, d in zip(pos, data) if d]
            if not keep:
                continue
            bp = ax.boxplot([d for _, d in keep], positions=[p for p, _ in keep], widths=width * 0.9, patch_artist=True)
            for box in bp["boxes"]:
                box.set_facecolor(KIND_COLORS[kind])
                box.set_alpha(0.6)
            ax.plot([], [], color=KIND_COLORS[kind], linewidth=8, alpha=0.6, label=kind)
        if supsup:
            ax.axhline(sum(supsup) / len(supsup), color="black", linestyle="--", label="SupSup (dedicated masks)")
        ax.set_xticks(range(len(ks)), [str(K) for K in ks])
        ax.set_xlabel("number of impressions K")
        ax.set_ylabel("accuracy on new tasks (%)")
        ax.set_title(_label(pc))
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return Path(path)


ADAPT_STYLE = {
    "finetune": ("tab:red", "X"),
    "head": ("tab:gray", "v"),
    "piggyback": ("tab:orange", "o"),
    "kernel_binary": ("tab:green", "s"),
    "ksm": ("tab:blue", "*"),
}


def _variant(r: dict, method: str) -> str:
    km = r[method].get("kernel_mask")
    if method != "ksm" or not km:
        return method
    default = km["real"] == "linear" and km["relax"] == "softmax" and km["scale"] == 1.0
    return "ksm" if default else f"ksm ({km['real']}, scale {km['scale']:g}, {km['relax']})"


def adapt_accuracy_vs_bytes(results: list[dict], path: str | Path, title: str = "") -> Path:
    """One point per method (and KSM variant): the mean accuracy of the adapted tasks when learned
    (forgetting aside: fine-tuning's later loss is in its results) against bytes per task."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    seen = set()
    for r in results:
        for method, (color, marker) in ADAPT_STYLE.items():
            rec = r.get(method)
            name = _variant(r, method) if isinstance(rec, dict) else None
            if name is None or name in seen:
                continue
            seen.add(name)
            acc = 100 * sum(rec["new_task_acc"]) / len(rec["new_task_acc"])
            ax.scatter(
                rec["bytes_per_task"], acc, color=color, marker=marker, s=90, zorder=3, alpha=1.0 if name == method else 0.5
            )
            ax.annotate(name, (rec["bytes_per_task"], acc), textcoords="offset points", xytext=(5, 3), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("bytes per task, head included (log scale)")
    ax.set_ylabel("mean accuracy of the adapted tasks when learned (%)")
    ax.set_title(title or "KSM and baselines: accuracy against storage per task")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return Path(path)


METHOD_STYLE = {
    "supsup": ("black", "*"),
    "ssnet": ("tab:purple", "D"),
    "exssnet": ("tab:red", "P"),
    "exssnet-kkt": ("tab:brown", "X"),
}


def methods_overview(paths: Sequence[str | Path], path: str | Path) -> Path:
    """Every method of the library on one figure, accuracy against bytes per task: the random
    frozen LeNet-300-100 on PermutedMNIST (SupSup and ImpressLearn from `impresslearn run`
    results; SupSup, SSNeT, ExSSNeT and ExSSNeT+KKT from `--methods` runs, one point per method
    and density, averaged over seeds), and beside it the pretrained conv net adapted to four tasks
    (`impresslearn adapt`: fine-tuning, head only, Piggyback, kernel-wise binary, KSM). The two
    panels are different benchmarks: compare within a panel."""
    runs, methods, adapt = [], defaultdict(list), []
    for p in paths:
        r = json.loads(read_text_file(p))
        if "methods_done" in r:
            adapt.append(r)
        elif isinstance(r.get("methods"), list):
            if r["config"]["benchmark"] == "permuted-mnist":
                for m in r["methods"]:
                    rec = r[m.replace("-", "_")]  # results keys: exssnet_kkt
                    methods[(m, r["config"]["density"])].append((rec["mean_bytes_per_task"], rec["mean_acc"]))
        elif r.get("config", {}).get("benchmark") == "permuted-mnist" and r.get("impresslearn", {}).get("mean_acc"):
            runs.append(r)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    seen = set()
    for r in runs:
        imp, st = r["impresslearn"], r["storage"]
        pc = bool(imp["per_channel"])
        label = f"ImpressLearn, {_label(pc)} (K = 5..50, 3 new tasks)"
        left.scatter(
            st["impresslearn"],
            100 * imp["mean_acc"],
            color="tab:blue" if pc else "tab:cyan",
            marker=ALPHA_MARKERS[pc],
            label=None if label in seen else label,
            zorder=3,
            alpha=0.7,
        )
        seen.add(label)
    if runs:
        b = sum(r["storage"]["supsup_packed"] for r in runs) / len(runs)
        a = sum(r["supsup"]["mean_acc"] for r in runs) / len(runs)
        left.scatter(b, 100 * a, color="black", marker="*", s=160, label="SupSup, 1-bit packed mask (same 3 tasks)", zorder=4)
    for (m, density), pts in sorted(methods.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        color, marker = METHOD_STYLE.get(m, ("gray", "o"))
        b = sum(x for x, _ in pts) / len(pts)
        a = 100 * sum(y for _, y in pts) / len(pts)
        label = f"{m} (--methods runs, 10 tasks)"
        left.scatter(
            b,
            a,
            color=color,
            marker=marker,
            s=70,
            label=None if label in seen else label,
            zorder=3,
            facecolors="none" if m == "supsup" else None,
        )
        seen.add(label)
        left.annotate(f"{density:g}", (b, a), textcoords="offset points", xytext=(4, -9), fontsize=6)
    left.set_title("random frozen LeNet-300-100, PermutedMNIST")
    for r in adapt:
        for m, (color, marker) in ADAPT_STYLE.items():
            rec = r.get(m)
            if not isinstance(rec, dict) or _variant(r, m) != m:
                continue
            acc = 100 * sum(rec["task_acc"]) / len(rec["task_acc"])
            right.scatter(rec["bytes_per_task"], acc, color=color, marker=marker, s=90, zorder=3)
            right.annotate(m, (rec["bytes_per_task"], acc), textcoords="offset points", xytext=(5, 3), fontsize=8)
    right.set_title("pretrained conv net adapted to 4 tasks (final accuracy, 5 tasks)")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("bytes per task (log scale)")
        ax.grid(True, which="both", alpha=0.3)
    left.set_ylabel("mean final accuracy (%)")
    left.legend(fontsize=6.5, loc="lower right")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return Path(path)


def compare_accuracy_vs_bytes(results: list[dict], path: str | Path, title: str = "") -> Path:
    """`impresslearn compare` results: one point per method and density (averaged over the files,
    e.g. seeds), mean final accuracy against mean bytes per task."""
    points = defaultdict(list)
    for r in results:
        for m in r["methods"]:
            rec = r[m.replace("-", "_")]  # results keys: exssnet_kkt
            points[(m, r["config"].get("density"))].append((rec["mean_bytes_per_task"], rec["mean_acc"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    seen = set()
    for (m, density), pts in sorted(points.items(), key=lambda kv: (str(kv[0][1]), kv[0][0])):
        color, marker = METHOD_STYLE.get(m, ("gray", "o"))
        b, a = sum(x for x, _ in pts) / len(pts), 100 * sum(y for _, y in pts) / len(pts)
        ax.scatter(b, a, color=color, marker=marker, s=70, label=None if m in seen else m, zorder=3)
        seen.add(m)
        if density is not None:
            ax.annotate(f"{density:g}", (b, a), textcoords="offset points", xytext=(4, -9), fontsize=6)
    return finish_log_x(fig, ax, path, "mean final accuracy (%)", title)


def plot_results(paths: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """The plots of results files of any command: `mnist` (accuracy against bytes, impressions),
    `compare` (accuracy against bytes per method) and `adapt`; a file of none of them is refused
    in one sentence."""
    adapt = [p for p in paths if is_adapt_run(p)]
    compare = [p for p in paths if p not in adapt and is_methods_run(p)]
    results = load([p for p in paths if p not in adapt and p not in compare])
    if not results and not adapt and not compare:
        raise ValueError(
            "none of the files holds ImpressLearn, impresslearn compare or impresslearn adapt results "
            "(a SupSup-only run has nothing to plot against; `impresslearn table` shows it)"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    compared = [load_methods_results(p) for p in compare]
    for bench in sorted({r["config"]["benchmark"] for r in compared}):
        rs = [r for r in compared if r["config"]["benchmark"] == bench]
        written.append(
            compare_accuracy_vs_bytes(rs, out_dir / f"{bench}-methods-accuracy-vs-bytes.png", f"{bench}: methods compared")
        )
    if adapt:
        rs = [json.loads(read_text_file(p)) for p in adapt]
        written.append(adapt_accuracy_vs_bytes(rs, out_dir / "ksm-adapt-accuracy-vs-bytes.png"))
    for bench in sorted({r["config"]["benchmark"] for r in results}):
        rs = [r for r in results if r["config"]["benchmark"] == bench]
        written.append(
            accuracy_vs_bytes(rs, out_dir / f"{bench}-accuracy-vs-bytes.png", f"{bench}: accuracy against bytes per task")
        )
        written.append(impressions_box(rs, out_dir / f"{bench}-impressions.png", f"{bench}: new-task accuracy by impressions"))
    return written


FAMILY_STYLE = {
    "SupSup": ("black", "X"),
    "ImpressLearn": ("tab:blue", "o"),
    "ExSSNeT": ("tab:red", "D"),
    "SSNeT": ("tab:orange", "v"),
}


def frontier_plots(paths: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """`<benchmark>-frontier.png` per benchmark in the files (`experiments.frontier`): accuracy
    against bytes per task in the smallest exact form, a point per setting (mean over its seeds,
    their standard deviation as an error bar), the Pareto front a dashed step line, and SupSup at
    density 0.1 with the ImpressLearn point of fewest bytes within a point of it ringed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for bench, points in frontier_points([str(p) for p in paths]).items():
        fig, ax = plt.subplots(figsize=(8, 5.5))
        seen, front, ref = set(), pareto(points), reference(points)
        named = {id(p) for p in front} | ({id(ref)} if ref else set())  # the rest: in the table
        for p in points:
            color, marker = FAMILY_STYLE.get(p.family, ("gray", "s"))
            ax.errorbar(
                p.nbytes,
                100 * p.acc,
                yerr=100 * p.spread or None,
                color=color,
                marker=marker,
                linestyle="none",
                markersize=6,
                capsize=2,
                label=None if p.family in seen else p.family,
                zorder=3,
            )
            seen.add(p.family)
            if id(p) in named:
                ax.annotate(p.label, (p.nbytes, 100 * p.acc), textcoords="offset points", xytext=(4, -9), fontsize=6)
        if len(front) > 1:
            ax.step(
                [p.nbytes for p in front],
                [100 * p.acc for p in front],
                where="post",
                color="gray",
                linestyle="--",
                linewidth=1,
                label="Pareto front",
                zorder=2,
            )
        got = reach(points)
        if ref is not None:
            ax.axhspan(100 * (ref.acc - 0.01), 100 * ref.acc, color="gray", alpha=0.12, label="within a point of SupSup d=0.1")
        if got is not None:
            ax.scatter(
                [got[1].nbytes],
                [100 * got[1].acc],
                s=220,
                facecolors="none",
                edgecolors="tab:green",
                linewidths=2,
                label="fewest bytes within a point",
                zorder=4,
            )
        written.append(
            finish_log_x(
                fig,
                ax,
                out_dir / f"{re.sub(r'[^a-z0-9]+', '-', bench.lower()).strip('-')}-frontier.png",
                "mean accuracy on new tasks (%)",
                f"{bench}: accuracy against bytes per task (smallest exact form)",
            )
        )
    if not written:
        raise ValueError("none of the files holds impresslearn mnist or compare results to draw a frontier from")
    return written
