"""impresslearn's SupSup, ImpressLearn, ExSSNeT and SSNeT as Avalanche strategies, on Avalanche's
PermutedMNIST or SplitMNIST read from local files (no internet needed).

    pip install -e ".[avalanche]"
    OMP_NUM_THREADS=1 python examples/avalanche_permuted.py --data-root ../shared/data
    python examples/avalanche_permuted.py --data-root ../shared/data --benchmark split --strategy supsup --infer-tasks
    python examples/avalanche_permuted.py --data-root ../shared/data --strategy exssnet   # mask, then exclusive weights

`--data-root` holds MNIST in torchvision's layout (`MNIST/raw/train-images-idx3-ubyte`, ...).
`--train-per-exp` keeps that many training samples per experience (default: a quick 5,000, one
epoch: accuracies well below full-data runs; results/avalanche/compare.py is the measured
comparison with Avalanche's PackNet, docs/avalanche.md).
`--infer-tasks` evaluates without task labels: the library's task inference picks each test
batch's task (SupSup's GN scenario).
"""

from __future__ import annotations

import argparse
import warnings

import torch
from avalanche.logging import InteractiveLogger

from impresslearn import convert, models
from impresslearn.avalanche import ExSSNeT, ImpressLearn, MaskModule, SSNeT, SupSup, TaskInference, evaluation_plugin
from impresslearn.avalanche.benchmarks import permuted_mnist, split_mnist
from impresslearn.continual import TrainConfig


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="SupSup / ImpressLearn / ExSSNeT on Avalanche's MNIST streams")
    p.add_argument("--data-root", required=True)
    p.add_argument("--benchmark", choices=("permuted", "split"), default="permuted")
    p.add_argument("--strategy", choices=("supsup", "impresslearn", "exssnet", "ssnet"), default="impresslearn")
    p.add_argument("--experiences", type=int, default=5)
    p.add_argument("--basis", type=int, default=3, help="ImpressLearn: the first experiences learn masks, the rest alphas")
    p.add_argument("--per-channel", action="store_true", help="ImpressLearn: alphas per output channel, not per layer")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--weight-epochs", type=int, default=1, help="ExSSNeT / SSNeT: weight-phase epochs, after the mask's")
    p.add_argument(
        "--weight-lr",
        type=float,
        default=1e-2,
        help="ExSSNeT / SSNeT: the weight phase's Adam rate (results/exssnet chose 1e-2 on a validation split)",
    )
    p.add_argument("--train-per-exp", type=int, default=5000)
    p.add_argument("--test-per-exp", type=int, default=1000)
    p.add_argument("--infer-tasks", action="store_true", help="evaluate without task labels (task inference)")
    p.add_argument("--verbose", action="store_true", help="Avalanche's interactive logger")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # LeNet-size work: one thread per process is fastest on a busy machine
    warnings.filterwarnings("ignore", category=UserWarning)

    make = permuted_mnist if args.benchmark == "permuted" else split_mnist
    bm = make(args.experiences, args.data_root, train_per_exp=args.train_per_exp, test_per_exp=args.test_per_exp)

    # any convert()ed model: here LeNet-300-100 with top-10 % masks over a seeded frozen backbone
    net = convert(models.lenet_300_100(), "supermask", density=0.1, init="signed_constant", scale=True, seed=0)
    model = MaskModule(net, TaskInference(objective="H", method="exhaustive"), infer_tasks=args.infer_tasks)
    masks = TrainConfig(optimizer="rmsprop", lr=3e-4, epochs=args.epochs, batch_size=128)
    alphas = TrainConfig(optimizer="adam", lr=1e-2, epochs=args.epochs, batch_size=128)
    # the weight phase: Adam without weight decay, so weights outside the trained set never move
    weights = TrainConfig(optimizer="adam", lr=args.weight_lr, epochs=args.weight_epochs, batch_size=128)
    evaluator = evaluation_plugin([InteractiveLogger()] if args.verbose else None)
    if args.strategy == "supsup":
        strategy = SupSup(model=model, masks=masks, evaluator=evaluator)
    elif args.strategy in ("exssnet", "ssnet"):
        method = ExSSNeT if args.strategy == "exssnet" else SSNeT
        strategy = method(model=model, masks=masks, weights=weights, evaluator=evaluator)
    else:
        strategy = ImpressLearn(
            model=model, basis_size=args.basis, per_channel=args.per_channel, masks=masks, alphas=alphas, evaluator=evaluator
        )

    for exp in bm.train_stream:
        strategy.train(exp)
        strategy.eval(bm.test_stream[: exp.current_experience + 1])  # the experiences seen so far
        print(f"experience {exp.current_experience} (task label {exp.task_label}) trained", flush=True)

    m = strategy.evaluator.get_last_metrics()
    n = len(bm.train_stream)
    print("accuracy matrix (row: after training experience i; column: experience j)")
    for row in m["EvalStream/Acc_Matrix"].tolist():
        print("  " + " ".join(f"{a:6.3f}" for a in row))
    final = [m[f"Top1_Acc_Exp/eval_phase/test_stream/Task{t:03d}/Exp{t:03d}"] for t in range(n)]
    print(f"final accuracy per experience: {[round(a, 3) for a in final]}, mean {sum(final) / n:.3f}")
    print(f"forgetting {m['StreamForgetting/eval_phase/test_stream']:.4f}, BWT {m['StreamBWT/eval_phase/test_stream']:.4f}")


if __name__ == "__main__":
    main()
