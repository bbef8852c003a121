"""SupSup, ImpressLearn and ExSSNeT (impresslearn.avalanche) beside Avalanche's own PackNet, on the same
Avalanche streams: PermutedMNIST and SplitMNIST, 5 experiences each, task-incremental.

Every method gets the same LeNet-300-100 (784-300-100-10, no biases), the same experiences
(Avalanche's benchmarks, read from local files, cut to `--train-per-exp` / `--test-per-exp`
samples per experience) and the same epochs per experience: PackNet trains its weights for
`epochs - 1` epochs, prunes, and fine-tunes one more (Avalanche refuses post-pruning epochs >=
training epochs, so 2 is its least), SupSup trains a mask for `epochs`, ImpressLearn masks for
the first `--basis` experiences and alphas for the rest, ExSSNeT a mask for `epochs` and then its
exclusive weights for `--weight-epochs` (Adam at `--weight-lr`, 1e-2: the rate results/exssnet
chose on a validation split). After each experience the whole test
stream is evaluated, which fills Avalanche's accuracy matrix, forgetting and BWT; at the end SupSup
and ImpressLearn are evaluated once more without task labels (the library's exhaustive task
inference picks the task of each test batch of 512).

Bytes are measured on the trained objects: what must be kept, beyond a seed, to run every
task (packed masks; basis and alphas; ExSSNeT's packed masks and one float per weight some mask
holds, beside the seed; PackNet's float32 weights and its uint8 task index).

    OMP_NUM_THREADS=1 python results/avalanche/compare.py --data-root ../shared/data --out results/avalanche/compare.json

`--merge` adds the rows of `--methods` to an existing `--out` run with the same settings (one
method rerun or added without rerunning the others).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings

import torch

from impresslearn import convert, models
from impresslearn.avalanche import ExSSNeT, ImpressLearn, SupSup, evaluation_plugin
from impresslearn.avalanche.benchmarks import permuted_mnist, split_mnist
from impresslearn.continual import TrainConfig
from impresslearn.continual.storage import exssnet_bytes
from impresslearn.layers import impress_layers, supermask_layers
from impresslearn.methods.exssnet import current_masks

METHODS = ("supsup", "impress-channel", "impress-layer", "exssnet", "packnet")


def supermask_net(seed: int):
    # the library's LeNet backbone ("topk-0.1": top-10 % masks, density-scaled signed constant)
    return convert(models.lenet_300_100(), "supermask", density=0.1, init="signed_constant", scale=True, seed=seed)


def packnet_strategy(args, n_exp: int):
    from avalanche.models.packnet import PackNetModel
    from avalanche.training import PackNet

    torch.manual_seed(args.seed)
    model = PackNetModel(models.lenet_300_100())
    for m in model.modules():
        # Avalanche 0.6.0 marks a Linear without bias as having one and then fails to freeze
        # it (`None.requires_grad`): say there is none
        if hasattr(m, "has_bias") and getattr(getattr(m, "wrappee", None), "bias", 0) is None:
            m.has_bias = False
    # each task keeps an equal share of the weights left free: 1/(n - i) of them
    prune = [1 - 1 / (n_exp - i) for i in range(n_exp)]
    # plain SGD: a frozen weight's gradient is zeroed by PackNet's hook, and without momentum
    # or weight decay a zero gradient leaves it exactly as it is
    opt = torch.optim.SGD(model.parameters(), lr=args.packnet_lr)
    return PackNet(
        model=model,
        optimizer=opt,
        post_prune_epochs=1,
        prune_proportion=prune,
        train_mb_size=128,
        train_epochs=args.epochs,
        eval_mb_size=512,
        evaluator=evaluation_plugin(),
    )


def strategy_for(method: str, args, n_exp: int):
    masks = TrainConfig(optimizer="rmsprop", lr=3e-4, epochs=args.epochs, batch_size=128)
    alphas = TrainConfig(optimizer="adam", lr=1e-2, epochs=args.epochs, batch_size=128)
    if method == "supsup":
        return SupSup(model=supermask_net(args.seed), masks=masks, eval_mb_size=512)
    if method == "exssnet":
        weights = TrainConfig(optimizer="adam", lr=args.weight_lr, epochs=args.weight_epochs, batch_size=128)
        return ExSSNeT(model=supermask_net(args.seed), masks=masks, weights=weights, eval_mb_size=512)
    if method.startswith("impress"):
        return ImpressLearn(
            model=supermask_net(args.seed),
            basis_size=args.basis,
            per_channel=method == "impress-channel",
            masks=masks,
            alphas=alphas,
            eval_mb_size=512,
        )
    return packnet_strategy(args, n_exp)


def kept_bytes(method: str, strategy) -> dict:
    """What must be kept to run every task, measured on the trained model."""
    if method == "packnet":
        weights = sum(
            m.wrappee.weight.numel() * m.wrappee.weight.element_size()
            for m in strategy.model.modules()
            if hasattr(m, "task_index")
        )
        index = sum(
            m.task_index.numel() * m.task_index.element_size() for m in strategy.model.modules() if hasattr(m, "task_index")
        )
        return {"total": weights + index, "weights": weights, "task_index": index, "per_new_task": 0}
    net = strategy.model.net
    if method == "exssnet":
        # beside the seed: each task's packed mask, and one float per weight its mask covers
        # first (the weight phases change no other); positions follow from the masks
        layers = supermask_layers(net)
        used = {n: torch.zeros_like(m.weight, dtype=torch.bool) for n, m in layers}
        new = []
        for t in range(layers[0][1].num_tasks):
            mask = current_masks(net, t)
            new.append(sum(int((mask[n] & ~used[n]).sum()) for n in mask))
            for n in mask:
                used[n] |= mask[n]
        per_task = exssnet_bytes({n: tuple(m.weight.shape) for n, m in layers}, new)
        masks = sum(m.export_masks().nbytes for _, m in layers)
        return {
            "total": sum(per_task),
            "masks": masks,
            "trained_weights": sum(per_task) - masks,
            "new_entries": new,
            "per_new_task": per_task[-1],
        }
    if supermask_layers(net) and not impress_layers(net):
        masks = sum(m.export_masks().nbytes for _, m in supermask_layers(net))
        tasks = supermask_layers(net)[0][1].num_tasks
        return {"total": masks, "masks": masks, "per_new_task": masks // tasks}
    basis = sum(m.basis.nbytes for _, m in impress_layers(net))
    layers = impress_layers(net)
    new_alpha = sum(m.alphas[-1].numel() * 4 for _, m in layers)
    new_tasks = layers[0][1].num_tasks - layers[0][1].basis_size
    return {"total": basis + new_tasks * new_alpha, "basis": basis, "per_new_task": new_alpha}


def run_method(method: str, bm, args) -> dict:
    n_exp = len(bm.train_stream)
    # each method from the same seed: the same data order, whichever ran before it, so the
    # ImpressLearn basis masks are SupSup's first masks exactly
    torch.manual_seed(args.seed)
    strategy = strategy_for(method, args, n_exp)
    train_s = train_cpu = 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    for exp in bm.train_stream:
        t1, c1 = time.perf_counter(), time.process_time()
        strategy.train(exp)
        train_s += time.perf_counter() - t1
        train_cpu += time.process_time() - c1
        strategy.eval(bm.test_stream)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    m = strategy.evaluator.get_last_metrics()
    final = [float(m[f"Top1_Acc_Exp/eval_phase/test_stream/Task{t:03d}/Exp{t:03d}"]) for t in range(n_exp)]
    matrix = m["EvalStream/Acc_Matrix"].tolist()
    out = {
        "final_acc": final,
        "mean_final_acc": sum(final) / n_exp,
        "forgetting": float(m["StreamForgetting/eval_phase/test_stream"]),
        "bwt": float(m["StreamBWT/eval_phase/test_stream"]),
        "acc_matrix": matrix,
        "bytes": kept_bytes(method, strategy),
        "bytes_per_task": kept_bytes(method, strategy)["total"] / n_exp,
        # the machine is shared: wall time includes waiting for a core, CPU time does not
        "train_s": round(train_s, 1),
        "train_cpu_s": round(train_cpu, 1),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
    }
    if method != "packnet":
        # the same test stream without task labels: the library's exhaustive task inference
        # picks each batch's task (PackNet needs the label); read after the metrics above,
        # since this evaluation writes the accuracy matrix's last row again
        strategy.model.infer_tasks = True
        strategy.eval(bm.test_stream)
        m = strategy.evaluator.get_last_metrics()
        inferred = [float(m[f"Top1_Acc_Exp/eval_phase/test_stream/Task{t:03d}/Exp{t:03d}"]) for t in range(n_exp)]
        out["final_acc_tasks_inferred"] = inferred
        out["mean_final_acc_tasks_inferred"] = sum(inferred) / n_exp
    print(
        f"  {method}: mean final acc {out['mean_final_acc']:.3f}, forgetting {out['forgetting']:.4f}, "
        f"{out['bytes_per_task']:.0f} B/task, {wall:.0f} s ({cpu:.0f} s CPU)",
        flush=True,
    )
    return out


LABELS = {
    "supsup": "SupSup",
    "impress-channel": "ImpressLearn, per-channel alpha",
    "impress-layer": "ImpressLearn, per-layer alpha",
    "exssnet": "ExSSNeT",
    "packnet": "PackNet (Avalanche)",
}


def markdown(results: dict) -> str:
    """One table per benchmark: the rows of docs/avalanche.md."""
    out = []
    basis = results["config"]["basis"]
    for name, methods in results["benchmarks"].items():
        n = len(next(iter(methods.values()))["final_acc"])
        out += [
            f"**{name}**",
            "",
            "| method | final accuracy per experience (%) | mean | mean, no task labels | forgetting | BWT "
            "| bytes per task | bytes per added task | train CPU s | wall s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for method, r in sorted(methods.items(), key=lambda kv: METHODS.index(kv[0])):
            label = LABELS[method] + (f", K = {basis}" if method.startswith("impress") else "")
            accs = " / ".join(f"{100 * a:.1f}" for a in r["final_acc"])
            inferred = r.get("mean_final_acc_tasks_inferred")
            out.append(
                f"| {label} | {accs} | {100 * r['mean_final_acc']:.1f} | "
                f"{'n/a' if inferred is None else f'{100 * inferred:.1f}'} | {r['forgetting']:.4f} | {r['bwt']:.4f} "
                f"| {r['bytes_per_task']:,.0f} | {r['bytes']['per_new_task']:,} | {r['train_cpu_s']:.0f} "
                f"| {r['wall_s']:.0f} |"
            )
        out += ["", f"({n} experiences.)", ""]
    return "\n".join(out)


# the settings a merged run must share with the run it adds rows to
SHARED = ("experiences", "train_per_exp", "test_per_exp", "epochs", "basis", "seed", "threads")


def merged_into(args, new: dict) -> dict:
    """The run in `args.out`, with this run's command and settings recorded beside its own."""
    with open(args.out) as f:
        old = json.load(f)
    differ = [k for k in SHARED if old["config"].get(k) != vars(args)[k]]
    if differ:
        raise SystemExit(f"--merge: {args.out} was run with other settings ({', '.join(differ)})")
    old.setdefault("merged", []).append({k: new[k] for k in ("command", "config", "machine")})
    return old


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", help="folder holding MNIST/raw/*-ubyte (torchvision's layout)")
    p.add_argument("--table", metavar="JSON", help="print the markdown tables of a results file, and run nothing")
    p.add_argument("--benchmarks", default="permuted,split")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--experiences", type=int, default=5)
    p.add_argument("--train-per-exp", type=int, default=None, help="training samples kept per experience (all: None)")
    p.add_argument("--test-per-exp", type=int, default=None, help="test samples kept per experience (all: None)")
    p.add_argument("--epochs", type=int, default=2, help="per experience, every method (PackNet: the last one after pruning)")
    p.add_argument("--weight-epochs", type=int, default=1, help="ExSSNeT: weight-phase epochs, after the mask's")
    p.add_argument("--weight-lr", type=float, default=1e-2, help="ExSSNeT: the weight phase's Adam rate")
    p.add_argument("--merge", action="store_true", help="add these methods' rows to the existing --out run")
    p.add_argument("--basis", type=int, default=3, help="ImpressLearn: experiences whose masks form the basis")
    p.add_argument("--packnet-lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out")
    args = p.parse_args(argv)
    if args.table:
        with open(args.table) as f:
            print(markdown(json.load(f)))
        return
    if not args.data_root or not args.out:
        p.error("a run needs --data-root and --out")
    methods = args.methods.split(",")
    if set(methods) - set(METHODS):
        p.error(f"--methods takes {', '.join(METHODS)}")
    if args.epochs < 2 and "packnet" in methods:
        p.error("PackNet needs at least 2 epochs: it trains, prunes, then fine-tunes at least one")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)  # Avalanche's keyword-argument notices
    builders = {"permuted": permuted_mnist, "split": split_mnist}
    results = {
        "command": " ".join(["python", *sys.argv]),
        "config": vars(args),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": args.threads,
        },
        "benchmarks": {},
    }
    try:
        import avalanche

        results["machine"]["avalanche"] = avalanche.__version__
    except AttributeError:
        pass
    if args.merge:
        results = merged_into(args, results)
    for name in args.benchmarks.split(","):
        torch.manual_seed(args.seed)
        bm = builders[name](
            args.experiences, args.data_root, seed=args.seed, train_per_exp=args.train_per_exp, test_per_exp=args.test_per_exp
        )
        print(
            f"{name}: {args.experiences} experiences, {len(bm.train_stream[0].dataset)} training and "
            f"{len(bm.test_stream[0].dataset)} test samples each",
            flush=True,
        )
        rows = results["benchmarks"].setdefault(name, {})
        rows.update({m: run_method(m, bm, args) for m in methods})
        with open(args.out, "w") as f:  # after each benchmark: a stopped run keeps what it finished
            json.dump(results, f, indent=1)
    print(markdown(results))


if __name__ == "__main__":
    main()
