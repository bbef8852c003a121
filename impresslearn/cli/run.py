"""`impresslearn mnist` (SupSup and ImpressLearn on PermutedMNIST or RotatedMNIST) and
`impresslearn compare` (the ExSSNeT comparison, also on SplitMNIST): their options, in groups
each command takes or not, and the command. `impresslearn run` is the older spelling of both.

(The split benchmarks take options of their own: `cli/split.py`, `impresslearn split`.)
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence

from ..continual import inference
from ..continual import masks as masks_mod
from ..experiments import ALPHA_PRESETS, BENCHMARKS, MNIST_BENCHMARKS, RunConfig, Runner
from ..experiments.mnist import MNIST_ARCHS
from ..experiments.tables import methods_summary, summary_table
from ..methods.exssnet import METHODS as EXSSNET_METHODS
from .options import (
    Refused,
    config_from_args,
    finite_float,
    names_of,
    parse_bool,
    parse_floats,
    parse_names,
    positive_int,
    say_threads,
    use_threads,
    with_flags,
)


def add_data(p: argparse.ArgumentParser, benchmarks: Sequence[str], note: str | None = None) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--benchmark", default="permuted-mnist", choices=benchmarks, help=note)
    g.add_argument("--data-root", help="folder with MNIST/raw (torchvision layout); default: the subset shipped with the package")
    g.add_argument("--download", action="store_true", help="let torchvision download MNIST into --data-root")
    g.add_argument(
        "--validation",
        type=int,
        default=0,
        metavar="N",
        help="evaluate on the last N training images instead of the test set (for tuning)",
    )


def add_backbone(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backbone and SupSup masks")
    g.add_argument(
        "--arch",
        choices=MNIST_ARCHS,
        help="the backbone (default lenet_300_100); vit: a small ViT (models.mnist_vit: 7x7 patches, "
        "2 layers of 4 heads, width 64), attention projections masked, norms and tokens frozen",
    )
    g.add_argument(
        "--preset",
        default="topk-0.1",
        choices=sorted(masks_mod.MASK_PRESETS),
        help="topk-0.1: top-10%% masks, density-scaled signed constant, RMSprop 3e-4, 1 epoch; "
        "supsup: SupSup's PermutedMNIST settings (threshold masks, unscaled signed constant, "
        "100 outputs, RMSprop 1e-4, 1000 iterations); paper: Kaiming normal, top-10%%, RMSprop 1e-4",
    )
    g.add_argument("--density", type=finite_float, help="fraction of weights a top-k mask keeps (and of random basis masks)")
    g.add_argument("--mask", choices=["topk", "threshold"])
    g.add_argument("--init", choices=["kaiming_normal", "signed_constant"])
    g.add_argument("--scale", type=parse_bool, metavar="BOOL", help="scale the backbone by 1/sqrt(density)")
    g.add_argument("--outputs", type=int, help="output neurons (100 gives SupSup's superfluous neurons for G)")
    g.add_argument("--mask-optimizer", choices=["adam", "rmsprop", "sgd"])
    g.add_argument("--mask-lr", type=finite_float)
    g.add_argument("--mask-epochs", type=finite_float)
    g.add_argument("--mask-iterations", type=int)


def add_tasks(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tasks")
    g.add_argument("--new-tasks", type=int, default=5, help="new tasks learned by SupSup and by ImpressLearn")
    g.add_argument(
        "--first-new-task",
        type=int,
        default=1000,
        help="permuted-mnist: the first new task (permutation seed = task + 1); basis tasks are 0..K-1",
    )
    g.add_argument("--angle-step", type=finite_float, default=10.0, help="rotated-mnist: basis task t is rotated by step*t")
    g.add_argument(
        "--new-angles",
        type=parse_floats,
        help="rotated-mnist: comma-separated angles of the new tasks (default: between basis angles, step*(t+0.5))",
    )
    g.add_argument(
        "--random-rotation",
        action="store_true",
        help="rotated-mnist: the ImpressLearn authors' variant, every image rotated at random in "
        "[-90, 90] degrees for every task (all tasks then share one distribution)",
    )


def add_impresslearn(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("ImpressLearn")
    g.add_argument(
        "--no-impresslearn",
        dest="impresslearn",
        action="store_false",
        help="SupSup only: skip the basis and the alphas (e.g. for task-inference runs)",
    )
    g.add_argument("--basis", default="heterogeneous", choices=["heterogeneous", "homogeneous", "random"])
    g.add_argument("--basis-size", "-K", type=int, default=10)
    g.add_argument("--per-channel", action="store_true", help="alpha per output channel ([K, rows]) instead of per layer")
    g.add_argument(
        "--per-channel-layers",
        dest="per_channel",
        type=parse_names,
        metavar="NAMES",
        help="per-channel alphas in these layers only (comma-separated names, e.g. 5 for LeNet's last), per layer "
        "elsewhere (default: as --per-channel says)",
    )
    g.add_argument(
        "--hybrid",
        nargs="?",
        const="last",
        default=False,
        choices=["last", "first"],
        help="a SupSup mask per task in the last layer (--hybrid, --hybrid last) or the first (--hybrid "
        "first: one-shot task inference finds its signal there), alphas elsewhere",
    )
    g.add_argument("--lam", type=finite_float, default=0.0, help="eq. 2 penalty weight: lam * sum (sum |alpha| - 1)^2")
    g.add_argument(
        "--alpha-preset",
        default=RunConfig.alpha_preset,
        choices=sorted(ALPHA_PRESETS),
        help="; ".join(
            f"{k}: {v['optimizer']} lr {v['lr']:g}{' cosine' if v.get('schedule') == 'cosine' else ''}, "
            f"{v['epochs']:g} epochs, batch {v['batch_size']}"
            for k, v in sorted(ALPHA_PRESETS.items())
        ),
    )
    g.add_argument("--alpha-optimizer", choices=["adam", "rmsprop", "sgd", "lbfgs"])
    g.add_argument("--alpha-lr", type=finite_float)
    g.add_argument("--alpha-epochs", type=finite_float, help="epochs (L-BFGS: 20 iterations per 'epoch')")
    g.add_argument("--alpha-batch-size", type=int)
    g.add_argument("--alpha-schedule", choices=["constant", "cosine"], help="learning-rate schedule of the alpha fit")
    g.add_argument(
        "--alpha-bits",
        type=int,
        choices=range(2, 9),
        metavar="BITS",
        help="quantised alphas: 2..8-bit codes, trained through straight-through rounding and kept and "
        "counted as codes and float16 scales (default: float32 alphas)",
    )
    g.add_argument(
        "--alpha-scale",
        choices=["layer", "row"],
        help="quantised alphas' scales: one per layer (the default), or one per output row (needs --per-channel)",
    )
    g.add_argument(
        "--alpha-step",
        choices=["max", "mse"],
        help="quantised alphas' step: the largest alpha is the top code (max, the default), or the step "
        "that rounds with the least squared error (mse: a few large alphas clipped)",
    )


def add_comparison(p: argparse.ArgumentParser, default_methods: list | None) -> None:
    g = p.add_argument_group(
        "ExSSNeT comparison",
        "each method learns the new tasks in sequence on its own model over the same backbone; the "
        "results file gets a key per method (exssnet-kkt as exssnet_kkt) with task_acc, acc_matrix, bwt, "
        "bytes_per_task and seconds_per_task",
    )
    g.add_argument(
        "--methods",
        type=names_of(EXSSNET_METHODS),
        default=default_methods,
        metavar="NAMES",
        help="comma-separated, of: supsup (masks only), ssnet (mask phase, then the weights under the "
        "task's mask trained), exssnet (only the weights no earlier mask holds trained: nothing "
        "forgotten), exssnet-kkt (exssnet, scores started from the earlier task a k-NN on "
        "penultimate features favours)",
    )
    g.add_argument("--weight-lr", type=finite_float, help="weight phase learning rate (Adam, no weight decay; default 1e-4)")
    g.add_argument("--weight-epochs", type=finite_float, help="weight phase epochs (default: the mask phase's)")
    g.add_argument("--weight-iterations", type=int, help="weight phase step cap (default: the mask phase's)")
    g.add_argument("--kkt-fraction", type=finite_float, help="fraction of the mask phase's batches KKT classifies (default 0.2)")
    g.add_argument("--kkt-k", type=int, help="k of KKT's k-NN (default 200)")
    g.add_argument(
        "--early-eval",
        type=parse_floats,
        metavar="FRACTIONS",
        help="fractions of each mask phase after which the task's accuracy is measured (default 0.1,0.25)",
    )


def add_measurements(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("measurements")
    g.add_argument(
        "--incorrect-tasks", type=int, default=10, help="incorrect-mask matrix over the first N new tasks' SupSup masks"
    )
    g.add_argument(
        "--matrix-every",
        type=int,
        default=1,
        metavar="N",
        help="accuracy matrix: a full row after every N-th task and the last, only the diagonal "
        "between (default 1: every row; the full matrix costs tasks²/2 evaluations)",
    )
    g.add_argument(
        "--basis-gn", type=int, default=0, metavar="N", help="basis-GN: learn the first N basis tasks again without their label"
    )
    g.add_argument(
        "--gn",
        type=names_of(inference.OBJECTIVES),
        default=[],
        metavar="OBJ",
        dest="gn_objectives",
        help="task inference without labels with these objectives, e.g. G,H",
    )
    g.add_argument(
        "--gn-methods",
        type=names_of(inference.METHODS),
        default=["oneshot"],
        help="oneshot,binary,exhaustive (exhaustive: every task's score, the lowest wins: exact)",
    )
    g.add_argument(
        "--gn-inputs",
        type=names_of(inference.INPUTS),
        default=["batch"],
        help="batch,first,mixed (first: from the first image; mixed: batches mixing every task's "
        "samples, a task inferred per sample)",
    )
    g.add_argument("--gn-batches", type=int, help="test batches of 128 per task for GN (default: all)")
    g.add_argument(
        "--gn-on", type=names_of(("supsup", "impresslearn")), default=["supsup", "impresslearn"], help="supsup,impresslearn"
    )


def add_running(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("running")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="cpu")
    g.add_argument(
        "--threads", type=positive_int, help="CPU threads (default: 1 for models under 2 M weights, else one per CPU; see doctor)"
    )
    g.add_argument("--cache", help="folder keeping learned masks, shared between runs")
    g.add_argument(
        "--out",
        default="results.json",
        help="results file; the same command again resumes it (from <out>.run/), another run on it is refused",
    )
    g.add_argument(
        "--restart", action="store_true", help="replace the results of a run with other settings at --out instead of refusing"
    )
    g.add_argument("--quiet", action="store_true", help="no progress bars or log lines")


def add_mnist_arguments(p: argparse.ArgumentParser) -> None:
    """`impresslearn mnist`: SupSup and ImpressLearn on PermutedMNIST, RotatedMNIST or SplitMNIST
    (split-cifar100 and split-imagenet are `impresslearn split`)."""
    add_data(p, MNIST_BENCHMARKS)
    add_backbone(p)
    add_tasks(p)
    add_impresslearn(p)
    add_measurements(p)
    add_running(p)


def add_compare_arguments(p: argparse.ArgumentParser) -> None:
    """`impresslearn compare`: SupSup, SSNeT, ExSSNeT and ExSSNeT + KKT side by side."""
    add_data(p, MNIST_BENCHMARKS)
    add_backbone(p)
    add_tasks(p)
    add_comparison(p, default_methods=list(EXSSNET_METHODS))
    add_running(p)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """`impresslearn run`, the older spelling of `mnist` and `compare` (and, with a split
    benchmark, `split`): every option of both; `--methods` makes it the comparison."""
    add_data(
        p,
        BENCHMARKS,
        note="split-cifar100 and split-imagenet are `impresslearn split` (see impresslearn split --help)",
    )
    add_backbone(p)
    add_tasks(p)
    add_impresslearn(p)
    add_comparison(p, default_methods=None)
    add_measurements(p)
    add_running(p)


def cmd_run(a: argparse.Namespace, argv: Sequence[str]) -> int:
    try:  # everything that can refuse the run happens here, before any training
        cfg = config_from_args(a, RunConfig)
        threads = use_threads(cfg.backbone(), a.threads)
        runner = Runner(cfg, a.out, command="impresslearn " + shlex.join(argv))
    except (ValueError, OSError) as err:  # (OutputError and CheckpointError are ValueErrors)
        raise Refused(with_flags(str(err), a.parser)) from err
    say_threads(threads, a.quiet)
    res = runner.run()
    print(methods_summary(res) if res.get("methods") else summary_table(res))
    print(f"results: {a.out}")
    return 0
