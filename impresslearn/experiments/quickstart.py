"""`impresslearn quickstart`: where ImpressLearn matches a dedicated mask, and where it does not.

Offline, about a minute on a laptop CPU, on the MNIST subset that ships with the package (6,000
training and 1,000 test images). Three runs, each against SupSup masks trained on the same new
tasks:

1. RotatedMNIST, new angles between the basis angles, per-layer alpha (K = 5): new tasks lie
   among the basis tasks, a few numbers per layer mix them (expected to match).
2. PermutedMNIST, per-channel 4-bit alpha (K = 5): a coefficient per output channel, quantised
   to 4 bits (the step of least squared error) and range-coded: about a kilobyte a task.
3. PermutedMNIST, per-layer alpha (K = 5): five numbers per layer cannot mix impressions of
   unrelated permutations into a new one (expected to fail).

The alpha fit runs 20 epochs instead of the `tuned` preset's 5: on 6,000 images an epoch is six
steps of 1,024.

The verdict under the table is computed from what the run measured, never assumed, with the
margin the run supports: a row "matches" when its gap to SupSup on the same tasks is within
`MATCH_POINTS` by more than two standard errors of the gap (binomial, over every test image of
the new tasks), "does not match" when it is beyond by more than two, and is "too close to call"
in between, the gap and its margin shown. Every accuracy rests on the subset's 1,000 test images
per task, and the task-inference line on a few batches; the table says how many. A plot of
accuracy against bytes per task is written beside the table. Bytes are each method's smallest
exact form (docs/design.md §2.8): ImpressLearn's alphas as stored (range-coded codes for quantised
ones), SupSup's masks range-coded at their density.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from pathlib import Path

from ..files import atomic_write, check_writable
from .mnist import RunConfig, Runner
from .plots import quickstart_plot
from .tables import _aligned, nbytes, pct, ratio

MATCH_POINTS = 3.0  # within this many accuracy points of SupSup's, a row "matches"

BASE = RunConfig(
    data_root=None,
    basis="heterogeneous",
    basis_size=5,
    new_tasks=2,
    mask_epochs=3.0,
    alpha_epochs=20.0,
    incorrect_tasks=0,
    verbose=False,
)


@dataclasses.dataclass(frozen=True)
class Lesson:
    name: str  # the row's label
    cfg: RunConfig

    @property
    def where(self) -> str:
        """The new tasks and the basis, in words, from the run's own settings."""
        c = self.cfg
        if c.benchmark == "rotated-mnist":
            new = c.new_angles or [c.angle_step * (t + 0.5) for t in range(c.new_tasks)]
            return (
                f"new angles {', '.join(f'{a:g}°' for a in new)}; basis angles "
                f"{', '.join(f'{c.angle_step * t:g}°' for t in range(c.basis_size))}"
            )
        return f"{c.new_tasks} new permutations; {c.basis_size} basis permutations"


LESSONS = (
    Lesson("RotatedMNIST, per-layer alpha", dataclasses.replace(BASE, benchmark="rotated-mnist")),
    Lesson(
        "PermutedMNIST, per-channel 4-bit alpha",
        dataclasses.replace(BASE, benchmark="permuted-mnist", per_channel=True, alpha_bits=4, alpha_step="mse"),
    ),
    Lesson(
        "PermutedMNIST, per-layer alpha",
        dataclasses.replace(BASE, benchmark="permuted-mnist", gn_objectives=["H"], gn_on=["supsup"]),
    ),
)


def std_error(acc: float, samples: int) -> float:
    """The binomial standard error of an accuracy measured on `samples` images, in points."""
    return 100 * math.sqrt(max(acc * (1 - acc), 1e-12) / samples) if samples else math.inf


def gap_margin(imp: float, sup: float, samples: int) -> float:
    """Two standard errors of the gap between two accuracies, each on `samples` images, in points."""
    return 2 * math.hypot(std_error(imp, samples), std_error(sup, samples))


def call(gap: float, margin: float) -> str:
    """matches, does not match, or too close to call: the gap against MATCH_POINTS, with its margin."""
    if gap + margin <= MATCH_POINTS:
        return "matches"
    if gap - margin > MATCH_POINTS:
        return "does not match"
    return "too close to call"


def rows_of(results: list[dict]) -> list[dict]:
    """One row per lesson: ImpressLearn against SupSup on the same tasks, with the verdict."""
    out = []
    for lesson, res in results:
        imp, sup, st = res["impresslearn"]["mean_acc"], res["supsup"]["mean_acc"], res["storage"]
        gap = 100 * (sup - imp)
        samples = res["data"]["eval"] * len(res["tasks"]["new"])  # every test image of the new tasks
        margin = gap_margin(imp, sup, samples)
        out.append(
            {
                "lesson": lesson.name,
                "where": lesson.where,
                "impresslearn_acc": imp,
                "supsup_acc": sup,
                "impresslearn_bytes": st["impresslearn_smallest"],  # each in its smallest exact form
                "supsup_bytes": st["supsup_coded"],
                "gap_points": gap,
                "margin_points": margin,
                "call": call(gap, margin),
                "matches": call(gap, margin) == "matches",
                "test_images_per_task": res["data"]["eval"],
            }
        )
    return out


def verdict(rows: list[dict]) -> str:
    """The sentence under the table, from the measured rows and their margins."""
    good = [r for r in rows if r["call"] == "matches"]
    bad = [r for r in rows if r["call"] == "does not match"]
    close = [r for r in rows if r["call"] == "too close to call"]
    parts = []
    if good:
        parts.append(
            "ImpressLearn matches a dedicated SupSup mask (within {:g} points) on {}".format(
                MATCH_POINTS,
                "; ".join(f"{r['lesson']} at {ratio(r['supsup_bytes'] / r['impresslearn_bytes'])} fewer bytes" for r in good),
            )
        )
    if bad:
        parts.append(
            "it does not on {}".format(
                "; ".join(
                    f"{r['lesson']} ({100 * r['impresslearn_acc']:.1f} % against {100 * r['supsup_acc']:.1f} %)" for r in bad
                )
            )
        )
    if close:
        parts.append(
            "this run cannot tell on {} (a gap of {} points against {:g}: more seeds or test images would)".format(
                "; ".join(r["lesson"] for r in close),
                "; ".join(f"{r['gap_points']:.1f} ± {r['margin_points']:.1f}" for r in close),
                MATCH_POINTS,
            )
        )
    return " ".join(p[0].upper() + p[1:] + "." for p in parts)


def summary(rows: list[dict], gn: list[dict]) -> str:
    table = [
        (
            "lesson",
            "new tasks",
            "ImpressLearn",
            "SupSup",
            "gap (points)",
            "bytes per task, smallest form (ImpressLearn / SupSup)",
            "verdict",
        )
    ]
    for r in rows:
        table.append(
            (
                r["lesson"],
                r["where"],
                pct(r["impresslearn_acc"]),
                pct(r["supsup_acc"]),
                f"{r['gap_points']:.1f} ± {r['margin_points']:.1f}",
                f"{nbytes(r['impresslearn_bytes'])} / {nbytes(r['supsup_bytes'])}",
                r["call"],
            )
        )
    n = rows[0]["test_images_per_task"]
    worst = max(std_error(r["supsup_acc"], n) for r in rows)
    lines = [
        _aligned(table),
        "",
        verdict(rows),
        f"Each accuracy is measured on {n:,} test images per task (standard error up to {worst:.1f} points); "
        f"a row matches when its gap is within {MATCH_POINTS:g} points by more than its margin (± two "
        "standard errors), does not when beyond by more, and is too close to call between.",
    ]
    for r in gn:
        lines.append(
            f"Task inference without labels (SupSup masks, {r['objective']} one-shot): right task for "
            f"{pct(r['task_acc'])} of {r['batches']} batches — only {r['batches']} batches decide it."
        )
    return "\n".join(lines)


def quickstart(out: str | None = None, plot_path: str | None = None, verbose: bool = True, lessons=LESSONS, **overrides) -> dict:
    """Run the lessons (`overrides` replace RunConfig fields in each, e.g. for a shorter run), print
    the table and its verdict, write the plot (default: beside `out`, else
    `impresslearn-quickstart.png` in the current folder) and, with `out`, the results JSON."""
    plot_path = Path(plot_path or (Path(out).with_suffix(".png") if out else "impresslearn-quickstart.png"))
    for path in ([out] if out else []) + [plot_path]:  # refused now, not after the lessons ran
        check_writable(path)
    start = time.time()
    results = []
    with tempfile.TemporaryDirectory() as cache:  # the per-layer permuted run reuses the masks of the per-channel one
        for i, lesson in enumerate(lessons):
            cfg = dataclasses.replace(lesson.cfg, cache=cache, verbose=verbose, **overrides)
            lesson = dataclasses.replace(lesson, cfg=cfg)  # its words describe what actually ran
            if verbose:
                print(f"impresslearn quickstart: {i + 1}/{len(lessons)} {lesson.name} ...", flush=True)
            results.append((lesson, Runner(cfg, command="impresslearn quickstart").run()))
    rows = rows_of(results)
    gn = [r for _, res in results for r in res.get("task_inference", {}).get("supsup", [])]
    first = results[0][1]
    print(f"\nimpresslearn quickstart: {first['data']['source']}, {first['data']['train']:,} training images\n")
    print(summary(rows, gn))
    quickstart_plot(rows, plot_path)
    print(f"\nplot: {plot_path}; finished in {time.time() - start:.0f} s (backend {first['machine']['backend']})")
    report = {
        "rows": rows,
        "verdict": verdict(rows),
        "task_inference": gn,
        "plot": str(plot_path),
        "runs": {lesson.name: res for lesson, res in results},
    }
    if out:
        atomic_write(out, json.dumps(report, indent=1))
    return report
