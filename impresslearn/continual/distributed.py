"""Several processes, one machine or many, with torch.distributed (launched by `torchrun`).

    init_from_env()                   the process group from torchrun's environment (RANK,
                                      WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): NCCL and
                                      one GPU per process where CUDA is present, else gloo on CPUs;
                                      a single-process `Dist` when there is no such environment
    data_parallel(model, params, d)   DistributedDataParallel over the parameters being trained
                                      (a task's scores or alphas): gradients averaged across ranks
    sync_batchnorm(model, d)          BatchNorm layers that normalise with the statistics of the
                                      global batch (all ranks), on CPUs and GPUs alike, so that a
                                      data-parallel run computes what one process would
    owner(i, d) / gather_masks(...)   building a basis in parallel: mask i belongs to rank
                                      i mod world_size; the packed masks are then broadcast so
                                      that every rank holds the whole basis
    check_identical(tensors, d)       fail early if ranks disagree on tensors they must share

Frozen backbones are rebuilt from their seeds on every rank, so nothing large is broadcast at
start (DDP's own initial broadcast is skipped and replaced by `check_identical`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import inspect
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from torch import Tensor

from ..format import PackedMasks, num_words, rows_cols
from ..layers import set_submodule


@dataclasses.dataclass
class Dist:
    """Where this process stands: rank, world size, its device and the process groups."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    bn_group: Any = None  # a group of its own for BatchNorm statistics (see GlobalBatchNorm2d)

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def comm_device(self) -> torch.device:
        """Where tensors must be for collectives: NCCL talks GPU memory, gloo CPU memory."""
        return self.device if self.backend == "nccl" else torch.device("cpu")

    def describe(self) -> dict:
        return {"world_size": self.world_size, "rank": self.rank, "backend": self.backend, "device": str(self.device)}


def init_from_env(device: str | None = None, backend: str | None = None, timeout_minutes: float = 30.0) -> Dist:
    """Join the process group torchrun describes in the environment; a single-process `Dist`
    if there is none. `device`: "cpu" forces CPUs (gloo); by default GPU `LOCAL_RANK` if CUDA
    is available."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and not dist.is_initialized():
        return Dist(device=torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    backend = backend or ("nccl" if use_cuda else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    d = Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, device=dev, backend=backend)
    d.bn_group = dist.new_group(backend=backend)
    if d.rank != rank:
        raise RuntimeError(f"process group rank {d.rank} differs from RANK={rank}")
    return d


def shutdown(d: Dist, wait: bool = True) -> None:
    """Leave the process group (after the others reach this point too, if `wait`)."""
    if d.active and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


# --------------------------------------------------------------------------- batch norm


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose gradient is again the sum over ranks: every rank's output depends on
    every rank's input. (torch.distributed.nn's version of this is deprecated.)"""

    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:
        ctx.group = group
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _AllReduceSum.apply(grad, ctx.group), None


def differentiable_all_reduce(x: Tensor, group=None) -> Tensor:
    return _AllReduceSum.apply(x, group)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the batch summed over all ranks.

    The sums are all-reduced with an autograd-aware collective, so gradients flow through the
    statistics to every rank's inputs, as in one process holding the whole batch. (PyTorch's
    SyncBatchNorm does this on GPUs only.) Outside training, or alone, it is a BatchNorm2d.
    """

    group: Any = None

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and self.group is not None and dist.is_initialized()):
            return super().forward(x)
        if x.dim() != 4:
            raise ValueError(f"expected a 4-D input, got shape {tuple(x.shape)}")
        # Statistics in fp32 at least (a count like 96 * 56 * 56 is not exact in half precision).
        xs = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        local = torch.tensor([x.shape[0] * x.shape[2] * x.shape[3]], dtype=xs.dtype, device=x.device)
        total = differentiable_all_reduce(torch.cat([xs.sum((0, 2, 3)), local]), group=self.group)
        n = total[-1].detach()
        mean = total[:-1] / n
        centred = xs - mean.view(1, -1, 1, 1)
        var = differentiable_all_reduce((centred * centred).sum((0, 2, 3)), group=self.group) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1).clamp(min=1)), alpha=m)
        out = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out.to(x.dtype)


def sync_batchnorm(model: nn.Module, d: Dist) -> nn.Module:
    """Swap (in place) every nn.BatchNorm2d of `model`, those inside per-task BatchNorm
    included, for a `GlobalBatchNorm2d` that keeps its statistics; no-op for one process.
    Call it after the model has all its tasks (layers added later are plain BatchNorm2d)."""
    if not d.active:
        return model
    for name, bn in [(n, m) for n, m in model.named_modules() if type(m) is nn.BatchNorm2d]:
        g = GlobalBatchNorm2d(
            bn.num_features,
            bn.eps,
            bn.momentum,
            bn.affine,
            bn.track_running_stats,
            device=bn.running_mean.device if bn.running_mean is not None else None,
        )
        g.load_state_dict(bn.state_dict())
        g.group = d.bn_group
        set_submodule(model, name, g)
    return model


# --------------------------------------------------------------------------- data parallel

# Buffers (backbone weights, packed bases, BatchNorm statistics) are never broadcast: the
# backbone is rebuilt from seeds and the statistics come from the global batch. Newer torch
# names the option forward_sync_buffers; torch 2.11 knows only broadcast_buffers.
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


@contextlib.contextmanager
def data_parallel(model: nn.Module, params: Sequence[Tensor], d: Dist) -> Iterator[nn.Module]:
    """Yield `model` wrapped in DistributedDataParallel over `params` only (or `model` itself
    for one process). The other parameters are frozen meanwhile (DDP reduces every parameter
    that requires a gradient) and unfrozen afterwards."""
    if not d.active:
        yield model
        return
    ids = {id(p) for p in params}
    before = {id(p): p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)
    check_identical(list(params), d, what="trained parameters")
    ddp = nn.parallel.DistributedDataParallel(
        model, device_ids=[d.device.index] if d.device.type == "cuda" else None, init_sync=False, **_NO_BUFFER_SYNC
    )
    try:
        yield ddp
    finally:
        del ddp
        for p in model.parameters():
            p.requires_grad_(before[id(p)])


def check_identical(tensors: Sequence[Tensor], d: Dist, what: str = "tensors") -> None:
    """Raise if the ranks hold different values (compared through float64 sums and sums of squares)."""
    if not d.active or not tensors:
        return
    sig = torch.stack([torch.stack([t.detach().double().sum(), t.detach().double().square().sum()]) for t in tensors])
    sig = sig.to(d.comm_device)
    lo, hi = sig.clone(), sig.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not torch.equal(lo, hi):
        raise RuntimeError(
            f"the {d.world_size} processes hold different {what}; they must start from the same seeds and checkpoints"
        )


def all_gather_objects(obj: Any, d: Dist) -> list:
    """Every rank's `obj` (small JSON-like values: accuracies, losses), in rank order."""
    if not d.active:
        return [obj]
    out: list = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


# --------------------------------------------------------------------------- a basis in parallel


def owner(index: int, d: Dist) -> int:
    """The rank that trains basis mask `index` (round robin)."""
    return index % d.world_size


def owned(count: int, d: Dist) -> list[int]:
    return [i for i in range(count) if owner(i, d) == d.rank]


def gather_masks(
    mine: Mapping[int, Mapping[str, PackedMasks]], count: int, shapes: Mapping[str, Sequence[int]], d: Dist
) -> dict[str, PackedMasks]:
    """The whole basis on every rank: mask i (a dict layer -> one-mask PackedMasks) is taken from
    `mine[i]` on its owner and broadcast from there, one flat int32 buffer per mask."""
    names = list(shapes)
    sizes = []
    for n in names:
        rows, cols = rows_cols(shapes[n])
        sizes.append(rows * num_words(cols))
    per_layer: dict[str, list[Tensor]] = {n: [] for n in names}
    for i in range(count):
        src = owner(i, d)
        if src == d.rank:
            if i not in mine:
                raise KeyError(f"rank {d.rank} owns basis mask {i} but has not trained it")
            flat = torch.cat([mine[i][n].words.reshape(-1).cpu() for n in names])
        else:
            flat = torch.empty(sum(sizes), dtype=torch.int32)
        if d.active:
            buf = flat.to(d.comm_device)
            dist.broadcast(buf, src=src)
            flat = buf.cpu()
        for n, part in zip(names, flat.split(sizes)):
            rows, cols = rows_cols(shapes[n])
            per_layer[n].append(part.reshape(1, rows, num_words(cols)))
    return {n: PackedMasks(torch.cat(per_layer[n]), shapes[n]) for n in names}


def average_(tensors: Sequence[Tensor], d: Dist) -> None:
    """Average tensors across ranks in place (e.g. BatchNorm statistics kept per rank)."""
    if not d.active:
        return
    for t in tensors:
        buf = t.detach().to(d.comm_device, dtype=torch.float64)
        dist.all_reduce(buf)
        t.copy_((buf / d.world_size).to(t.device, t.dtype))


def broadcast_bytes(data: bytes | None, d: Dist, src: int = 0) -> bytes | None:
    """`data` as rank `src` has it (None included) on every rank: how one file read by the main
    process (a checkpoint) reaches the others, with or without a shared file system."""
    if not d.active:
        return data
    size = torch.tensor([-1 if data is None else len(data)], dtype=torch.int64, device=d.comm_device)
    dist.broadcast(size, src=src)
    n = int(size.item())
    if n < 0:
        return None
    buf = torch.frombuffer(bytearray(data), dtype=torch.uint8) if d.rank == src and n else torch.empty(n, dtype=torch.uint8)
    buf = buf.to(d.comm_device)
    dist.broadcast(buf, src=src)
    return bytes(buf.cpu().numpy().tobytes())


__all__ = [
    "Dist",
    "init_from_env",
    "shutdown",
    "barrier",
    "GlobalBatchNorm2d",
    "sync_batchnorm",
    "data_parallel",
    "check_identical",
    "all_gather_objects",
    "owner",
    "owned",
    "gather_masks",
    "average_",
    "broadcast_bytes",
]
