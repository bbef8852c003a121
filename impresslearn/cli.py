"""The `impresslearn` command line.

    impresslearn quickstart     offline demo on the shipped MNIST subset (about a minute)
    impresslearn run ...        one experiment, results to a JSON file (see `run --help`)
    impresslearn storage        the ImpressLearn paper's Table 2, recomputed
    impresslearn plot R.json..  accuracy against bytes per task, and box plots by impressions
    impresslearn table R.json.. one markdown row per run: accuracies and bytes per task
    impresslearn doctor         versions, backends (and why one is missing), native build, CUDA, threads
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from typing import Optional, Sequence

import torch

from .continual import masks as masks_mod
from .continual.storage import paper_table2
from .experiment import ALPHA_PRESETS, BENCHMARKS, RunConfig, Runner


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--benchmark", default="permuted-mnist", choices=BENCHMARKS,
                   help="split-cifar100 and split-imagenet take options of their own: "
                        "impresslearn run --benchmark split-imagenet --help")
    g.add_argument("--data-root", help="folder with MNIST/raw (torchvision layout); default: the subset shipped "
                                       "with the package")
    g.add_argument("--download", action="store_true", help="let torchvision download MNIST into --data-root")
    g.add_argument("--validation", type=int, default=0, metavar="N",
                   help="evaluate on the last N training images instead of the test set (for tuning)")
    g = p.add_argument_group("backbone and SupSup masks")
    g.add_argument("--preset", default="topk-0.1", choices=sorted(masks_mod.MASK_PRESETS),
                   help="topk-0.1: top-10%% masks, density-scaled signed constant, RMSprop 3e-4, 1 epoch; "
                        "supsup: SupSup's PermutedMNIST settings (threshold masks, unscaled signed constant, "
                        "100 outputs, RMSprop 1e-4, 1000 iterations); paper: Kaiming normal, top-10%%, RMSprop 1e-4")
    g.add_argument("--density", type=float, help="fraction of weights a top-k mask keeps (and of random basis masks)")
    g.add_argument("--mask", choices=["topk", "threshold"])
    g.add_argument("--init", choices=["kaiming_normal", "signed_constant"])
    g.add_argument("--scale", type=_bool, metavar="BOOL", help="scale the backbone by 1/sqrt(density)")
    g.add_argument("--outputs", type=int, help="output neurons (100 gives SupSup's superfluous neurons for G)")
    g.add_argument("--mask-optimizer", choices=["adam", "rmsprop", "sgd"])
    g.add_argument("--mask-lr", type=float)
    g.add_argument("--mask-epochs", type=float)
    g.add_argument("--mask-iterations", type=int)
    g = p.add_argument_group("tasks")
    g.add_argument("--new-tasks", type=int, default=5, help="new tasks learned by SupSup and by ImpressLearn")
    g.add_argument("--first-new-task", type=int, default=1000,
                   help="permuted-mnist: the first new task (permutation seed = task + 1); basis tasks are 0..K-1")
    g.add_argument("--angle-step", type=float, default=10.0, help="rotated-mnist: basis task t is rotated by step*t")
    g.add_argument("--new-angles", type=_floats, help="rotated-mnist: comma-separated angles of the new tasks "
                                                      "(default: between basis angles, step*(t+0.5))")
    g.add_argument("--random-rotation", action="store_true",
                   help="rotated-mnist: the ImpressLearn authors' variant, every image rotated at random in "
                        "[-90, 90] degrees for every task (all tasks then share one distribution)")
    g = p.add_argument_group("ImpressLearn")
    g.add_argument("--no-impresslearn", dest="impresslearn", action="store_false",
                   help="SupSup only: skip the basis and the alphas (e.g. for task-inference runs)")
    g.add_argument("--basis", default="heterogeneous", choices=["heterogeneous", "homogeneous", "random"])
    g.add_argument("--basis-size", "-K", type=int, default=10)
    g.add_argument("--per-channel", action="store_true", help="alpha per output channel ([K, rows]) instead of per layer")
    g.add_argument("--hybrid", action="store_true", help="a SupSup mask in the last layer, alphas elsewhere")
    g.add_argument("--lam", type=float, default=0.0, help="eq. 2 penalty weight: lam * sum (sum |alpha| - 1)^2")
    g.add_argument("--alpha-preset", default="tuned", choices=sorted(ALPHA_PRESETS),
                   help="; ".join(f"{k}: {v['optimizer']} lr {v['lr']:g}{' cosine' if v.get('schedule') == 'cosine' else ''}, "
                                  f"{v['epochs']:g} epochs, batch {v['batch_size']}" for k, v in sorted(ALPHA_PRESETS.items())))
    g.add_argument("--alpha-optimizer", choices=["adam", "rmsprop", "sgd", "lbfgs"])
    g.add_argument("--alpha-lr", type=float)
    g.add_argument("--alpha-epochs", type=float, help="epochs (L-BFGS: 20 iterations per 'epoch')")
    g.add_argument("--alpha-batch-size", type=int)
    g.add_argument("--alpha-schedule", choices=["constant", "cosine"], help="learning-rate schedule of the alpha fit")
    g = p.add_argument_group("measurements")
    g.add_argument("--incorrect-tasks", type=int, default=10,
                   help="incorrect-mask matrix over the first N new tasks' SupSup masks")
    g.add_argument("--basis-gn", type=int, default=0, metavar="N",
                   help="basis-GN: learn the first N basis tasks again without their label")
    g.add_argument("--gn", type=_names, default=[], metavar="OBJ", dest="gn_objectives",
                   help="task inference without labels with these objectives, e.g. G,H")
    g.add_argument("--gn-methods", type=_names, default=["oneshot"], help="oneshot,binary")
    g.add_argument("--gn-inputs", type=_names, default=["batch"], help="batch,first (infer from the first image)")
    g.add_argument("--gn-batches", type=int, help="test batches of 128 per task for GN (default: all)")
    g.add_argument("--gn-on", type=_names, default=["supsup", "impresslearn"], help="supsup,impresslearn")
    g = p.add_argument_group("running")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="cpu")
    g.add_argument("--threads", type=int, help="torch.set_num_threads")
    g.add_argument("--cache", help="folder keeping learned masks, shared between runs")
    g.add_argument("--out", default="results.json")
    g.add_argument("--quiet", action="store_true", help="no progress bars or log lines")


def config_from_args(a: argparse.Namespace, config_class=RunConfig):
    """The config dataclass (RunConfig, or the split benchmarks' SplitConfig) from parsed options."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    kw = {k: v for k, v in vars(a).items() if k in fields and v is not None}
    kw["progress"] = False if a.quiet else None
    kw["verbose"] = not a.quiet
    return config_class(**kw)


def cmd_run(a: argparse.Namespace, argv: Sequence[str]) -> int:
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = config_from_args(a)
    res = Runner(cfg, a.out, command="impresslearn " + shlex.join(argv)).run()
    print(summary_table(res))
    print(f"results: {a.out}")
    return 0


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _bytes(v) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f} B" if v < 10_000 else f"{v / 1024:,.1f} KiB"


def _ratio(v) -> str:
    return f"{v:.0f}×" if v >= 10 else f"{v:.2g}×"  # per-channel alphas can cost more than a mask: 0.42×


def summary_table(res: dict, extra_rows: Sequence[tuple] = ()) -> str:
    st, imp = res["storage"], res["impresslearn"]
    kind = f"{imp['basis']} K={imp['basis_size']}, {'per-channel' if imp['per_channel'] else 'per-layer'}" + \
           (", hybrid" if imp["hybrid"] else "")
    rows = [("method", "mean accuracy", "bytes per task"),
            ("SupSup (1-bit packed mask)", _pct(res["supsup"]["mean_acc"]), _bytes(st["supsup_packed"])),
            ("SupSup (16-bit indices, as the papers count)", _pct(res["supsup"]["mean_acc"]), _bytes(st["supsup_index16"])),
            (f"ImpressLearn ({kind})", _pct(imp.get("mean_acc")), _bytes(st["impresslearn"])),
            *extra_rows,
            ("incorrect mask (mask of another task)", _pct(res.get("incorrect_mask_mean")), "-")]
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [" | ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "-+-".join("-" * x for x in w))
    for label in ("supsup", "impresslearn"):
        for r in res.get("task_inference", {}).get(label, []):
            lines.append(f"GN over {label} tasks ({r['objective']}, {r['method']}, from {r['input']}): right task for "
                         f"{_pct(r['task_acc'])} of {r['batches']} batches, accuracy {_pct(r['acc'])}")
    return "\n".join(lines)


def cmd_storage(a: argparse.Namespace) -> int:
    print(storage_table(paper_table2(a.density)))
    return 0


def storage_table(rows: list[dict]) -> str:
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    head = ["benchmark", "arch", "params", "paper", "mask kB", "paper", "|M|", "|α|", "paper", "Φ kB", "paper",
            "Cx", "paper", "ours: packed mask", "ours: Impress/task", "ours: Cx"]
    body = []
    for r in rows:
        p, o = r["paper"], r["ours"]
        body.append([r["benchmark"], r["arch"], f"{r['params'] / 1e6:.2f} M", num(p["params"] and p["params"] / 1e6, ".1f") + (" M" if p["params"] else ""),
                     f"{r['mask_kb']:.1f}", num(p["mask_kb"], ".1f"), str(r["basis_size"]), str(r["alphas"]),
                     str(p["alphas"]), f"{r['phi_kb']:.2f}", num(p["phi_kb"], ".2f"), f"{r['cx']:.2f}", f"{p['cx']:.2f}",
                     _bytes(o["supsup_packed_bytes"]), _bytes(o["impress_bytes"]), f"{o['cx_packed']:.2f}"])
    w = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w[i]) for i, c in enumerate(x)) for x in [head] + body]
    lines.insert(1, "-+-".join("-" * x for x in w))
    note = ("mask kB: 2 bits per masked weight (the paper's convention: its 64.9 kB and 6250 kB are params/4 bytes); "
            "Φ = 4-byte alphas + basis amortised over the benchmark's maximum task count (permuted: unbounded, "
            "rotated: 360, split-cifar100: 20, split-imagenet: 100); Cx = mask / Φ. 'ours' = as this library stores "
            "a task: 1-bit packed masks, per-task BatchNorm statistics included for both methods.")
    return "\n".join(lines) + "\n" + note


def results_rows(paths: Sequence[str]) -> str:
    """A markdown table with one row per results file."""
    import json

    head = ["run", "new tasks", "SupSup", "ImpressLearn", "SupSup B/task (packed / 16-bit)", "ImpressLearn B/task",
            "ratio (packed)", "incorrect mask"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for path in paths:
        r = json.loads(open(path).read())
        imp, st = r["impresslearn"], r["storage"]
        if imp.get("skipped"):
            kind, acc, ib, ratio = "SupSup only", "-", "-", "-"
        else:
            kind = (f"{imp['basis']} K={imp['basis_size']} {'per-channel' if imp['per_channel'] else 'per-layer'}"
                    + (" hybrid" if imp["hybrid"] else "") + (f" λ={imp['lam']:g}" if imp["lam"] else ""))
            acc, ib, ratio = _pct(imp.get("mean_acc")), _bytes(st["impresslearn"]), _ratio(st['compression_vs_packed'])
        status = "" if r.get("status") == "done" else f" ({r.get('status')})"
        lines.append(f"| {r['config']['benchmark']} {kind}{status} | {len(r['tasks']['new'])} | {_pct(r['supsup']['mean_acc'])} "
                     f"| {acc} | {_bytes(st['supsup_packed'])} / {_bytes(st['supsup_index16'])} | {ib} | {ratio} "
                     f"| {_pct(r.get('incorrect_mask_mean'))} |")
    return "\n".join(lines)


def grid_table(paths: Sequence[str]) -> str:
    """A markdown pivot of ImpressLearn runs: one row per basis size K, one column per (basis kind,
    alpha per layer / per channel), each cell the mean new-task accuracy and bytes per task."""
    import json

    cells, kinds, ks, supsup = {}, [], set(), []
    for path in paths:
        r = json.loads(open(path).read())
        imp = r["impresslearn"]
        if imp.get("skipped") or imp.get("mean_acc") is None or imp["hybrid"] or imp["lam"]:
            continue
        col = (imp["basis"], imp["per_channel"])
        if col not in kinds:
            kinds.append(col)
        ks.add(imp["basis_size"])
        cells[(imp["basis_size"], col)] = f"{_pct(imp['mean_acc'])} ({_bytes(r['storage']['impresslearn'])})"
        supsup.append(r["supsup"]["mean_acc"])
    order = {"heterogeneous": 0, "homogeneous": 1, "random": 2}
    kinds.sort(key=lambda c: (c[1], order.get(c[0], 3)))
    head = ["K"] + [f"{kind}, {'per-channel' if pc else 'per-layer'}" for kind, pc in kinds]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in sorted(ks):
        lines.append("| " + " | ".join([str(k)] + [cells.get((k, c), "-") for c in kinds]) + " |")
    if supsup:
        lines.append(f"\nSupSup (a dedicated mask per task) on the same new tasks: {_pct(sum(supsup) / len(supsup))} mean.")
    return "\n".join(lines)


def cmd_plot(a: argparse.Namespace) -> int:
    from . import plots

    for path in plots.plot_results(a.results, a.out_dir):
        print(path)
    return 0


def cmd_quickstart(a: argparse.Namespace) -> int:
    from .quickstart import quickstart

    if a.threads:
        torch.set_num_threads(a.threads)
    quickstart(out=a.out, verbose=not a.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="impresslearn", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quickstart", help="offline demo on the shipped MNIST subset")
    q.add_argument("--out", help="also write the results JSON here")
    q.add_argument("--threads", type=int)
    q.add_argument("--quiet", action="store_true")
    r = sub.add_parser("run", help="one experiment; results to --out (JSON)")
    add_run_arguments(r)
    s = sub.add_parser("storage", help="the paper's Table 2, recomputed")
    s.add_argument("--density", type=float, default=0.1, help="density for the 16-bit index count")
    pl = sub.add_parser("plot", help="plots from results JSON files")
    pl.add_argument("results", nargs="+")
    pl.add_argument("--out-dir", default=".")
    t = sub.add_parser("table", help="a markdown table of results JSON files")
    t.add_argument("results", nargs="+")
    t.add_argument("--grid", action="store_true", help="pivot: rows K, columns basis kind and alpha granularity")
    d = sub.add_parser("doctor", help="what this installation runs: versions, backends and why one is missing, "
                                      "the native build, CUDA devices, threads")
    d.add_argument("--json", action="store_true", help="the report as JSON")
    return p


def cmd_doctor(a: argparse.Namespace) -> int:
    import json

    from .doctor import format_report, report

    r = report()
    print(json.dumps(r, indent=1) if a.json else format_report(r))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from . import cli_split

    if cli_split.is_split_run(argv):  # SplitCIFAR-100 / SplitImageNet take options of their own (issue 6)
        return cli_split.main(argv[1:])
    a = build_parser().parse_args(argv)
    if a.command == "run":
        return cmd_run(a, argv)
    if a.command == "storage":
        return cmd_storage(a)
    if a.command == "plot":
        return cmd_plot(a)
    if a.command == "doctor":
        return cmd_doctor(a)
    if a.command == "table":
        print(grid_table(a.results) if a.grid else results_rows(a.results))
        return 0
    return cmd_quickstart(a)


if __name__ == "__main__":
    sys.exit(main())
