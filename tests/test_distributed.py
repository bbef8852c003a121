"""Several processes with torch.distributed on CPUs (gloo, loopback only): the building blocks
against one process, and `impresslearn run` under torchrun against the same run in one process
(basis masks built in parallel bit-identical; data-parallel alphas within tolerance)."""

import json
import os
import socket
import subprocess
import sys

import distributed_workers
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn
from safetensors.torch import load_file

from impresslearn.continual import distributed as dd
from impresslearn.layers import random_basis

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
    reason="torch.distributed with gloo is not available",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_primitives_across_two_processes(tmp_path):
    mp.spawn(distributed_workers.primitives, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    # One process with the whole batch and a plain BatchNorm2d.
    torch.manual_seed(0)
    x = (torch.randn(8, 3, 5, 5) * 3 + 1).requires_grad_(True)
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, -1.0]))
    y = bn(x)
    weights = torch.cat([torch.arange(y[:4].numel()).reshape(y[:4].shape)] * 2).float()
    (y * weights).sum().backward()
    close = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([torch.tensor(r["y"]) for r in ranks]), y.detach(), **close)
    torch.testing.assert_close(torch.cat([torch.tensor(r["grad_x"]) for r in ranks]), x.grad, **close)
    # Each rank holds the gradient of its own slice's loss; DDP would average them: the sum is the whole's.
    torch.testing.assert_close(sum(torch.tensor(r["grad_w"]) for r in ranks), bn.weight.grad, **close)
    for r in ranks:
        torch.testing.assert_close(torch.tensor(r["running_mean"]), bn.running_mean, **close)
        torch.testing.assert_close(torch.tensor(r["running_var"]), bn.running_var, **close)
    shapes = {"a": (5, 7), "b": (4, 2, 3, 3)}
    for j, (n, s) in enumerate(shapes.items()):
        want = torch.cat([random_basis(s, 1, 0.3, seed=10 * i + j).words for i in range(5)])
        assert all(torch.equal(torch.tensor(r["basis"][n], dtype=torch.int32), want) for r in ranks)
    assert all(bytes(r["bytes"]) == b"rank zero's file" and r["none"] and r["mismatch_caught"] for r in ranks)


def test_one_process_is_a_no_op():
    d = dd.Dist()
    assert not d.active and d.is_main and dd.owned(3, d) == [0, 1, 2]
    model = nn.Sequential(nn.BatchNorm2d(2))
    assert dd.sync_batchnorm(model, d) is model and type(model[0]) is nn.BatchNorm2d
    with dd.data_parallel(model, list(model.parameters()), d) as net:
        assert net is model
    assert dd.broadcast_bytes(b"x", d) == b"x" and dd.all_gather_objects(1, d) == [1]


ARGS = [
    "run",
    "--benchmark",
    "split-cifar100",
    "--synthetic",
    "--synthetic-train",
    "8",
    "--synthetic-test",
    "2",
    "--width",
    "4",
    "-K",
    "3",
    "--new-tasks",
    "1",
    "--mask-iterations",
    "3",
    "--alpha-iterations",
    "4",
    "--batch-size",
    "8",
    "--eval-batches",
    "1",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--quiet",
]


def test_torchrun_two_processes_match_one(tmp_path):
    """Basis masks shared out between 2 processes are bit-identical to one process's; the SupSup
    mask and the alphas, trained data-parallel on the same global batches, agree within tolerance."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one = subprocess.run(
        [sys.executable, "-m", "impresslearn.cli", *ARGS, "--out", "one.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    port = free_port()
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "1",
            "--nproc-per-node",
            "2",
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(port),
            "-m",
            "impresslearn.cli",
            *ARGS,
            "--out",
            "two.json",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    r1, r2 = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert r1["distributed"]["world_size"] == 1 and r2["distributed"]["world_size"] == 2
    b1, b2 = (load_file(tmp_path / f"{n}.json.run" / "basis.safetensors") for n in ("one", "two"))
    assert b1.keys() == b2.keys() and all(torch.equal(b1[k], b2[k]) for k in b1)
    assert r1["supsup"]["basis_task_acc"] == r2["supsup"]["basis_task_acc"]
    m1, m2 = (load_file(tmp_path / f"{n}.json.run" / "impress.safetensors") for n in ("one", "two"))
    alphas = [k for k in m1 if k.endswith(".alpha")]
    assert len(alphas) == 21
    for k in alphas:
        torch.testing.assert_close(m2[k], m1[k], rtol=1e-4, atol=1e-5, msg=k)
        assert not torch.equal(m1[k], torch.full_like(m1[k], 1 / 3))  # they did train
    for k in (k for k in m1 if k.endswith(("running_mean", "running_var"))):
        torch.testing.assert_close(m2[k], m1[k], rtol=1e-4, atol=1e-5, msg=k)
