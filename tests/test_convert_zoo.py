"""convert() keeps its promise on models the library did not write (docs/design.md §4.4, §4.5):
torchvision's zoo built without weights and small custom models, trained as a user would — one
plain optimizer over `model.parameters()`, momentum and weight decay, `zero_grad(set_to_none=False)`
— task 0 bit-identical after task 1, every trainable parameter one task's, a checkpoint round trip
exact, with every method's layers."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models as tvm
from torch.nn.utils import parametrizations, parametrize

import impresslearn as il
from impresslearn import layers
from impresslearn.continual.batchnorm import recalibrate
from impresslearn.kernel_masks import KernelMaskConfig, convert_kernelwise


class Shared(nn.Module):
    """One linear layer used at two places (its weights must stay shared after convert)."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(12, 16)
        self.block = nn.Linear(16, 16)
        self.norm = nn.LayerNorm(16)
        self.out = nn.Linear(16, 5)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        h = torch.relu(self.block(h))
        return self.out(self.norm(self.block(h)))


class Tied(nn.Module):
    """A token model whose output layer is tied to its embedding."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 16)
        self.mix = nn.Linear(16, 16)
        self.norm = nn.RMSNorm(16)
        self.out = nn.Linear(16, 11, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, x):
        return self.out(self.norm(torch.relu(self.mix(self.embed(x.long() % 11).mean(1)))))


class Sequence1d(nn.Module):
    """Conv1d, BatchNorm1d, an LSTM (frozen), GroupNorm, a transposed and a 3-d convolution."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm1d(8)
        self.rnn = nn.LSTM(8, 8, batch_first=True)
        self.up = nn.ConvTranspose2d(1, 4, 3, stride=2, output_padding=1)
        self.gn = nn.GroupNorm(2, 4)
        self.vol = nn.Conv3d(1, 2, 3, padding=1)
        self.token = nn.Parameter(torch.randn(8))
        self.head = nn.Linear(8 + 4 + 2, 5)

    def forward(self, x):  # x: [B, 3, 10]
        h = torch.relu(self.bn(self.conv(x))).transpose(1, 2) + self.token
        h, _ = self.rnn(h)
        a = self.gn(self.up(x[:, :1].unsqueeze(1))).mean((2, 3))
        v = self.vol(x[:, None, :, :, None].expand(-1, 1, 3, 10, 2)).mean((2, 3, 4))
        return self.head(torch.cat([h.mean(1), a, v], 1))


def parametrized():
    net = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 5))
    parametrizations.weight_norm(net[0])
    parametrizations.spectral_norm(net[2])
    parametrize.register_parametrization(net[4], "weight", _Scale())
    return net


class _Scale(nn.Module):
    def forward(self, w):
        return 0.5 * w


def small_vit(**kw):
    return tvm.VisionTransformer(
        image_size=16, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5, **kw
    )


def small_convnext():
    cnb = tvm.convnext.CNBlockConfig
    return tvm.ConvNeXt([cnb(8, 16, 1), cnb(16, None, 1)], num_classes=5)


# name: (builder, input shape, convert options the model needs)
ZOO = {
    "resnet18": (lambda: tvm.resnet18(num_classes=5), (2, 3, 32, 32), {}),
    "resnet50": (lambda: tvm.resnet50(num_classes=5), (2, 3, 32, 32), {}),
    "mobilenet_v3": (lambda: tvm.mobilenet_v3_small(num_classes=5), (2, 3, 32, 32), {}),
    "efficientnet_b0": (lambda: tvm.efficientnet_b0(num_classes=5), (2, 3, 32, 32), {}),
    "convnext_tiny": (lambda: tvm.convnext_tiny(num_classes=5), (2, 3, 32, 32), {}),
    "convnext_small_net": (small_convnext, (2, 3, 32, 32), {}),
    "regnet": (lambda: tvm.regnet_y_400mf(num_classes=5), (2, 3, 32, 32), {}),
    # Swin's attention reads its projections' weights itself: refused unless frozen (test below)
    "swin_t": (lambda: tvm.swin_t(num_classes=5), (2, 3, 32, 32), {"unknown": "freeze"}),
    "vit_b_16": (lambda: tvm.vit_b_16(num_classes=5, image_size=32), (2, 3, 32, 32), {}),
    "vit_small": (small_vit, (2, 3, 16, 16), {}),
    "shared": (Shared, (2, 12), {}),
    "tied": (Tied, (2, 6), {}),
    "sequence": (Sequence1d, (2, 3, 10), {}),
    "parametrized": (parametrized, (2, 12), {}),
}
FAST = ["resnet18", "mobilenet_v3", "convnext_small_net", "vit_small", "shared", "tied", "sequence", "parametrized"]
SLOW = [n for n in ZOO if n not in FAST]


def build(name, method, seed=0):
    make, shape, extra = ZOO[name]
    torch.manual_seed(seed)  # another global state each time: convert must make the same model
    model = make()
    if method == "supermask":
        return il.convert(model, "supermask", density=0.5, num_tasks=2, seed=0, **extra), shape
    if method == "impress":
        return il.convert(model, "impress", basis_size=2, density=0.5, per_channel=True, num_tasks=2, seed=0, **extra), shape
    with torch.no_grad():  # kernel masks keep the weights: a head torchvision starts at zero would answer 0
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.1)
    return convert_kernelwise(model, KernelMaskConfig(), num_tasks=2, **extra), shape


def trainable_ids(model):
    return {id(p) for p in model.parameters() if p.requires_grad}


def task_owned_ids(model, task):
    return {id(p) for _, m in layers.task_modules(model) for p in m.trainable_parameters(task)}


def train(model, opt, task, x, steps=2):
    il.set_task(model, task)
    model.train()
    for _ in range(steps):
        opt.zero_grad(set_to_none=False)
        out = model(x)
        F.cross_entropy(out, torch.arange(out.shape[0]) % out.shape[-1]).backward()
        opt.step()
    # the task's BatchNorm statistics for the weights it ended with (two steps of momentum 0.1 would
    # leave a deep network's evaluation-mode activations to overflow)
    recalibrate(model, task, [(x, None)] * 2)


@torch.no_grad()
def outputs(model, x, task):
    model.eval()
    il.set_task(model, task)
    return model(x)


def check_model(name, method, tmp_path):
    model, shape = build(name, method)
    x = torch.randn(shape) if name != "tied" else torch.randint(0, 11, shape).float()
    # every trainable parameter is the selected task's own
    assert trainable_ids(model) == task_owned_ids(model, 0) and trainable_ids(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-2)
    train(model, opt, 0, x)
    il.finish_task(model, 0)
    before = outputs(model, x, 0)
    assert torch.isfinite(before).all(), f"{name}: task 0's outputs are not finite"
    train(model, opt, 1, x)
    assert torch.equal(outputs(model, x, 0), before), f"{name}: task 0 changed while task 1 trained"
    after_1 = outputs(model, x, 1)
    assert not torch.equal(after_1, before)
    # a checkpoint round trip, into the same architecture converted under another global seed
    path = tmp_path / f"{name}.safetensors"
    il.save_checkpoint(path, model)
    fresh, _ = build(name, method, seed=1)
    il.load_checkpoint(path, fresh)
    assert torch.equal(outputs(fresh, x, 0), before)
    assert torch.equal(outputs(fresh, x, 1), after_1)
    return model


@pytest.mark.parametrize("method", ["supermask", "impress", "kernel"])
@pytest.mark.parametrize("name", FAST)
def test_zoo_keeps_task_zero(name, method, tmp_path):
    if method == "kernel" and name == "sequence":
        with pytest.raises(il.ConvertError, match="conv .Conv1d. cannot be made a mask layer"):
            build(name, method)
        return
    check_model(name, method, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["supermask", "impress", "kernel"])
@pytest.mark.parametrize("name", SLOW)
def test_zoo_keeps_task_zero_large(name, method, tmp_path):
    check_model(name, method, tmp_path)


def test_a_vit_is_masked_throughout():
    model, _ = build("vit_small", "supermask")
    kinds = {type(m).__name__ for m in model.modules()}
    assert "TaskMultiheadAttention" in kinds and "MultiheadAttention" not in kinds and "Linear" not in kinds
    names = {n for n, _ in layers.supermask_layers(model)}
    assert {
        "encoder.layers.encoder_layer_0.self_attention.in_proj",
        "encoder.layers.encoder_layer_0.self_attention.out_proj",
        "conv_proj",
        "heads.head",
    } <= names
    # tokens, position embedding and LayerNorm affine: frozen, drawn from the seed
    assert not model.class_token.requires_grad and not model.encoder.pos_embedding.requires_grad
    assert not model.encoder.ln.weight.requires_grad


@pytest.mark.parametrize("name", ["vit_small", "resnet18", "convnext_small_net", "shared", "sequence"])
def test_all_ones_masks_over_kept_weights_compute_the_original_model(name):
    """density 1 keeps every weight: with init='keep' and frozen BatchNorm the converted model is the
    original function, attention, transposed and 1-d/3-d convolutions included."""
    make, shape, _ = ZOO[name]
    torch.manual_seed(0)
    original = make().eval()
    converted = il.convert(copy.deepcopy(original), "supermask", density=1.0, init="keep", batchnorm="keep").eval()
    x = torch.randn(shape)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), original(x), rtol=1e-5, atol=1e-5)


def test_a_shared_module_stays_shared():
    model, _ = build("shared", "supermask")
    assert model.block is model.get_submodule("block") and isinstance(model.block, layers.SupermaskLinear)
    assert sum(isinstance(m, layers.SupermaskLinear) for m in model.modules()) == 3


def test_a_tied_weight_stays_one_tensor():
    model, _ = build("tied", "supermask")
    assert model.out.weight.data_ptr() == model.embed.weight.data_ptr() and model.out.init == "keep"


def test_unknown_modules_are_refused_before_anything_changes():
    class OwnForward(nn.Linear):
        def forward(self, x):
            return super().forward(x) * 2

    for net, match in [
        (nn.Sequential(nn.Linear(4, 4), nn.PReLU()), r"1 \(PReLU\)"),
        (nn.Sequential(nn.Linear(4, 4), OwnForward(4, 4)), r"1 \(OwnForward\): it has a forward of its own"),
        (nn.Sequential(nn.Conv2d(1, 2, 3, padding_mode="reflect")), "pads with 'reflect'"),
        (tvm.swin_t(num_classes=5), r"read directly by .*ShiftedWindowAttention"),
    ]:
        before = copy.deepcopy(net.state_dict())
        with pytest.raises(il.ConvertError, match=match):
            il.convert(net, "supermask")
        assert isinstance(net[0] if isinstance(net, nn.Sequential) else net.features[0][0], (nn.Linear, nn.Conv2d))
        assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    net = il.convert(nn.Sequential(nn.Linear(4, 4), nn.PReLU()), "supermask", unknown="freeze")
    assert not net[1].weight.requires_grad


def test_frozen_parameters_are_a_function_of_the_seed():
    a, _ = build("vit_small", "supermask", seed=0)
    b, _ = build("vit_small", "supermask", seed=3)
    assert torch.equal(a.encoder.pos_embedding, b.encoder.pos_embedding)
