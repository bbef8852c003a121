"""The frozen seeded backbone a continual-learning run shares, and the mask models built on it.

`BackboneConfig` fixes everything that must agree between the SupSup model that learns masks
and the ImpressLearn / task-inference models that reuse them: architecture, outputs (more than
the classes gives SupSup's superfluous neurons), weight init, density scaling, mask mode and
seed. Layers rebuild their weights from (init, seed, layer name), so two models built from one
config share the same backbone exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping

import torch.nn as nn

from .. import models
from ..format import PackedMasks
from ..layers import BackboneLayer, ImpressLayer, MaskMode, SupermaskLayer, convert
from ..seeding import Init, check_density, check_seed

# the ResNets: SplitCIFAR-100 and SplitImageNet (docs/scale.md); vit: models.mnist_vit, a small
# transformer on MNIST (docs/results.md, "A transformer through every method")
ARCHS = ("lenet_300_100", "resnet18", "resnet50", "vit")


@dataclasses.dataclass
class BackboneConfig:
    """arch: "lenet_300_100"; outputs: size of the head (10 classes; 100 for SupSup's G objective);
    mask: "topk" (keep `density` of the weights) or "threshold" (SupSup's `scores >= 0`);
    init: "kaiming_normal" or "signed_constant"; scale: multiply the std by 1/sqrt(density).
    arch "resnet18" is SupSup's CIFAR ResNet-18 (`width` channels in its first stage),
    "resnet50" torchvision's; both keep non-affine BatchNorm statistics per task. "vit" is
    `models.mnist_vit` (flat MNIST inputs): its patch embedding, both projections of every
    attention, its MLPs and head are masked; LayerNorm, class token and position embedding are
    frozen, drawn from the seed (docs/design.md §4.5)."""

    arch: str = "lenet_300_100"
    outputs: int = 10
    classes: int = 10
    density: float = 0.1
    mask: MaskMode = MaskMode.TOPK
    init: Init = Init.SIGNED_CONSTANT
    scale: bool = True
    seed: int = 0
    width: int = 64  # resnet18 only

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if self.outputs < self.classes:
            raise ValueError(f"outputs ({self.outputs}) must be at least the number of classes ({self.classes})")
        check_density(self.density)
        check_seed(self.seed)
        self.mask = MaskMode.of(self.mask, "mask")
        self.init = Init.of(self.init, "init")
        if self.width < 1:
            raise ValueError(f"width must be at least 1, got {self.width}")


def network(cfg: BackboneConfig) -> nn.Module:
    """The plain (unconverted) network of `cfg`."""
    if cfg.arch == "resnet18":
        return models.cifar_resnet18(num_classes=cfg.outputs, width=cfg.width)
    if cfg.arch == "resnet50":
        return models.resnet50(num_classes=cfg.outputs)
    if cfg.arch == "vit":
        return models.mnist_vit(num_classes=cfg.outputs)
    return models.lenet_300_100(num_outputs=cfg.outputs)


def supermask_model(cfg: BackboneConfig, num_tasks: int = 1) -> nn.Module:
    """A SupSup model: one learned mask per task over the frozen backbone."""
    return convert(
        network(cfg),
        "supermask",
        density=cfg.density,
        mask=cfg.mask,
        init=cfg.init,
        scale=cfg.scale,
        seed=cfg.seed,
        num_tasks=num_tasks,
    )


HYBRID_LAYERS = ("last", "first")


def hybrid_layer_name(net: nn.Module, hybrid: bool | str | None) -> str | None:
    """The layer a hybrid ImpressLearn model keeps as a SupSup mask per task: none (False/None),
    the last ("last", or True) or the first ("first": the layer where task inference finds its
    signal, design.md §2.6)."""
    if hybrid is None or hybrid is False:
        return None
    if hybrid is True or hybrid == "last":
        return last_layer_name(net)
    if hybrid == "first":
        return first_layer_name(net)
    raise ValueError(f"hybrid must be one of {HYBRID_LAYERS} (or False), got {hybrid!r}")


def hybrid_label(hybrid: bool | str | None) -> str:
    """How results name the variant: ' hybrid' (the last layer a mask), ' hybrid-first', or ''."""
    return "" if not hybrid else " hybrid" if hybrid in (True, "last") else f" hybrid-{hybrid}"


def impress_model(
    cfg: BackboneConfig,
    basis: Mapping[str, PackedMasks],
    *,
    per_channel: bool | Collection[str] = False,
    num_tasks: int = 1,
    hybrid: bool | str = False,
) -> nn.Module:
    """An ImpressLearn model over `basis` (masks per layer name). `hybrid` ("last" or True,
    "first") keeps a SupSup mask, learned per task with the alphas, in that layer instead of alphas."""
    net = network(cfg)
    layer = hybrid_layer_name(net, hybrid)
    overrides = {layer: "supermask"} if layer else None
    return convert(
        net,
        "impress",
        basis=basis,
        density=cfg.density,
        mask=cfg.mask,
        init=cfg.init,
        scale=cfg.scale,
        seed=cfg.seed,
        per_channel=per_channel,
        num_tasks=num_tasks,
        overrides=overrides,
    )


MASK_LAYERS = (SupermaskLayer, ImpressLayer)


def mask_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every SupSup and ImpressLearn layer (linear, convolution, attention
    projection), in order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, MASK_LAYERS)]


def weight_layers(net: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """(name, weight shape) of every layer `convert` masks, in order and by the names the
    converted model gives them, for a plain network or a converted one alike: linear layers and
    convolutions, both projections of an `nn.MultiheadAttention` (`<path>.in_proj`, or
    `q_proj` / `k_proj` / `v_proj` when their sizes differ, and `<path>.out_proj`: the names of
    `TaskMultiheadAttention`'s mask layers), and layers already converted (any backbone layer)."""
    out, done = [], []
    for name, m in net.named_modules():
        if any(name.startswith(d + ".") for d in done):
            continue  # inside an attention or a converted layer: named there
        if isinstance(m, BackboneLayer):
            out.append((name, tuple(m.weight.shape)))
            done.append(name)
        elif isinstance(m, nn.MultiheadAttention):
            if m.in_proj_weight is not None:
                out.append((f"{name}.in_proj", tuple(m.in_proj_weight.shape)))
            else:
                out += [(f"{name}.{p}_proj", tuple(getattr(m, f"{p}_proj_weight").shape)) for p in "qkv"]
            out.append((f"{name}.out_proj", tuple(m.out_proj.weight.shape)))
            done.append(name)
        elif isinstance(
            m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
        ):
            out.append((name, tuple(m.weight.shape)))
    if not out:
        raise ValueError("the network has no linear, convolution or attention layer")
    return out


def first_layer_name(net: nn.Module) -> str:
    """The first masked layer (LeNet's first linear layer, a ResNet's stem, the ViT's patch
    embedding `conv_proj`)."""
    return weight_layers(net)[0][0]


def last_layer_name(net: nn.Module) -> str:
    return weight_layers(net)[-1][0]


def weight_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Weight shape of every maskable layer (plain or converted; attention projections by the
    names convert gives them), by name: `weight_layers` as a dict."""
    return dict(weight_layers(model))


def to_dict(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    if isinstance(cfg, BackboneConfig) and cfg.arch != "resnet18":
        d.pop("width")  # only ResNet-18 has a width; MNIST mask-cache keys stay as they were
    return d


def replace(cfg, **changes):
    return dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})


__all__ = [
    "BackboneConfig",
    "network",
    "supermask_model",
    "impress_model",
    "mask_layers",
    "weight_layers",
    "first_layer_name",
    "last_layer_name",
    "weight_shapes",
    "to_dict",
    "replace",
]
