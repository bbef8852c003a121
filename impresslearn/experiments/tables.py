"""The report tables of results files: what `impresslearn run`, `table`, `storage` and
`quickstart` print.

    summary_table(res)      one MNIST run: accuracy and bytes per task of each method, GN lines
    split_summary(res)      one split-benchmark run
    results_rows(paths)     a markdown row per results file
    methods_summary(res)    one --methods run (SupSup, SSNeT, ExSSNeT, ExSSNeT+KKT): a row per method
    methods_rows(paths)     --methods runs: a markdown row per file and method
    methods_grid(paths)     --methods runs: mean accuracy per benchmark and density (columns: methods),
                            averaged over seeds, with BWT and bytes per task
    methods_early(paths)    --methods runs: accuracy early in each mask phase and at the end (KKT)
    methods_storage(paths)  --methods runs: what the trained weights cost, as stored (one float per
                            weight of the union of the masks) and if only changed weights were kept
    grid_table(paths)       the K x basis-kind x alpha-granularity pivot of ImpressLearn runs
    inference_table(paths)  task inference: a row per (run, tasks, objective), a column per method
                            and input; and what the run measured about one-shot's superposition
    storage_table(rows)     the ImpressLearn paper's Table 2, recomputed
    adapt_table(res)        the KSM experiment (`impresslearn adapt`): a markdown row per method
    pct, nbytes, ratio      how the tables write percentages, byte counts and ratios
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..continual.backbone import hybrid_label
from ..files import read_text_file

REQUIRED = ("config", "impresslearn", "storage", "supsup", "tasks")


def load_results(path) -> dict:
    """A results file, or ValueError naming the file and what is wrong with it."""
    try:
        text = read_text_file(path)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot be read ({err.__class__.__name__}: {err})") from None
    if not text.strip():
        raise ValueError(f"{path}: the file is empty (a run still starting, or a copy cut short?)")
    try:
        r = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); a file cut short, or not a results file") from None
    return check_results(r, path)


def check_results(r, path) -> dict:
    """`r`, read from `path`, as a results dict with the keys every reader uses, or ValueError."""
    missing = [k for k in REQUIRED if not isinstance(r, dict) or k not in r]
    if missing:
        raise ValueError(
            f"{path}: not an impresslearn results file (no {', '.join(missing)}), or one whose run "
            "has not finished its first stage"
        )
    # What older runs, and runs of the other runners, leave out: a split run has no hybrid
    # variant, one with --no-supsup no SupSup accuracy.
    r["impresslearn"].setdefault("hybrid", False)
    r["impresslearn"].setdefault("lam", 0.0)
    r["supsup"].setdefault("mean_acc", None)
    r["supsup"].setdefault("task_acc", [])
    return r


def _aligned(rows: list[tuple]) -> str:
    """Columns padded to their widest cell, a rule under the header row."""
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "-+-".join("-" * x for x in w))
    return "\n".join(lines)


def granularity(per_channel) -> str:
    """How a run's alphas are laid out: per-channel, per-layer, or per-channel in the named layers."""
    if isinstance(per_channel, (list, tuple)):
        return f"per-channel in {','.join(per_channel)}"
    return "per-channel" if per_channel else "per-layer"


def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def nbytes(v) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f} B" if v < 10_000 else f"{v / 1024:,.1f} KiB"


def ratio(v) -> str:
    return f"{v:.0f}×" if v >= 10 else f"{v:.2g}×"  # per-channel alphas can cost more than a mask: 0.42×


def summary_table(res: dict, extra_rows: Sequence[tuple] = ()) -> str:
    st, imp = res["storage"], res["impresslearn"]
    kind = f"{imp['basis']} K={imp['basis_size']}, {granularity(imp['per_channel'])}" + (
        "," + hybrid_label(imp["hybrid"]) if imp["hybrid"] else ""
    )
    impress = [] if imp.get("skipped") else [(f"ImpressLearn ({kind})", pct(imp.get("mean_acc")), nbytes(st["impresslearn"]))]
    if impress and st.get("impresslearn_smallest") not in (None, st["impresslearn"]):  # quantised codes, coded
        label = f"ImpressLearn ({kind}, coded: its smallest form)"
        impress.append((label, pct(imp.get("mean_acc")), nbytes(st["impresslearn_smallest"])))
    rows = [
        ("method", "mean accuracy", "bytes per task"),
        ("SupSup (1-bit packed mask)", pct(res["supsup"]["mean_acc"]), nbytes(st["supsup_packed"])),
        ("SupSup (16-bit indices, as the papers count)", pct(res["supsup"]["mean_acc"]), nbytes(st["supsup_index16"])),
        *(
            [("SupSup (coded for cold storage, its smallest form)", pct(res["supsup"]["mean_acc"]), nbytes(st["supsup_coded"]))]
            if "supsup_coded" in st
            else []
        ),
        *impress,
        *extra_rows,
        ("incorrect mask (mask of another task)", pct(res.get("incorrect_mask_mean")), "-"),
    ]
    lines = [_aligned(rows)]
    for label in ("supsup", "impresslearn"):
        for r in res.get("task_inference", {}).get(label, []):
            unit = f"{r['samples']:,} mixed samples" if r.get("input") == "mixed" else f"{r['batches']} batches"
            lines.append(
                f"GN over {label} tasks ({r['objective']}, {r['method']}, from {r['input']}): right task for "
                f"{pct(r['task_acc'])} of {unit}, accuracy {pct(r['acc'])}"
            )
    return "\n".join(lines)


METHOD_NAMES = {"supsup": "SupSup", "ssnet": "SSNeT", "exssnet": "ExSSNeT", "exssnet-kkt": "ExSSNeT+KKT"}


def _method_cells(m: dict) -> tuple:
    secs = m["seconds_per_task"]
    smallest = m.get("mean_smallest_bytes_per_task")  # (runs made before cold storage have none)
    return (
        pct(m["mean_acc"]),
        f"{100 * m['bwt']:+.2f}",
        nbytes(m["mean_bytes_per_task"]),
        "-" if smallest is None else nbytes(smallest),
        f"{sum(secs) / len(secs):.1f}",
    )


def methods_summary(res: dict) -> str:
    rows = [("method", "mean accuracy", "BWT (points)", "bytes per task", "coded", "seconds per task")]
    for method in res["methods"]:
        rows.append((METHOD_NAMES.get(method, method), *_method_cells(res[method.replace("-", "_")])))
    return _aligned(rows)


def load_methods_results(path) -> dict:
    try:
        r = json.loads(read_text_file(path))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"{path}: cannot be read as a results file ({err.__class__.__name__}: {err})") from None
    if not isinstance(r, dict) or not isinstance(r.get("methods"), list):
        raise ValueError(f"{path}: not a finished --methods results file (no 'methods')")
    return r


def is_methods_run(path) -> bool:
    try:
        return isinstance(json.loads(read_text_file(path)).get("methods"), list)
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False


def load_adapt_results(path) -> dict:
    r = json.loads(read_text_file(path))
    if not isinstance(r.get("config"), dict) or not isinstance(r["config"].get("tasks"), list):
        raise ValueError(f"{path}: not a finished impresslearn adapt results file (no config.tasks)")
    return r


def is_adapt_run(path) -> bool:
    """Whether `path` holds `impresslearn adapt` results (a key per method, `methods_done`)."""
    try:
        r = json.loads(read_text_file(path))
    except (OSError, UnicodeDecodeError, ValueError):
        return False  # load_results says what is wrong with it
    return isinstance(r, dict) and "methods_done" in r


def methods_rows(paths: Sequence[str]) -> str:
    """A markdown row per --methods results file and method."""
    lines = [
        "| file | benchmark | density | seed | method | mean accuracy | BWT (points) | bytes per task | coded | s per task |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for path in paths:
        r = load_methods_results(path)
        c = r["config"]
        for method in r["methods"]:
            cells = _method_cells(r[method.replace("-", "_")])
            lines.append(
                f"| {path} | {c['benchmark']} | {r['backbone']['density']} | {c['seed']} | "
                f"{METHOD_NAMES.get(method, method)} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


def _mean_sd(values: list[float]) -> str:
    m = sum(values) / len(values)
    if len(values) < 2:
        return f"{100 * m:.1f}"
    sd = (sum((v - m) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return f"{100 * m:.1f} ± {100 * sd:.1f}"


def methods_grid(paths: Sequence[str]) -> str:
    """Mean accuracy (%, ± the standard deviation over seeds) per benchmark, density and method,
    then each method's mean backward transfer (points) and mean bytes per task."""
    groups: dict[tuple, dict[str, list[dict]]] = {}
    order: list[str] = []
    for path in paths:
        r = load_methods_results(path)
        key = (r["config"]["benchmark"], len(r["tasks"]["new"]), r["backbone"]["density"])
        for method in r["methods"]:
            groups.setdefault(key, {}).setdefault(method, []).append(r[method.replace("-", "_")])
            if method not in order:
                order.append(method)
    names = [METHOD_NAMES.get(m, m) for m in order]
    lines = [
        "| benchmark | tasks | density | seeds | "
        + " | ".join(f"{n} acc. %" for n in names)
        + " | "
        + " | ".join(f"{n} BWT" for n in names)
        + " | "
        + " | ".join(f"{n} B/task" for n in names)
        + " |",
        "| " + " | ".join(["---"] * (4 + 3 * len(order))) + " |",
    ]
    for (bench, tasks, density), by in sorted(groups.items()):
        seeds = max(len(v) for v in by.values())
        acc = [_mean_sd([m["mean_acc"] for m in by[k]]) if k in by else "-" for k in order]
        bwt = [f"{100 * sum(m['bwt'] for m in by[k]) / len(by[k]):+.2f}" if k in by else "-" for k in order]
        nb = [f"{sum(m['mean_bytes_per_task'] for m in by[k]) / len(by[k]):,.0f}" if k in by else "-" for k in order]
        lines.append(f"| {bench} | {tasks} | {density} | {seeds} | " + " | ".join(acc + bwt + nb) + " |")
    return "\n".join(lines)


def methods_early(paths: Sequence[str]) -> str:
    """Per file and method: the mean accuracy of the tasks after the first (those KKT can start
    from an earlier task) at each measured fraction of their mask phase, after both phases, and
    which earlier task KKT chose for each."""
    lines, head = [], None
    for path in paths:
        r = load_methods_results(path)
        for method in r["methods"]:
            m = r[method.replace("-", "_")]
            later = m["early_acc"][1:]
            if not later:
                continue
            fractions = sorted(later[0], key=float)
            if head != fractions:  # a table of its own for each set of measured fractions
                if head is not None:
                    lines.append("")
                head = fractions
                lines += [
                    "| file | method | "
                    + " | ".join(f"after {float(f):.0%} of the mask phase" for f in fractions)
                    + " | after the task | KKT sources |",
                    "| " + " | ".join(["---"] * (len(fractions) + 4)) + " |",
                ]
            early = [pct(sum(e.get(f, 0) for e in later) / len(later)) for f in head]
            final = pct(sum(m["acc_matrix"]["matrix"][i][i] for i in range(1, len(m["task_acc"]))) / len(later))
            kkt = ", ".join("-" if k is None else ("none" if k["source"] is None else str(k["source"])) for k in m["kkt"][1:])
            lines.append(f"| {path} | {METHOD_NAMES.get(method, method)} | " + " | ".join(early) + f" | {final} | {kkt} |")
    return "\n".join(lines)


def methods_storage(paths: Sequence[str]) -> str:
    """Per benchmark, density and method (means over seeds): the packed mask per task, the weights
    under the union of the masks (stored, 4 bytes each, positions from the masks), those that
    differ from the seed, bytes per task as stored, and bytes per task if only the changed weights
    were kept (a bitmap over the union, 1 bit per weight, plus 4 bytes per changed weight)."""
    groups: dict[tuple, list[dict]] = {}
    for path in paths:
        r = load_methods_results(path)
        for method in r["methods"]:
            key = (r["config"]["benchmark"], r["backbone"]["density"], method)
            groups.setdefault(key, []).append(r[method.replace("-", "_")])
    lines = [
        "| benchmark | density | method | mask B/task | union weights | changed weights | B/task stored | B/task changed only |",
        "| " + " | ".join(["---"] * 8) + " |",
    ]
    for (bench, density, method), ms in sorted(groups.items()):

        def mean(f):
            return sum(f(m) for m in ms) / len(ms)

        tasks = len(ms[0]["task_acc"])
        trains = ms[0]["training"]["weight"] is not None
        union = mean(lambda m: sum(m["new_entries"])) if trains else 0
        changed = mean(lambda m: m["changed_entries"])
        compact = (
            mean(lambda m: m["mask_bytes_per_task"]) + (union / 8 + 4 * changed) / tasks
            if trains
            else mean(lambda m: m["mask_bytes_per_task"])
        )
        lines.append(
            f"| {bench} | {density} | {METHOD_NAMES.get(method, method)} | "
            f"{mean(lambda m: m['mask_bytes_per_task']):,.0f} | {union:,.0f} | {changed:,.0f} | "
            f"{mean(lambda m: m['mean_bytes_per_task']):,.0f} | {compact:,.0f} |"
        )
    return "\n".join(lines)


def storage_table(rows: list[dict]) -> str:
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    head = [
        "benchmark",
        "arch",
        "params",
        "paper",
        "mask kB",
        "paper",
        "|M|",
        "|α|",
        "paper",
        "Φ kB",
        "paper",
        "Cx",
        "paper",
        "ours: packed mask",
        "ours: coded mask",
        "ours: Impress/task",
        "ours: Cx",
        "ours: Cx (coded)",
    ]
    body = []
    for r in rows:
        p, o = r["paper"], r["ours"]
        paper_params = num(p["params"] and p["params"] / 1e6, ".1f") + (" M" if p["params"] else "")
        body.append(
            [
                r["benchmark"],
                r["arch"],
                f"{r['params'] / 1e6:.2f} M",
                paper_params,
                f"{r['mask_kb']:.1f}",
                num(p["mask_kb"], ".1f"),
                str(r["basis_size"]),
                str(r["alphas"]),
                str(p["alphas"]),
                f"{r['phi_kb']:.2f}",
                num(p["phi_kb"], ".2f"),
                f"{r['cx']:.2f}",
                f"{p['cx']:.2f}",
                nbytes(o["supsup_packed_bytes"]),
                nbytes(o["supsup_coded_bytes"]),
                nbytes(o["impress_bytes"]),
                f"{o['cx_packed']:.2f}",
                f"{o['cx_coded']:.2f}",
            ]
        )
    note = (
        "mask kB: 2 bits per masked weight (the paper's convention: its 64.9 kB and 6250 kB are params/4 bytes); "
        "Φ = 4-byte alphas + basis amortised over the benchmark's maximum task count (permuted: unbounded, "
        "rotated: 360, split-cifar100: 20, split-imagenet: 100); Cx = mask / Φ. 'ours' = as this library stores "
        "a task: 1-bit packed masks, per-task BatchNorm statistics included for both methods; coded mask: SupSup's "
        "smallest exact form, a top-k mask at --density range-coded (its entropy bound; impresslearn.coding), and "
        "Cx (coded) the ratio against it."
    )
    return _aligned([head] + body) + "\n" + note


def results_rows(paths: Sequence[str]) -> str:
    """A markdown table with one row per results file."""
    head = [
        "run",
        "new tasks",
        "SupSup",
        "ImpressLearn",
        "SupSup B/task (packed / 16-bit / coded)",
        "ImpressLearn B/task (as trained / smallest)",
        "ratio (packed)",
        "incorrect mask",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for path in paths:
        r = load_results(path)
        imp, st = r["impresslearn"], r["storage"]
        if imp.get("skipped"):
            kind, acc, ib, compression = "SupSup only", "-", "-", "-"
        else:
            kind = (
                f"{imp['basis']} K={imp['basis_size']} {granularity(imp['per_channel'])}"
                + hybrid_label(imp.get("hybrid", False))  # (split runs have no hybrid variant)
                + (f" λ={imp['lam']:g}" if imp.get("lam") else "")
                + (f" {c['alpha_bits']}-bit/{c.get('alpha_scale') or 'layer'}" if (c := r["config"]).get("alpha_bits") else "")
                + (f" step {c['alpha_step']}" if c.get("alpha_step") else "")
            )
            ib = f"{nbytes(st['impresslearn'])} / {nbytes(st.get('impresslearn_smallest'))}"
            acc, compression = pct(imp.get("mean_acc")), ratio(st["compression_vs_packed"])
        status = "" if r.get("status") == "done" else f" ({r.get('status')})"
        lines.append(
            f"| {r['config']['benchmark']} {kind}{status} | {len(r['tasks']['new'])} | {pct(r['supsup']['mean_acc'])} "
            f"| {acc} | {nbytes(st['supsup_packed'])} / {nbytes(st['supsup_index16'])} / {nbytes(st.get('supsup_coded'))} "
            f"| {ib} | {compression} "
            f"| {pct(r.get('incorrect_mask_mean'))} |"
        )
    return "\n".join(lines)


def grid_table(paths: Sequence[str]) -> str:
    """A markdown pivot of ImpressLearn runs: one row per basis size K, one column per (basis kind,
    alpha per layer / per channel), each cell the mean new-task accuracy and bytes per task."""
    cells, kinds, ks, supsup = {}, [], set(), []
    for path in paths:
        r = load_results(path)
        imp = r["impresslearn"]
        if imp.get("skipped") or imp.get("mean_acc") is None or imp["hybrid"] or imp["lam"]:
            continue
        pc = imp["per_channel"]
        col = (imp["basis"], tuple(pc) if isinstance(pc, list) else pc)
        if col not in kinds:
            kinds.append(col)
        ks.add(imp["basis_size"])
        cells[(imp["basis_size"], col)] = f"{pct(imp['mean_acc'])} ({nbytes(r['storage']['impresslearn'])})"
        if r["supsup"]["mean_acc"] is not None:
            supsup.append(r["supsup"]["mean_acc"])
    order = {"heterogeneous": 0, "homogeneous": 1, "random": 2}
    kinds.sort(key=lambda c: (c[1], order.get(c[0], 3)))
    head = ["K"] + [f"{kind}, {granularity(pc)}" for kind, pc in kinds]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in sorted(ks):
        lines.append("| " + " | ".join([str(k)] + [cells.get((k, c), "-") for c in kinds]) + " |")
    if supsup:
        lines.append(f"\nSupSup (a dedicated mask per task) on the same new tasks: {pct(sum(supsup) / len(supsup))} mean.")
    return "\n".join(lines)


def _inference_label(r: dict, label: str) -> str:
    cfg = r["config"]
    if label == "impresslearn":
        imp = r["impresslearn"]
        return (
            f"ImpressLearn tasks, {cfg['benchmark']}, K={imp['basis_size']} "
            f"{granularity(imp['per_channel'])}{hybrid_label(imp.get('hybrid'))}"
        )
    bits = [cfg["preset"]] + [
        f"{k} {cfg[k]}" for k in ("density", "outputs", "scale", "mask_iterations") if cfg.get(k) is not None
    ]
    return f"SupSup masks, {cfg['benchmark']} ({', '.join(bits)})"


def inference_table(paths: Sequence[str]) -> str:
    """Markdown: task found (and accuracy with the inferred task) per method and input, then the
    superposition's diagnosis (design.md §2.6) for each run's tasks and objective."""
    runs = [load_results(p) for p in paths]
    cols = []
    for r in runs:
        for entries in r.get("task_inference", {}).values():
            for e in entries:
                if (e["method"], e["input"]) not in cols:
                    cols.append((e["method"], e["input"]))
    order = {"oneshot": 0, "binary": 1, "exhaustive": 2}
    cols.sort(key=lambda c: (order.get(c[0], 3), c[1] != "batch", c[1]))
    head = ["tasks", "n", "objective"] + [f"{m}, {i}" for m, i in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    diag = [
        "| tasks | objective | superposition accuracy | output std: superposition / tasks | "
        "true task most negative | most positive | mean rank | most negative by layer, first to last |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        for label, entries in r.get("task_inference", {}).items():
            name = _inference_label(r, label)
            n = len(r["tasks"]["new"])
            for objective in sorted({e["objective"] for e in entries}):
                cells = {
                    (e["method"], e["input"]): f"{pct(e['task_acc'])} ({pct(e['acc'])})"
                    for e in entries
                    if e["objective"] == objective
                }
                lines.append("| " + " | ".join([name, str(n), objective] + [cells.get(c, "-") for c in cols]) + " |")
            for d in r.get("task_inference_diagnosis", {}).get(label, []):
                diag.append(
                    f"| {name} | {d['objective']} | {pct(d['superposition_acc'])} | "
                    f"{d['superposition_output_std']:.3f} / {d['task_output_std']:.3f} | "
                    f"{pct(d['true_task_most_negative'])} | {pct(d['true_task_most_positive'])} | "
                    f"{d['true_task_mean_rank']:.1f} | "
                    + (
                        " / ".join(pct(v) for v in d["true_task_most_negative_by_layer"].values())
                        if d.get("true_task_most_negative_by_layer")
                        else "-"
                    )
                    + " |"
                )
    out = "\n".join(lines) + "\n\nCells: the task found (the accuracy with the inferred task)."
    if len(diag) > 2:
        out += "\n\n" + "\n".join(diag)
    return out


def split_summary(res: dict) -> str:
    """The summary of a split-benchmark run (`impresslearn split`)."""
    st, imp, sup = res["storage"], res["impresslearn"], res["supsup"]
    rows = [
        ("method", "mean accuracy", "bytes per task"),
        ("SupSup (1-bit packed mask + BN)", pct(sup.get("mean_acc")), f"{st['supsup_packed']:,.0f}"),
        (f"ImpressLearn ({imp['basis']} K={imp['basis_size']})", pct(imp.get("mean_acc")), f"{st['impresslearn']:,.0f}"),
        ("incorrect mask", pct(res.get("incorrect_mask_mean")), "-"),
    ]
    return _aligned(rows)


ADAPT_METHODS = ("finetune", "head", "piggyback", "kernel_binary", "ksm")


def adapt_table(res: dict) -> str:
    """A markdown table of an `impresslearn adapt` results file: per method the final accuracy of
    every task, the mean, backward transfer, bytes and training seconds per task."""
    tasks = res["config"]["tasks"]
    head = ["method", *tasks, "mean", "BWT", "bytes/task", "(masks + real)", "train s/task"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in ADAPT_METHODS:
        r = res.get(m)
        if not isinstance(r, dict):
            continue
        s = r["storage"]
        own = s["total"] - s["head"]
        lines.append(
            "| "
            + " | ".join(
                [
                    m,
                    *(pct(v) for v in r["task_acc"]),
                    pct(r["average_accuracy"]),
                    f"{100 * r['bwt']:+.1f} pp",
                    nbytes(r["bytes_per_task"]),
                    nbytes(own),
                    f"{r['mean_train_s_per_task']:.1f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)
