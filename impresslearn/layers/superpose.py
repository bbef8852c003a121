"""An ImpressLearn model over the masks a SupSup model learnt, for any `convert()`ed model.

Every SupSup layer of a copy of the model becomes an Impress layer of the same geometry and the
same frozen weight, whose basis is the layer's learnt masks and whose task `s` is finished with
alpha one-hot at `s`: task `s` computes with exactly mask `s`, a mixture `beta` with
`W ⊙ Σ_s beta_s M_s` (docs/design.md §2.6), and a new task added to it learns alphas over those
masks (§2.4). Everything else — per-task BatchNorm statistics, Impress layers of a hybrid model,
attention, frozen modules — is copied as it is, so the tasks' normalisation comes along.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from .masked import ImpressConv, ImpressConv2d, ImpressLinear, SupermaskConv, SupermaskConv2d, SupermaskLinear, supermask_layers
from .tasks import add_task, set_submodule


def impress_over(net: nn.Module, *, per_channel: bool = False, new_tasks: int = 0) -> nn.Module:
    """A copy of `net` whose SupSup layers are Impress layers over their own masks, one finished
    task per mask (alpha one-hot), `per_channel` alphas `[T, rows]` or per layer `[T]`, and
    `new_tasks` more tasks to learn as alphas over those masks. Other layers (Impress layers,
    per-task BatchNorm, attention, frozen modules) are copied as they are."""
    layers = supermask_layers(net)
    if not layers:
        raise ValueError("the model has no SupSup layers: there are no masks to build a basis from")
    out = copy.deepcopy(net)
    for name, layer in layers:
        set_submodule(out, name, _impress_twin(layer, per_channel))
    for _ in range(new_tasks):
        add_task(out)
    return out


def _impress_twin(layer: nn.Module, per_channel: bool) -> nn.Module:
    basis = layer.export_masks()
    n = basis.num_masks
    kw = dict(
        bias=layer.bias is not None,
        num_tasks=n,
        per_channel=per_channel,
        seed=layer.seed,
        init="kaiming_normal" if layer.init == "keep" else layer.init,
        scale_density=layer.scale_density,
    )
    if isinstance(layer, SupermaskLinear):
        new = ImpressLinear(layer.in_features, layer.out_features, basis, **kw)
    elif isinstance(layer, SupermaskConv2d):
        new = ImpressConv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            basis,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            **kw,
        )
    elif isinstance(layer, SupermaskConv):
        new = ImpressConv(
            layer.dims,
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            basis,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            transposed=layer.transposed,
            output_padding=layer.output_padding,
            **kw,
        )
    else:
        raise TypeError(f"no Impress layer matches {type(layer).__name__}")
    new = new.to(device=layer.weight.device, dtype=layer.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(layer.weight)  # the very same frozen weight, whatever its init
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
        for s in range(n):  # each task finished, one-hot at its own mask
            one_hot = torch.zeros(new.alpha_shape())
            one_hot[s] = 1.0
            new.load_alpha(s, one_hot)
    new.init = layer.init
    new.set_task(layer.task if layer.mixture is None else 0)
    return new
