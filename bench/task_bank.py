"""The task bank the library used before every_task_linear / task_row_linear (kept here as the
baseline that bench/bench_task_inference.py measures the library against): every task of a
model at once as the per-task effective weights in one dense bank, and the outputs of all tasks
for a batch from one batched forward pass.

The bank is what exhaustive task inference and per-sample inference need. It is built once from
the packed bits (each layer's masks are read once, for all tasks together), then a batch's logits
under every task, `logits(x) -> [tasks, batch, outputs]`, are one `torch.func.vmap` over the task
axis of a plain twin of the network (plain `nn.Linear` / `nn.Conv2d` / `BatchNorm2d` in eval
mode with the task's statistics), and a mixture of tasks `beta` uses the weights `Σ_s beta_s W_s`,
so per-sample gradients with respect to `beta` are one `vmap(grad(...))` over the samples.

    TaskBank(model)           from an Impress model (tasks: alphas over a basis) or a SupSup model
                              (tasks: masks); per-task BatchNorm statistics included
    bank.logits(x)            [n, B, C] every task's outputs
    bank.mixture_logits(x, b) [B, C] the outputs under the weights Σ_s b_s W_s
    bank.sample_gradients(x, objective)
                              [B, n] d objective(sample i) / d beta at the uniform mixture
    bank.nbytes               the bank's memory (the price of having every task at hand)
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn as nn
from torch import Tensor
from torch.func import functional_call, grad, vmap

from impresslearn import ops
from impresslearn.layers import (
    BackboneLayer,
    ImpressConv2d,
    ImpressLayer,
    ImpressLinear,
    SupermaskConv2d,
    SupermaskLayer,
    SupermaskLinear,
    TaskBatchNorm,
    TaskMultiheadAttention,
    set_submodule,
    task_modules,
)

# Masks unpacked per chunk while the bank is built: bounds the dense bits held at once.
CHUNK_MASKS = 16


def _plain(layer: nn.Module) -> nn.Module:
    """A plain module with the geometry of a task-aware layer (its weight is supplied per call)."""
    if isinstance(layer, TaskBatchNorm):
        bn = layer.BATCHNORM(layer.num_features, layer.eps, affine=False)
        return bn.eval()
    shape = tuple(layer.weight.shape)
    bias = layer.bias is not None
    if len(shape) == 2:
        return nn.Linear(shape[1], shape[0], bias=bias)
    return nn.Conv2d(
        shape[1] * layer.groups,
        shape[0],
        shape[2:],
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        groups=layer.groups,
        bias=bias,
    )


@torch.no_grad()
def _task_weights(layer: nn.Module) -> Tensor:
    """[n, *weight shape]: every task's effective weight, reading the layer's packed bits once."""
    w = layer.weight
    if isinstance(layer, SupermaskLayer):
        masks = layer.export_masks()
        return torch.stack([w * ops.unpack_masks(masks[t])[0].to(w.dtype) for t in range(masks.num_masks)])
    alphas = torch.stack([layer.task_alpha(t).detach() for t in range(layer.num_tasks)]).to(w.dtype)  # [n, T] or [n, T, rows]
    basis = layer.basis
    rows = w.shape[0]
    coef = torch.zeros((alphas.shape[0], rows, w[0].numel()), dtype=w.dtype, device=w.device)
    for t0 in range(0, basis.num_masks, CHUNK_MASKS):
        bits = ops.unpack_masks(basis[t0 : t0 + CHUNK_MASKS]).reshape(-1, rows, w[0].numel()).to(w.dtype)  # [t, rows, cols]
        a = alphas[:, t0 : t0 + bits.shape[0]]
        coef += torch.einsum("str,trc->src", a, bits) if a.dim() == 3 else torch.einsum("st,trc->src", a, bits)
    return w.unsqueeze(0) * coef.reshape(-1, *w.shape)


def bank_supports(model: nn.Module) -> bool:
    """Whether a bank can be built: every task-aware module a linear or 2-d convolution mask layer
    called as a module, or per-task BatchNorm (a converted attention reads its projections'
    weights itself, which the bank's plain twins do not have)."""
    plain = (SupermaskLinear, SupermaskConv2d, ImpressLinear, ImpressConv2d, TaskBatchNorm)
    return all(isinstance(m, plain) for _, m in task_modules(model)) and not any(
        isinstance(m, TaskMultiheadAttention) for m in model.modules()
    )


class TaskBank:
    def __init__(self, model: nn.Module):
        if not bank_supports(model):
            raise ValueError(
                "a task bank takes models whose task-aware layers are linear or 2-d convolution mask "
                "layers and per-task BatchNorm; this one has attention or other convolutions "
                "(infer whole batches instead: one forward per task, docs/design.md §2.6)"
            )
        found = task_modules(model)
        if not any(isinstance(m, (ImpressLayer, SupermaskLayer)) for _, m in found):
            raise ValueError("a task bank needs a model with Impress or Supermask layers")
        counts = {m.num_tasks for _, m in found}
        if len(counts) != 1:
            raise ValueError(f"the model's task-aware modules disagree on the number of tasks: {sorted(counts)}")
        self.num_tasks = counts.pop()
        self.twin = copy.deepcopy(model).eval()
        self.stacked: dict[str, Tensor] = {}  # name in the twin -> [n, ...]
        self.shared: dict[str, Tensor] = {}  # biases: the same for every task
        for name, layer in found:
            set_submodule(self.twin, name, _plain(layer).to(next(layer.buffers()).device))
            if isinstance(layer, TaskBatchNorm):
                self.stacked[f"{name}.running_mean"] = torch.stack([bn.running_mean for bn in layer.bns])
                self.stacked[f"{name}.running_var"] = torch.stack([bn.running_var for bn in layer.bns])
            elif isinstance(layer, BackboneLayer):
                self.stacked[f"{name}.weight"] = _task_weights(layer)
                if layer.bias is not None:
                    self.shared[f"{name}.bias"] = layer.bias.detach()
        for p in self.twin.parameters():
            p.requires_grad_(False)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.stacked.values())

    def _call(self, tensors: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.twin, {**tensors, **self.shared}, (x,))

    def logits(self, x: Tensor) -> Tensor:
        """[n, B, C]: the batch's outputs under every task."""
        return vmap(self._call, in_dims=(0, None))(self.stacked, x)

    def mixture(self, beta: Tensor) -> dict[str, Tensor]:
        """The weights (and BatchNorm statistics) of the mixture Σ_s beta_s task_s."""
        return {k: torch.tensordot(beta.to(v.dtype), v, dims=1) for k, v in self.stacked.items()}

    def mixture_logits(self, x: Tensor, beta: Tensor) -> Tensor:
        return self._call(self.mixture(beta), x)

    def sample_gradients(self, x: Tensor, objective: Callable[[Tensor], Tensor], beta: Tensor | None = None) -> Tensor:
        """[B, n]: for each sample alone, d objective / d beta at `beta` (default: uniform)."""
        if beta is None:
            beta = torch.full((self.num_tasks,), 1.0 / self.num_tasks, device=x.device)

        def one(b: Tensor, sample: Tensor) -> Tensor:
            return objective(self.mixture_logits(sample.unsqueeze(0), b))

        return vmap(grad(one), in_dims=(None, 0))(beta, x)
