"""`impresslearn split --benchmark split-cifar100|split-imagenet ...`: the split benchmarks with
ResNets. The same command runs one process or many under `torchrun`, and resumes an interrupted
run:

    impresslearn split --benchmark split-cifar100 --data-root ~/data --download --out cifar.json
    impresslearn split --benchmark split-imagenet --data-root /data/imagenet -K 75 --out inet.json
    impresslearn split --benchmark split-imagenet --synthetic --image-size 64 --mask-iterations 2 ...
    torchrun --nproc-per-node 8 -m impresslearn.cli split --benchmark split-imagenet ...

(`impresslearn run --benchmark split-...` is the older spelling and takes the same options.)
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence

from ..continual import distributed as dd
from ..experiments import PAPER_SETTINGS, SPLIT_BENCHMARKS, SplitConfig, SplitRunner
from ..experiments.tables import split_summary
from .options import (
    HelpFormatter,
    Parser,
    Refused,
    config_from_args,
    finite_float,
    parse_bool,
    positive_int,
    say_threads,
    use_threads,
    with_flags,
)


def epilog() -> str:
    paper = "; ".join(
        f"{b}: {s['arch']}, Adam lr {s['lr']}, λ {s['lam']}, batch {s['batch_size']}" for b, s in PAPER_SETTINGS.items()
    )
    return f"Paper settings (the defaults): {paper}."


def build_parser(prog: str = "impresslearn run") -> argparse.ArgumentParser:
    """The split options as a parser of their own (the older `run --benchmark split-...` spelling)."""
    p = Parser(prog=prog, description=__doc__, formatter_class=HelpFormatter, epilog=epilog())
    add_split_arguments(p)
    return p


def add_split_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--benchmark", required=True, choices=tuple(SPLIT_BENCHMARKS))
    g.add_argument(
        "--data-root",
        help="split-cifar100: folder for torchvision CIFAR100; split-imagenet: folder "
        "with train/<class>/ and val/<class>/ image folders",
    )
    g.add_argument("--download", action="store_true", help="let torchvision download CIFAR-100 into --data-root")
    g.add_argument(
        "--synthetic",
        action="store_true",
        help="generated images of the benchmark's shapes and class count instead of the data set",
    )
    g.add_argument("--synthetic-train", type=int, help="synthetic images per class for training")
    g.add_argument("--synthetic-test", type=int, help="synthetic images per class for testing")
    g.add_argument("--image-size", type=int, default=224, help="split-imagenet crop size (224; smaller for smoke runs)")
    g = p.add_argument_group("backbone and masks")
    g.add_argument("--arch", choices=["resnet18", "resnet50"], help="default: resnet18 (CIFAR) / resnet50 (ImageNet)")
    g.add_argument("--width", type=int, default=64, help="resnet18's first-stage channels")
    g.add_argument("--density", type=finite_float, default=0.1)
    g.add_argument("--mask", choices=["topk", "threshold"], default="topk")
    g.add_argument("--init", choices=["kaiming_normal", "signed_constant"], default="kaiming_normal")
    g.add_argument("--scale", type=parse_bool, default=False, metavar="BOOL")
    g = p.add_argument_group("tasks and ImpressLearn")
    g.add_argument("--basis", default="heterogeneous", choices=["heterogeneous", "homogeneous", "random"])
    g.add_argument("--basis-size", "-K", type=int, default=10)
    g.add_argument("--new-tasks", type=int, default=5, help="0 builds the basis only")
    g.add_argument("--first-new-task", type=int, help="default: the first task after the basis tasks")
    g.add_argument("--per-channel", action="store_true")
    g.add_argument("--lam", type=finite_float, help="eq. 2 penalty weight (default: the paper's 0.005)")
    g.add_argument("--no-supsup", dest="supsup", action="store_false", help="skip the SupSup masks of the new tasks")
    g.add_argument("--incorrect-tasks", type=int, default=5)
    g = p.add_argument_group("training (defaults: the paper's)")
    g.add_argument("--optimizer", default="adam", choices=["adam", "rmsprop", "sgd"])
    g.add_argument("--lr", type=finite_float, help="masks and alphas")
    g.add_argument("--batch-size", type=int, help="global batch (divided among processes)")
    g.add_argument("--mask-lr", type=finite_float)
    g.add_argument("--mask-epochs", type=finite_float, default=1.0)
    g.add_argument("--mask-iterations", type=int)
    g.add_argument("--alpha-lr", type=finite_float)
    g.add_argument("--alpha-epochs", type=finite_float, default=1.0)
    g.add_argument("--alpha-iterations", type=int)
    g = p.add_argument_group("running")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", help="default: this process's GPU if CUDA is present, else cpu")
    g.add_argument(
        "--threads", type=positive_int, help="CPU threads (default: 1 for models under 2 M weights, else one per CPU; see doctor)"
    )
    g.add_argument("--workers", type=int, default=0, help="DataLoader worker processes per process")
    g.add_argument("--eval-batch-size", type=int, default=250)
    g.add_argument("--eval-batches", type=int, help="at most this many test batches per task")
    g.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints (0: per unit only)")
    g.add_argument(
        "--basis-parallel",
        choices=["masks", "data"],
        default="masks",
        help="several processes: share the basis masks out (masks) or train each on all (data)",
    )
    g.add_argument(
        "--sync-bn",
        type=parse_bool,
        default=True,
        metavar="BOOL",
        help="data-parallel BatchNorm statistics over the global batch",
    )
    g.add_argument(
        "--bn-recalibrate",
        type=int,
        default=50,
        metavar="BATCHES",
        help="re-estimate a task's BatchNorm statistics on this many training batches after training "
        "(0: keep the running averages)",
    )
    g.add_argument(
        "--dist-timeout",
        type=finite_float,
        default=360.0,
        metavar="MINUTES",
        help="how long a process waits for the others (ranks with fewer basis masks wait)",
    )
    g.add_argument("--restart", action="store_true", help="discard an earlier run's checkpoints instead of resuming")
    g.add_argument("--out", default="results.json")
    g.add_argument("--quiet", action="store_true")


def main(argv: Sequence[str]) -> int:
    """`impresslearn run --benchmark split-...`: `argv`, the arguments after `run`."""
    parser = build_parser()
    return cmd_split(parser.parse_args(list(argv)), ["run", *argv], parser)


def cmd_split(a: argparse.Namespace, argv: Sequence[str], parser: argparse.ArgumentParser) -> int:
    """Run the split benchmark `a` asks for; `argv`: the whole command after `impresslearn`."""
    try:
        cfg = config_from_args(a, SplitConfig)
        cfg.check()  # before joining the process group: bad options fail fast on every rank
        threads = use_threads(cfg.backbone(), a.threads)
    except (ValueError, OSError) as err:
        raise Refused(with_flags(str(err), parser)) from err
    d = dd.init_from_env(cfg.device, timeout_minutes=a.dist_timeout)
    try:
        try:  # what refuses the run (--out in use or holding another run's results) comes first
            runner = SplitRunner(cfg, a.out, command="impresslearn " + shlex.join(argv), d=d)
        except (ValueError, OSError) as err:
            raise Refused(with_flags(str(err), parser)) from err
        say_threads(threads, a.quiet or not d.is_main)
        res = runner.run()
    except BaseException:
        dd.shutdown(d, wait=False)  # no barrier: the other processes may be stuck elsewhere
        raise
    dd.shutdown(d)
    if d.is_main:
        print(split_summary(res))
        print(f"results: {a.out}")
    return 0


def is_split_run(argv: Sequence[str]) -> bool:
    """Whether `impresslearn <argv>` is a `run` of a split benchmark (which takes these options)."""
    argv = list(argv)
    if not argv or argv[0] != "run":
        return False
    for i, arg in enumerate(argv):
        if arg == "--benchmark" and i + 1 < len(argv):
            return argv[i + 1] in SPLIT_BENCHMARKS
        if arg.startswith("--benchmark="):
            return arg.split("=", 1)[1] in SPLIT_BENCHMARKS
    return False
