"""Serve a SupSup model's tasks to a stream of requests that mix them, some without a task.

Three PermutedMNIST tasks are learned on the MNIST subset that ships with the package (a SupSup
mask each, SupSup's settings, one epoch: a minute on one core), then a stream of test images from
all three arrives in random order, half of them with their task id and half without. Each batch of
128 requests is answered in one forward, each image under its own task; a request without a task
has it inferred first (exhaustive by default: every task's entropy over the packed bits; or
`--method oneshot`: each image's own gradient with respect to the superposition).

    OMP_NUM_THREADS=1 python examples/serve_tasks.py
    python examples/serve_tasks.py --method oneshot --requests 3000 --unlabelled 1.0
"""

from __future__ import annotations

import argparse
import time

import torch
from tqdm.auto import tqdm

from impresslearn.continual import masks, supermask_model
from impresslearn.continual.serving import serve
from impresslearn.continual.training import TrainConfig
from impresslearn.data import PermutedMNIST, load_subset


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="serve a SupSup model's tasks to a stream of mixed requests")
    p.add_argument("--tasks", type=int, default=3)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--unlabelled", type=float, default=0.5, help="fraction of requests that come without a task")
    p.add_argument("--method", choices=("exhaustive", "oneshot"), default="exhaustive")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=float, default=1.0, help="training epochs per task (on the shipped subset)")
    args = p.parse_args(argv)

    torch.manual_seed(0)
    stream = PermutedMNIST(load_subset(), num_tasks=args.tasks)
    cfg, _ = masks.preset("supsup")
    train = TrainConfig(optimizer="rmsprop", lr=1e-4, epochs=args.epochs, batch_size=128)
    model = supermask_model(cfg, num_tasks=args.tasks)
    for t in range(args.tasks):
        masks.train_mask(model, t, stream.train(t, train.batch_size, seed=t), train, progress=False)
    model.eval()

    # the stream: test images of every task, shuffled, some without their task
    xs, ys, ts = [], [], []
    for t in range(args.tasks):
        for x, y in stream.test(t, 1000):
            xs.append(x)
            ys.append(y)
            ts.append(torch.full((y.shape[0],), t))
    x, y, t = torch.cat(xs), torch.cat(ys), torch.cat(ts)
    order = torch.randperm(y.shape[0], generator=torch.Generator().manual_seed(1))[: args.requests]
    hidden = torch.rand(order.shape[0], generator=torch.Generator().manual_seed(2)) < args.unlabelled
    requests = [(x[i], None if h else int(t[i])) for i, h in zip(order.tolist(), hidden.tolist())]

    correct = found = inferred = 0
    start = time.perf_counter()
    with tqdm(total=len(requests), desc="serving", unit="req") as bar:
        for answer in serve(model, requests, batch_size=args.batch_size, method=args.method, on_batch=bar.update):
            i = order[answer.index]
            correct += int(answer.output[: cfg.classes].argmax()) == int(y[i])
            if answer.inferred:
                inferred += 1
                found += answer.task == int(t[i])
    seconds = time.perf_counter() - start
    n = len(requests)
    print(f"{n} requests over {args.tasks} tasks in batches of {args.batch_size}: {n / seconds:,.0f} requests/s")
    right = found / max(inferred, 1)
    print(f"accuracy {correct / n:.4f}; {inferred} requests without a task, {right:.4f} of them inferred right ({args.method})")


if __name__ == "__main__":
    main()
