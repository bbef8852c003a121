"""The small ViT as a backbone (`BackboneConfig(arch="vit")`, `impresslearn run --arch vit`) and as
the pretrained network of `impresslearn adapt --arch vit`: it builds, converts with its attention
projections as mask layers and nothing shared left trainable, trains through the library's own
functions without moving a finished task, an ImpressLearn model over its masks computes a SupSup
task exactly with a one-hot alpha, and the adaptation methods take it."""

import json

import pytest
import torch
import torch.nn as nn

from impresslearn import cli, models
from impresslearn.continual import alpha as alpha_mod
from impresslearn.continual import backbone as bb
from impresslearn.continual import masks as masks_mod
from impresslearn.continual.training import TrainConfig
from impresslearn.data import PermutedMNIST, load_subset
from impresslearn.experiments.adapt import AdaptConfig, adapt_model
from impresslearn.kernel_masks import kernel_mask_layers
from impresslearn.layers import TaskHeads, TaskMultiheadAttention, impress_layers, set_task, supermask_layers
from impresslearn.methods import ksm

CFG = bb.BackboneConfig(arch="vit")
ATTENTION = [f"encoder.layers.encoder_layer_{i}.self_attention.{p}" for i in (0, 1) for p in ("in_proj", "out_proj")]


@pytest.fixture(scope="module")
def stream():
    return PermutedMNIST(load_subset(), num_tasks=3)


def test_the_vit_arch_builds_on_flat_mnist():
    net = bb.network(CFG)
    assert isinstance(net, models.MnistViT)
    assert net(torch.rand(5, 784)).shape == (5, 10)
    assert bb.network(bb.BackboneConfig(arch="vit", outputs=100))(torch.rand(2, 784)).shape == (2, 100)


def test_conversion_masks_the_attention_projections_and_leaves_nothing_plain():
    model = bb.supermask_model(CFG, num_tasks=2)
    assert not [n for n, m in model.named_modules() if type(m) in (nn.Linear, nn.MultiheadAttention)]
    assert sum(isinstance(m, TaskMultiheadAttention) for m in model.modules()) == 2
    names = [n for n, _ in supermask_layers(model)]
    assert set(ATTENTION) <= set(names) and names[0] == "conv_proj" and names[-1] == "heads.head"
    shapes = {n: tuple(m.weight.shape) for n, m in supermask_layers(model)}
    assert shapes[ATTENTION[0]] == (192, 64) and shapes[ATTENTION[1]] == (64, 64)
    # the helpers over the plain network name what the converted model masks, in its order
    plain = bb.network(CFG)
    assert list(bb.weight_shapes(plain).items()) == list(shapes.items()) == list(bb.weight_shapes(model).items())
    assert [n for n, _ in bb.mask_layers(model)] == names
    assert bb.first_layer_name(plain) == bb.hybrid_layer_name(plain, "first") == "conv_proj"
    assert bb.last_layer_name(plain) == bb.hybrid_layer_name(plain, "last") == "heads.head"
    # every trainable parameter is a slot of the task being trained; norms and tokens frozen
    assert all(n.endswith("live_scores") for n, p in model.named_parameters() if p.requires_grad)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert {"class_token", "encoder.pos_embedding", "encoder.ln.weight"} <= frozen


def test_train_mask_keeps_task_zero_bit_identical(stream):
    torch.manual_seed(0)
    model = bb.supermask_model(CFG, num_tasks=2)
    tc = TrainConfig(optimizer="rmsprop", lr=1e-3, epochs=1.0, iterations=4, batch_size=64)
    masks_mod.train_mask(model, 0, stream.train(0, 64, seed=0), tc)
    x, _ = next(iter(stream.test(0, 50)))
    model.eval()
    set_task(model, 0)
    with torch.no_grad():
        before = model(x)
    masks_mod.train_mask(model, 1, stream.train(1, 64, seed=1), tc)
    set_task(model, 0)
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert all(m.is_finished(0) and m.is_finished(1) for _, m in supermask_layers(model))
    found = masks_mod.task_masks(model)
    assert set(ATTENTION) <= set(found) and found[ATTENTION[0]].num_masks == 2


def test_impress_model_over_the_masks_is_the_supsup_model_with_one_hot_alpha(stream):
    torch.manual_seed(0)
    supsup = bb.supermask_model(CFG, num_tasks=2)
    tc = TrainConfig(optimizer="rmsprop", lr=1e-3, epochs=1.0, iterations=2, batch_size=64)
    for t in (0, 1):
        masks_mod.train_mask(supsup, t, stream.train(t, 64, seed=t), tc)
    basis = masks_mod.task_masks(supsup)
    x, _ = next(iter(stream.test(1, 40)))
    supsup.eval()
    for per_channel in (False, True):
        impress = bb.impress_model(CFG, basis, per_channel=per_channel, num_tasks=2).eval()
        assert set(ATTENTION) <= {n for n, _ in impress_layers(impress)}
        with torch.no_grad():
            for _, m in impress_layers(impress):
                for s in (0, 1):
                    one_hot = torch.zeros(m.alpha_shape())
                    one_hot[s] = 1.0
                    m.load_alpha(s, one_hot)
            for s in (0, 1):
                set_task(supsup, s)
                set_task(impress, s)
                assert torch.equal(impress(x), supsup(x))
    # and alphas fit through the library's own function, the masks and backbone untouched
    fresh = bb.impress_model(CFG, basis, per_channel=True, num_tasks=1)
    words = {n: m.basis.words.clone() for n, m in impress_layers(fresh)}
    out = alpha_mod.fit_alpha(
        fresh, 0, stream.train(2, 64, seed=2), TrainConfig(optimizer="adam", lr=0.05, epochs=1.0, iterations=3, batch_size=64)
    )
    assert out["steps"] == 3 and all(m.is_finished(0) for _, m in impress_layers(fresh))
    assert all(torch.equal(m.basis.words, words[n]) for n, m in impress_layers(fresh))


@pytest.mark.parametrize("method", ksm.METHODS)
def test_adapt_builds_every_method_over_the_vit(method):
    torch.manual_seed(0)
    net = models.mnist_vit(10).eval()
    model = adapt_model(AdaptConfig(arch="vit", linear="row"), method, net, 3).eval()
    x = torch.rand(4, 784)
    set_task(model, 0)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-5)  # task 0 is the pretrained network
    assert isinstance(model.heads.head, TaskHeads)
    if method == "piggyback":
        assert set(ATTENTION) <= {n for n, _ in supermask_layers(model)}
    if method in ("kernel_binary", "ksm"):
        layers = dict(kernel_mask_layers(model))
        assert set(ATTENTION) <= set(layers)
        assert layers[ATTENTION[0]].mask_shape == (192, 1)  # one value per row of a linear layer
        assert layers["conv_proj"].mask_shape == (64, 3)  # one per (out, in) kernel of the patch embedding


def test_adapt_cli_runs_the_vit(tmp_path):
    out = tmp_path / "a.json"
    assert (
        cli.main(
            [
                "adapt",
                "--arch",
                "vit",
                "--linear",
                "row",
                "--methods",
                "head,ksm",
                "--tasks",
                "digits0-4,inverted",
                "--pretrain-iterations",
                "3",
                "--iterations",
                "2",
                "--batch-size",
                "16",
                "--eval-samples",
                "50",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert r["config"]["arch"] == "vit" and r["status"] == "done"
    assert r["ksm"]["backbone_unchanged"] and r["ksm"]["bwt"] == 0.0


def test_run_cli_runs_the_vit_with_task_inference(tmp_path):
    out = tmp_path / "r.json"
    assert (
        cli.main(
            [
                "run",
                "--arch",
                "vit",
                "--new-tasks",
                "2",
                "-K",
                "2",
                "--first-new-task",
                "2",
                "--per-channel",
                "--mask-iterations",
                "3",
                "--alpha-epochs",
                "0.02",
                "--incorrect-tasks",
                "0",
                "--gn",
                "H",
                "--gn-methods",
                "oneshot,exhaustive",
                "--gn-batches",
                "1",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert r["backbone"]["arch"] == "vit" and r["status"] == "done"
    shapes = bb.weight_shapes(bb.network(CFG))  # attention projections included: 1 bit per weight, rows in words
    assert r["storage"]["supsup_packed"] == sum(4 * s[0] * -(-torch.Size(s[1:]).numel() // 32) for s in shapes.values())
    for label in ("supsup", "impresslearn"):
        assert [g["method"] for g in r["task_inference"][label]] == ["oneshot", "exhaustive"]
        assert all(g["batches"] == 2 for g in r["task_inference"][label])
