"""The `impresslearn` command line: argument parsing and commands only (nothing imports it).

    impresslearn quickstart     offline demo on the shipped MNIST subset (about a minute)
    impresslearn run ...        one experiment, results to a JSON file (see `run --help`)
    impresslearn storage        the ImpressLearn paper's Table 2, recomputed
    impresslearn plot R.json..  accuracy against bytes per task, and box plots by impressions
    impresslearn table R.json.. one markdown row per run: accuracies and bytes per task
    impresslearn doctor         versions, backends (and why one is missing), native build, CUDA, threads
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import torch

from .. import doctor
from ..continual.storage import paper_table2
from ..experiments import plots, tables
from ..experiments.quickstart import quickstart
from . import split
from .run import add_run_arguments, cmd_run

__all__ = ["build_parser", "main"]


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


def cmd_quickstart(a: argparse.Namespace) -> int:
    if a.threads:
        torch.set_num_threads(a.threads)
    quickstart(out=a.out, verbose=not a.quiet)
    return 0


def cmd_storage(a: argparse.Namespace) -> int:
    print(tables.storage_table(paper_table2(a.density)))
    return 0


def cmd_plot(a: argparse.Namespace) -> int:
    for path in plots.plot_results(a.results, a.out_dir):
        print(path)
    return 0


def cmd_table(a: argparse.Namespace) -> int:
    print(tables.grid_table(a.results) if a.grid else tables.results_rows(a.results))
    return 0


def cmd_doctor(a: argparse.Namespace) -> int:
    r = doctor.report()
    print(json.dumps(r, indent=1) if a.json else doctor.format_report(r))
    return 0


COMMANDS = {"quickstart": cmd_quickstart, "storage": cmd_storage, "plot": cmd_plot, "table": cmd_table,
            "doctor": cmd_doctor}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if split.is_split_run(argv):  # SplitCIFAR-100 / SplitImageNet take options of their own
        return split.main(argv[1:])
    a = build_parser().parse_args(argv)
    if a.command == "run":
        return cmd_run(a, argv)
    return COMMANDS[a.command](a)
