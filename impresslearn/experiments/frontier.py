"""Accuracy against bytes per task across results files: every method of a benchmark at its
smallest exact form (docs/design.md §2.8), seeds pooled, the Pareto front found.

    frontier_points(paths)        benchmark -> its Points (a method and setting, over its seeds)
    frontier_table(paths)         a markdown table per benchmark, by bytes, the front marked, and
                                  the reach: the fewest bytes at which an ImpressLearn task is
                                  within a point of SupSup at the library's density (0.1)
    (plots.frontier_plot draws one figure per benchmark from the same points)

The points: an `impresslearn mnist` file gives SupSup (its coded masks) and, unless SupSup-only,
ImpressLearn (its alphas as stored: range-coded codes for quantised ones, a hybrid's coded mask);
an `impresslearn compare` file gives each of its methods (`smallest_bytes_per_task`). A SupSup
setting that several files at one seed share (the same cached masks) counts once.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Sequence

from ..files import read_text_file
from .tables import METHOD_NAMES, check_results, granularity, hybrid_label, load_results, nbytes

REFERENCE_DENSITY = 0.1  # SupSup at the library's default density: the dedicated mask compared with
WITHIN = 0.01  # "within a point" of it


@dataclasses.dataclass
class Point:
    family: str  # SupSup, ImpressLearn, ExSSNeT, ...
    label: str
    accs: dict = dataclasses.field(default_factory=dict)  # seed -> mean accuracy over the new tasks
    sizes: dict = dataclasses.field(default_factory=dict)  # seed -> bytes per task (smallest form)
    density: float | None = None  # SupSup's top-k density (None: threshold masks or not SupSup)

    @property
    def acc(self) -> float:
        return statistics.fmean(self.accs.values())

    @property
    def spread(self) -> float:
        """The standard deviation over seeds (0 with one seed)."""
        return statistics.stdev(self.accs.values()) if len(self.accs) > 1 else 0.0

    @property
    def nbytes(self) -> float:
        return statistics.fmean(self.sizes.values())


def _impress_label(r: dict) -> str:
    imp, c = r["impresslearn"], r["config"]
    label = f"K={imp['basis_size']} {granularity(imp['per_channel'])}{hybrid_label(imp.get('hybrid', False))}"
    if imp["basis"] != "heterogeneous":
        label += f", {imp['basis']} basis"
    if c.get("alpha_bits"):
        label += f", {c['alpha_bits']}-bit/{c.get('alpha_scale') or 'layer'}"
        label += " mse" if c.get("alpha_step") == "mse" else ""
    return label


def _benchmark(c: dict) -> str:
    """The benchmark a file's points belong to: RotatedMNIST's new tasks between the basis angles
    and far from them are two."""
    if c["benchmark"] != "rotated-mnist":
        return c["benchmark"]
    if c.get("random_rotation"):
        return "rotated-mnist, random rotations"
    angles = c.get("new_angles")
    return f"rotated-mnist, new tasks at {min(angles):g}-{max(angles):g}°" if angles else "rotated-mnist, between basis angles"


def _add(points: dict, bench: str, family: str, label: str, seed: int, acc, size, density=None) -> None:
    if acc is None or size is None:
        return
    p = points.setdefault(bench, {}).setdefault((family, label), Point(family, label, density=density))
    p.accs.setdefault(seed, acc)  # the same setting at the same seed in several files: once
    p.sizes.setdefault(seed, size)


def _read(path) -> dict:
    """A results file of any command, or ValueError naming it and what is wrong with it."""
    try:
        return json.loads(read_text_file(path))
    except (OSError, UnicodeDecodeError, ValueError):
        return load_results(path)  # (it says what is wrong, in one sentence)


def _collect(paths: Sequence[str]) -> tuple[dict[str, list[Point]], list[str]]:
    """(benchmark -> its points, the files left out as not finished), each file read once."""
    points: dict = {}
    left = []
    for path in paths:
        raw = _read(path)
        if isinstance(raw, dict) and raw.get("status", "done") != "done":  # means over some tasks only
            left.append(str(path))
            continue
        if isinstance(raw, dict) and isinstance(raw.get("methods"), list):  # impresslearn compare
            c = raw["config"]
            for m in raw["methods"]:
                rec = raw.get(m.replace("-", "_"), {})
                label = f"{METHOD_NAMES.get(m, m)} d={c.get('density') or REFERENCE_DENSITY:g}"
                _add(
                    points,
                    _benchmark(c),
                    METHOD_NAMES.get(m, m),
                    label,
                    c["seed"],
                    rec.get("mean_acc"),
                    rec.get("mean_smallest_bytes_per_task"),
                )
            continue
        r = check_results(raw, path)
        c, st, bb = r["config"], r["storage"], r["backbone"]
        if bb.get("mask") == "threshold":
            label, density = f"threshold masks (density {bb.get('measured_density', 0):.3f})", None
        else:
            density = bb.get("density")
            label = f"top-k d={density:g}"
        bench = _benchmark(c)
        _add(points, bench, "SupSup", label, c["seed"], r["supsup"].get("mean_acc"), st.get("supsup_coded"), density)
        imp = r["impresslearn"]
        if not imp.get("skipped"):
            size = st.get("impresslearn_smallest")
            if size is None and "impresslearn_alpha_bytes" in st:  # (older files: the task as trained)
                size = st["impresslearn_alpha_bytes"] + (st.get("impresslearn_hybrid_mask_bytes") or 0)
            _add(points, bench, "ImpressLearn", _impress_label(r), c["seed"], imp.get("mean_acc"), size)
    by_bench = {bench: sorted(ps.values(), key=lambda p: (p.nbytes, -p.acc)) for bench, ps in sorted(points.items())}
    return by_bench, left


def frontier_points(paths: Sequence[str]) -> dict[str, list[Point]]:
    """benchmark -> its points, from the finished `impresslearn mnist` and `impresslearn compare`
    files among `paths` (`unfinished` names the others)."""
    return _collect(paths)[0]


def unfinished(paths: Sequence[str]) -> list[str]:
    """The files among `paths` whose run has not finished (their means cover only some tasks)."""
    return _collect(paths)[1]


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (bytes, accuracy) points no other point beats in both bytes (fewer) and accuracy
    (higher), by bytes."""
    front, best = [], -math.inf
    for b, a in sorted(points, key=lambda p: (p[0], -p[1])):
        if a > best:
            front.append((b, a))
            best = a
    return front


def pareto(points: Sequence[Point]) -> list[Point]:
    """The Points on the front (`pareto_front`), by bytes."""
    front = set(pareto_front([(p.nbytes, p.acc) for p in points]))
    return [p for p in sorted(points, key=lambda p: (p.nbytes, -p.acc)) if (p.nbytes, p.acc) in front]


def reference(points: Sequence[Point]) -> Point | None:
    """SupSup at the library's density: the dedicated mask a task is compared with."""
    return next((p for p in points if p.family == "SupSup" and p.density == REFERENCE_DENSITY), None)


def reach(points: Sequence[Point]) -> tuple[Point, Point] | None:
    """(the reference, the ImpressLearn point of fewest bytes within a point of it), or None."""
    ref = reference(points)
    if ref is None:
        return None
    close = [p for p in points if p.family == "ImpressLearn" and p.acc >= ref.acc - WITHIN]
    return (ref, min(close, key=lambda p: p.nbytes)) if close else None


def pct_spread(p: Point) -> str:
    return f"{100 * p.acc:.1f} ± {100 * p.spread:.1f} %" if len(p.accs) > 1 else f"{100 * p.acc:.1f} %"


def frontier_table(paths: Sequence[str]) -> str:
    """A markdown table per benchmark: every point by bytes, its seeds, the ratio to SupSup's
    reference mask, the Pareto front marked; and the reach under it."""
    out = []
    by_bench, left = _collect(paths)
    for bench, points in by_bench.items():
        ref, front = reference(points), {id(p) for p in pareto(points)}
        out += [
            f"**{bench}**",
            "",
            "| method | setting | seeds | mean accuracy | bytes per task (smallest) | SupSup d=0.1 / it | front |",
        ]
        out.append("|---|---|---|---|---|---|---|")
        for p in points:
            ratio = f"{ref.nbytes / p.nbytes:.1f}×" if ref else "-"
            out.append(
                f"| {p.family} | {p.label} | {len(p.accs)} | {pct_spread(p)} | {nbytes(p.nbytes)} | {ratio} | "
                f"{'✓' if id(p) in front else ''} |"
            )
        got = reach(points)
        out.append("")
        if ref is None:
            out.append("No SupSup run at density 0.1 to compare with.")
        elif got is None:
            out.append(f"No ImpressLearn setting comes within a point of SupSup ({pct_spread(ref)}, {nbytes(ref.nbytes)}).")
        else:
            r, p = got
            out.append(
                f"Fewest bytes within a point of SupSup d=0.1 ({pct_spread(r)} at {nbytes(r.nbytes)} coded): "
                f"ImpressLearn {p.label}, {pct_spread(p)} at {nbytes(p.nbytes)}, 1/{r.nbytes / p.nbytes:.0f} of SupSup's bytes."
            )
        out.append("")
    if left:
        out.append(f"Left out, not finished: {', '.join(left)}.")
    return "\n".join(out).rstrip()


__all__ = ["Point", "frontier_points", "frontier_table", "pareto", "pareto_front", "reach", "reference", "unfinished"]
