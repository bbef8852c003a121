"""Functions that test_distributed runs in each of several processes (torch.multiprocessing.spawn
imports this module in every child, so they live outside the test module)."""

import json
import os

import torch
import torch.distributed as dist
import torch.nn as nn

from impresslearn.continual import distributed as dd
from impresslearn.layers import random_basis


def _join(rank: int, world: int, port: int) -> dd.Dist:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    return dd.init_from_env(device="cpu", timeout_minutes=2)


def primitives(rank: int, world: int, port: int, out_dir: str) -> None:
    """GlobalBatchNorm2d on this rank's slice of a batch, masks gathered from their owners, bytes
    broadcast, and check_identical; writes what it saw for the test to compare."""
    d = _join(rank, world, port)
    torch.manual_seed(0)
    x = torch.randn(8, 3, 5, 5) * 3 + 1  # the global batch, the same on every rank
    bn = dd.sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3, affine=True)), d)
    assert isinstance(bn[0], dd.GlobalBatchNorm2d)
    with torch.no_grad():
        bn[0].weight.copy_(torch.tensor([1.0, 2.0, -1.0]))
    local = x.chunk(world)[rank].clone().requires_grad_(True)
    y = bn(local)
    (y * torch.arange(y.numel()).reshape(y.shape).chunk(1)[0]).sum().backward()
    result = {
        "y": y.detach().tolist(),
        "grad_x": local.grad.tolist(),
        "grad_w": bn[0].weight.grad.tolist(),
        "running_mean": bn[0].running_mean.tolist(),
        "running_var": bn[0].running_var.tolist(),
    }
    # gather_masks: rank r built masks r, r + world, ...; everyone ends with all of them in order.
    shapes = {"a": (5, 7), "b": (4, 2, 3, 3)}
    mine = {i: {n: random_basis(s, 1, 0.3, seed=10 * i + j) for j, (n, s) in enumerate(shapes.items())} for i in dd.owned(5, d)}
    basis = dd.gather_masks(mine, 5, shapes, d)
    result["basis"] = {n: p.words.tolist() for n, p in basis.items()}
    result["bytes"] = list(dd.broadcast_bytes(b"rank zero's file" if d.is_main else None, d))
    result["none"] = dd.broadcast_bytes(None, d) is None
    try:
        dd.check_identical([torch.tensor([float(rank)])], d)
        result["mismatch_caught"] = False
    except RuntimeError:
        result["mismatch_caught"] = True
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    dd.shutdown(d)
    assert not dist.is_initialized()
