"""The `impresslearn` command line: argument parsing and commands only (nothing imports it).

impresslearn quickstart     offline demo on the shipped MNIST subset (about a minute)
impresslearn mnist ...      SupSup and ImpressLearn on PermutedMNIST or RotatedMNIST, results to --out
impresslearn compare ...    SupSup, SSNeT, ExSSNeT and ExSSNeT + KKT side by side (also SplitMNIST)
impresslearn split ...      SplitCIFAR-100 / SplitImageNet with ResNets (one process or torchrun)
impresslearn adapt ...      the KSM experiment: a pretrained conv net adapted to new tasks
impresslearn run ...        the older spelling of mnist, compare (with --methods) and split
impresslearn storage        the ImpressLearn paper's Table 2, recomputed
impresslearn plot R.json..  accuracy against bytes per task, and box plots by impressions
impresslearn table R.json.. one markdown row per run: accuracies and bytes per task
impresslearn doctor         versions, backends (and why one is missing), native build, CUDA, threads
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from .. import doctor
from ..continual.storage import paper_table2
from ..experiments import frontier, plots, tables
from ..experiments.quickstart import BASE as QUICKSTART_RUN
from ..experiments.quickstart import quickstart
from . import split
from .adapt import add_adapt_arguments, cmd_adapt
from .options import HelpFormatter, Parser, Refused, finite_float, positive_int, say_threads, use_threads
from .run import add_compare_arguments, add_mnist_arguments, add_run_arguments, cmd_run

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="impresslearn", description=__doc__, formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    q = sub.add_parser("quickstart", help="offline demo on the shipped MNIST subset")
    q.add_argument("--out", help="also write the results JSON here (and the plot beside it, .png)")
    q.add_argument("--plot", help="where the plot goes (default: beside --out, else impresslearn-quickstart.png)")
    q.add_argument("--threads", type=positive_int)
    q.add_argument("--quiet", action="store_true")
    m = sub.add_parser("mnist", help="SupSup and ImpressLearn on PermutedMNIST or RotatedMNIST; results to --out")
    add_mnist_arguments(m)
    m.set_defaults(parser=m)  # its refusals name its options
    c = sub.add_parser("compare", help="SupSup, SSNeT, ExSSNeT, ExSSNeT + KKT side by side; results to --out")
    add_compare_arguments(c)
    c.set_defaults(parser=c)
    sp = sub.add_parser(
        "split",
        help="SplitCIFAR-100 / SplitImageNet with ResNets (one process or torchrun); results to --out",
        description=split.__doc__,
        epilog=split.epilog(),
    )
    split.add_split_arguments(sp)
    sp.set_defaults(parser=sp)
    r = sub.add_parser("run", help="the older spelling of mnist, compare (--methods) and split (--benchmark split-...)")
    add_run_arguments(r)
    r.set_defaults(parser=r)
    ad = sub.add_parser("adapt", help="KSM, Piggyback and baselines adapting a pretrained conv net; results to --out")
    add_adapt_arguments(ad)
    ad.set_defaults(parser=ad)
    s = sub.add_parser("storage", help="the paper's Table 2, recomputed")
    s.add_argument("--density", type=finite_float, default=0.1, help="density for the 16-bit index count")
    pl = sub.add_parser("plot", help="plots from results JSON files")
    pl.add_argument("results", nargs="+")
    pl.add_argument("--out-dir", default=".")
    pl.add_argument(
        "--overview", metavar="PNG", help="instead: every method on one figure (run, --methods and adapt results) written to PNG"
    )
    pl.add_argument(
        "--frontier",
        action="store_true",
        help="instead: <benchmark>-frontier.png per benchmark, every mnist and compare file's methods at "
        "their smallest exact form, seeds pooled, the Pareto front drawn",
    )
    t = sub.add_parser("table", help="a markdown table of results JSON files")
    t.add_argument("results", nargs="+")
    t.add_argument(
        "--grid",
        action="store_true",
        help="pivot: rows K, columns basis kind and alpha granularity "
        "(--methods runs: rows benchmark and density, columns methods, "
        "over seeds)",
    )
    t.add_argument("--storage", action="store_true", help="--methods runs: what the trained weights cost per task")
    t.add_argument(
        "--frontier",
        action="store_true",
        help="mnist and compare runs: every method and setting by bytes per task (smallest exact form), seeds "
        "pooled, the Pareto front marked, and the fewest bytes within a point of SupSup",
    )
    t.add_argument("--early", action="store_true", help="--methods runs: accuracy early in each mask phase (KKT)")
    t.add_argument(
        "--inference",
        action="store_true",
        help="task inference: a column per method and input, and the superposition's diagnosis",
    )
    d = sub.add_parser(
        "doctor",
        help="what this installation runs: versions, backends and why one is missing, the native build, CUDA devices, threads",
    )
    d.add_argument("--json", action="store_true", help="the report as JSON")
    p.commands = sub.choices  # name -> parser, to say which command takes an option given to another
    return p


def refuse_extra(p: argparse.ArgumentParser, a: argparse.Namespace, extra: list[str]) -> None:
    """Unrecognised arguments, refused in one sentence that names the command taking the option."""
    message = f"unrecognized arguments: {' '.join(extra)}"
    option = next((x.split("=", 1)[0] for x in extra if x.startswith("-")), None)
    owners = [
        name
        for name, parser in p.commands.items()
        if name not in (a.command, "run") and option in getattr(parser, "_option_string_actions", {})
    ]
    if owners:
        message += f" ({option} belongs to {' and '.join('impresslearn ' + o for o in owners)})"
    getattr(a, "parser", p).error(message)


def cmd_quickstart(a: argparse.Namespace) -> int:
    say_threads(use_threads(QUICKSTART_RUN.backbone(), a.threads), a.quiet)
    quickstart(out=a.out, plot_path=a.plot, verbose=not a.quiet)
    return 0


def cmd_storage(a: argparse.Namespace) -> int:
    print(tables.storage_table(paper_table2(a.density)))
    return 0


def cmd_plot(a: argparse.Namespace) -> int:
    if a.overview:
        print(plots.methods_overview(a.results, a.overview))
        return 0
    if a.frontier:
        for path in plots.frontier_plots(a.results, a.out_dir):
            print(path)
        return 0
    for path in plots.plot_results(a.results, a.out_dir):
        print(path)
    return 0


def cmd_table(a: argparse.Namespace) -> int:
    if a.inference:
        print(tables.inference_table(a.results))
        return 0
    if a.frontier:
        print(frontier.frontier_table(a.results))
        return 0
    if all(tables.is_adapt_run(p) for p in a.results):  # impresslearn adapt: a table per file
        print("\n\n".join(tables.adapt_table(tables.load_adapt_results(p)) for p in a.results))
        return 0
    if all(tables.is_methods_run(p) for p in a.results):  # the ExSSNeT comparison
        print(
            tables.methods_early(a.results)
            if a.early
            else tables.methods_storage(a.results)
            if a.storage
            else tables.methods_grid(a.results)
            if a.grid
            else tables.methods_rows(a.results)
        )
        return 0
    print(tables.grid_table(a.results) if a.grid else tables.results_rows(a.results))
    return 0


def cmd_doctor(a: argparse.Namespace) -> int:
    r = doctor.report()
    print(json.dumps(r, indent=1) if a.json else doctor.format_report(r))
    return 0


COMMANDS = {"quickstart": cmd_quickstart, "storage": cmd_storage, "plot": cmd_plot, "table": cmd_table, "doctor": cmd_doctor}


def _dispatch(argv: list[str]) -> int:
    if split.is_split_run(argv):  # SplitCIFAR-100 / SplitImageNet take options of their own
        return split.main(argv[1:])
    p = build_parser()
    a, extra = p.parse_known_args(argv)
    if extra:
        refuse_extra(p, a, extra)
    if a.command in ("run", "mnist", "compare"):
        return cmd_run(a, argv)
    if a.command == "split":
        return split.cmd_split(a, argv, a.parser)
    if a.command == "adapt":
        return cmd_adapt(a, argv)
    try:
        return COMMANDS[a.command](a)
    except (ValueError, OSError) as err:  # a file `table`/`plot` cannot read: its name and why
        raise Refused(str(err)) from err


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command. A refused value is one sentence and exit status 2; any other failure one
    sentence and status 1; the traceback only with --debug (anywhere) or IMPRESSLEARN_DEBUG=1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("IMPRESSLEARN_DEBUG", "0") not in ("", "0")
    argv = [x for x in argv if x != "--debug"]
    try:
        return _dispatch(argv)
    except Refused as err:
        if debug:
            raise
        print(f"impresslearn: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("impresslearn: interrupted; finished units are kept: the same command resumes", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the last line of defence: one sentence, not a traceback
        if debug:
            raise
        print(f"impresslearn: error: {type(err).__name__}: {err} (run again with --debug for the traceback)", file=sys.stderr)
        return 1
