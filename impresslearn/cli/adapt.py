"""`impresslearn adapt`: the KSM experiment (a pretrained conv net, or ViT, adapted to new MNIST tasks).

impresslearn adapt --data-root /data --out results/ksm/adapt.json
impresslearn adapt --arch vit --linear row --data-root /data --out results/vit/adapt.json
impresslearn adapt --methods ksm,piggyback --iterations 200 --out quick.json
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from ..data import ADAPT_TASKS
from ..experiments.adapt import ADAPT_ARCHS, AdaptConfig, AdaptRunner, adapt_network
from ..experiments.tables import adapt_table
from ..kernel_masks import LINEAR_GRAINS, REAL_FORMS, RELAXATIONS
from ..methods.ksm import METHODS
from ..threads import apply
from .options import Refused, config_from_args, finite_float, names_of, positive_int, with_flags


def add_adapt_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data and network")
    g.add_argument("--data-root", help="folder with MNIST/raw (torchvision layout); default: the subset shipped with the package")
    g.add_argument(
        "--arch",
        choices=ADAPT_ARCHS,
        help="the pretrained network: convnet (models.mnist_convnet, the default) or vit (models.mnist_vit, a small ViT)",
    )
    g.add_argument(
        "--tasks",
        type=names_of(ADAPT_TASKS),
        help=f"comma-separated, the first is pretrained on (default: {','.join(ADAPT_TASKS)})",
    )
    g = p.add_argument_group("methods and training")
    g.add_argument("--methods", type=names_of(METHODS), help=f"comma-separated, of {','.join(METHODS)} (default: all)")
    g.add_argument("--pretrain-iterations", type=positive_int, help="Adam steps on the first task (default 1500)")
    g.add_argument("--iterations", type=positive_int, help="Adam steps per adapted task and method (default 500)")
    g.add_argument("--batch-size", type=positive_int)
    g.add_argument("--finetune-lr", type=finite_float)
    g.add_argument("--head-lr", type=finite_float, help="every method's new head")
    g.add_argument("--piggyback-lr", type=finite_float, help="Piggyback's real scores (default 1e-4)")
    g.add_argument("--mask-lr", type=finite_float, help="the kernel masks' R (default 5e-2)")
    g = p.add_argument_group("the KSM mask (reconstructed choices: docs/results.md)")
    g.add_argument("--real", choices=REAL_FORMS, help="the real part: scale*sigmoid(R), scale*R (the default), or none")
    g.add_argument("--scale", type=finite_float, help="the real part's factor (default 1)")
    g.add_argument("--relax", choices=RELAXATIONS, help="softmax relaxation (KSM) or straight-through")
    g.add_argument("--temperature", type=finite_float, help="the softmax temperature at a task's first step (default 1)")
    g.add_argument("--temperature-end", type=finite_float, help="... and at its last (default 0.01)")
    g.add_argument("--init", type=finite_float, help="where R starts (default 1: every kernel kept)")
    g.add_argument("--linear", choices=LINEAR_GRAINS, help="linear layers: a value per weight or per row")
    g = p.add_argument_group("running")
    g.add_argument("--eval-samples", type=positive_int, help="test images per task (default 2000)")
    g.add_argument("--seed", type=int)
    g.add_argument(
        "--threads",
        type=positive_int,
        help="CPU threads (default: the rule of impresslearn run, 1 for this small net; see doctor)",
    )
    g.add_argument(
        "--out",
        default="adapt.json",
        help="results file; the same command again keeps the methods already done; another run on it is refused",
    )
    g.add_argument("--restart", action="store_true", help="replace the results of a run with other settings")
    g.add_argument("--quiet", action="store_true")


def cmd_adapt(a: argparse.Namespace, argv: Sequence[str]) -> int:
    try:  # everything that can refuse the run happens here, before any training
        cfg = config_from_args(a, AdaptConfig)
        runner = AdaptRunner(cfg, a.out, command="impresslearn " + shlex.join(argv))
    except (ValueError, OSError) as err:
        raise Refused(with_flags(str(err), a.parser)) from err
    weights = sum(p.numel() for p in adapt_network(cfg).parameters() if p.dim() > 1)
    choice = apply(weights, a.threads)
    if not a.quiet:
        print(f"impresslearn: {choice.threads} CPU thread{'s' if choice.threads > 1 else ''} ({choice.reason})", file=sys.stderr)
    res = runner.run()
    print(adapt_table(res))
    print(f"results: {a.out}")
    return 0
