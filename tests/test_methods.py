"""Methods written once (impresslearn.methods, docs/design.md §4.8): every method is a `Learner`
whose phases the library's loop, Avalanche's and a user's own loop run alike; what a learner
trains, finishes and counts is checked against the functions it replaced and against models the
library did not write."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models as tvm
from continual_helpers import permuted, trained

import impresslearn as il
from impresslearn import methods
from impresslearn.continual import alpha, masks, storage
from impresslearn.continual.backbone import BackboneConfig, impress_model, supermask_model, weight_shapes
from impresslearn.continual.training import TrainConfig, make_optimizer
from impresslearn.layers import impress_layers, supermask_layers
from impresslearn.methods.exssnet import ExssnetConfig
from impresslearn.methods.ksm import KsmConfig, build_model

FAST = TrainConfig(optimizer="adam", lr=1e-2, epochs=0.05, batch_size=128)


def batches(task, n=8, seed=0):
    return permuted().train(task, 128, seed=seed)


def test_every_method_is_a_learner_by_name():
    assert set(methods.LEARNERS) == {
        "supsup",
        "impresslearn",
        "ssnet",
        "exssnet",
        "exssnet-kkt",
        "finetune",
        "head",
        "piggyback",
        "kernel_binary",
        "ksm",
    }
    sup = supermask_model(BackboneConfig(), num_tasks=2)
    assert isinstance(methods.make("supsup", sup), methods.SupSup)
    assert methods.make("exssnet-kkt", sup).cfg.kkt
    with pytest.raises(ValueError, match="method must be one of supsup, impresslearn"):
        methods.make("packnet", sup)
    with pytest.raises(ValueError, match="ssnet was given the settings of exssnet"):
        methods.make("ssnet", sup, ExssnetConfig(method="exssnet"))
    with pytest.raises(ValueError, match="give it a convert\\(..., 'impress'\\) model"):
        methods.make("impresslearn", sup)


def test_supsup_learner_trains_what_train_mask_trains():
    """The learner's loop and the functional `train_mask` are one path: the same masks, bit for bit."""
    a = supermask_model(BackboneConfig(), num_tasks=1)
    b = copy.deepcopy(a)
    torch.manual_seed(3)
    masks.train_mask(a, 0, batches(0), FAST, progress=False)
    torch.manual_seed(3)
    info = methods.SupSup(b, FAST).learn(0, batches(0), progress=False)
    assert info["mask_phase"]["steps"] > 0 and info["task"] == 0
    assert all(x.export_masks() == y.export_masks() for (_, x), (_, y) in zip(supermask_layers(a), supermask_layers(b)))
    assert all(m.is_finished(0) for _, m in supermask_layers(b))


def test_impresslearn_learner_fits_what_fit_alpha_fits():
    cfg, sup = trained()
    basis = masks.task_masks(sup)
    a = impress_model(cfg, basis, per_channel=True, num_tasks=1)
    b = copy.deepcopy(a)
    alpha.fit_alpha(a, 0, batches(5), FAST, lam=0.01, progress=False)
    learner = methods.ImpressLearn(b, FAST, lam=0.01)
    (phase,) = learner.phases(0)
    assert phase.penalty is not None  # eq. 2 travels with the phase, for every loop
    learner.learn(0, batches(5), progress=False)
    for (_, x), (_, y) in zip(impress_layers(a), impress_layers(b)):
        assert torch.equal(x.task_alpha(0), y.task_alpha(0))


def test_bytes_per_task_are_the_storage_accounting():
    cfg, trained_model = trained()
    sup = supermask_model(cfg, num_tasks=1)
    shapes = weight_shapes(sup)
    assert methods.SupSup(sup).task_bytes(0)["total"] == storage.supsup_bytes_packed(shapes)
    basis = masks.task_masks(trained_model)
    k = next(iter(basis.values())).num_masks
    for per_channel in (False, True):
        imp = methods.ImpressLearn(impress_model(cfg, basis, per_channel=per_channel))
        expect = storage.impress_bytes(shapes, k, per_channel=per_channel)
        assert imp.task_bytes(0)["total"] == expect.alpha_bytes and imp.shared_bytes() == expect.basis_bytes
    hybrid = methods.ImpressLearn(impress_model(cfg, basis, hybrid="last"))
    last = list(shapes)[-1]
    expect = storage.impress_bytes(shapes, k, hybrid_layer=last)
    assert hybrid.task_bytes(0)["total"] == expect.alpha_bytes + expect.mask_bytes
    ex = methods.make("exssnet", supermask_model(cfg, num_tasks=2), ExssnetConfig(mask=FAST))
    ex.learn(0, batches(0), progress=False)
    counted = ex.task_bytes(0)
    assert counted["total"] == storage.exssnet_bytes(shapes, [ex.new_entries[0]])[0]
    # the smallest exact form: the same trained weights beside the mask coded for cold storage
    assert counted["smallest"] == counted["total"] - counted["mask"] + counted["mask_forms"]["coded"]


def test_the_smallest_form_is_the_coded_mask():
    """SupSup's smallest exact form of a learned density-0.1 mask is the range-coded one: under half
    the packed bytes and within a few bytes a layer of the entropy bound."""
    cfg, sup = trained()
    counted = methods.SupSup(sup).task_bytes(0)
    forms = counted["mask_forms"]
    assert counted["smallest"] == forms["coded"] < counted["total"] / 2 and forms["coded"] < forms["sparse"]
    assert forms["entropy"] <= forms["coded"] <= forms["entropy"] + 3 * 32


def test_ksm_learner_counts_and_trains_only_its_task():
    torch.manual_seed(0)
    net = il.models.mnist_convnet(10, (4, 8, 8))
    model = build_model("ksm", net, 2)
    learner = methods.make("ksm", model, KsmConfig(iterations=3, batch_size=32))
    data = [(torch.randn(32, 784), torch.randint(0, 10, (32,))) for _ in range(3)]
    x = torch.randn(4, 784)
    il.set_task(model, 0)
    model.eval()
    before = model(x)
    info = learner.learn(1, data, progress=False)
    assert info["train_phase"]["steps"] == 3
    il.set_task(model, 0)
    model.eval()
    assert torch.equal(model(x), before)
    counted = learner.task_bytes(1)
    assert {k: counted[k] for k in counted if k != "smallest"} == methods.ksm.bytes_per_task(model, "ksm")
    assert counted["head"] + counted["real"] < counted["smallest"] <= counted["total"]
    with pytest.raises(ValueError, match="its tasks are given, not inferred"):
        learner.inference_model()


def plain_loop(learner, task, data, epochs=1):
    """What a user writes: the learner's phases in their own loop, then finish."""
    for phase in learner.phases(task):
        opt = make_optimizer(phase.params, phase.config)
        if phase.start:
            phase.start()
        for _ in range(epochs):
            for x, y in data:
                opt.zero_grad()
                loss = F.cross_entropy(learner.model(x), y)
                if phase.penalty:
                    loss = loss + phase.penalty()
                loss.backward()
                opt.step()
        if phase.stop:
            phase.stop()
    learner.finish(task)


@pytest.mark.parametrize("method", ["supsup", "exssnet"])
def test_a_plain_loop_on_a_torchvision_model_keeps_task_zero(method):
    """A torchvision ResNet-18 (no weights) converted as a user would, its tasks learned by a
    hand-written loop over the learner's phases: task 0 bit-identical after task 1 (ExSSNeT's
    weight phase included), and what finish left is what a checkpoint holds."""
    torch.manual_seed(0)
    net = tvm.resnet18(num_classes=3)
    model = il.convert(net, "supermask", density=0.3, num_tasks=2)
    learner = methods.make(
        method,
        model,
        ExssnetConfig(mask=FAST, weight=TrainConfig(optimizer="adam", lr=1e-2, batch_size=4)) if method != "supsup" else FAST,
    )
    data = [(torch.randn(4, 3, 32, 32), torch.randint(0, 3, (4,))) for _ in range(2)]
    x = torch.randn(2, 3, 32, 32)
    plain_loop(learner, 0, data)
    il.set_task(model, 0)
    model.eval()
    before = model(x)
    model.train()
    plain_loop(learner, 1, data)
    il.set_task(model, 0)
    model.eval()
    assert torch.equal(model(x), before)
    assert all(m.is_finished(0) and m.is_finished(1) for _, m in supermask_layers(model))
    if method == "exssnet":  # the weight phase moved weights outside task 0's mask, none under it
        assert learner.trained[1] > 0 and sum(int(u.sum()) for u in learner.used.values()) > 0


class LastLayerOnly(methods.Learner):
    """A method of one's own, in a few lines: SupSup whose tasks train only the last layer's mask."""

    name = "last-layer"

    def __init__(self, model, config=None):
        super().__init__(model)
        self.config = config or FAST

    def first_config(self):
        return self.config

    def phases(self, task):
        *_, (_, last) = supermask_layers(self.model)
        il.set_task(self.model, task)
        return [methods.Phase("mask", [last.task_floats(task)], self.config)]

    def task_bytes(self, task):
        *_, (_, last) = supermask_layers(self.model)
        return {"total": last.export_masks([task]).nbytes}


def test_a_new_method_is_one_class_that_the_library_loop_drives():
    model = supermask_model(BackboneConfig(), num_tasks=2)
    learner = LastLayerOnly(model)
    first = [m.export_masks([1]) for _, m in supermask_layers(model)]
    learner.learn(1, batches(1), progress=False)
    after = [m.export_masks([1]) for _, m in supermask_layers(model)]
    assert after[:-1] == first[:-1] and after[-1] != first[-1]
    assert learner.task_bytes(1)["total"] == supermask_layers(model)[-1][1].export_masks([1]).nbytes


def test_a_phase_stops_even_when_training_fails():
    model = supermask_model(BackboneConfig(), num_tasks=1)
    calls = []
    phase = methods.Phase(
        "mask", masks.task_scores(model, 0), FAST, start=lambda: calls.append("start"), stop=lambda: calls.append("stop")
    )
    with pytest.raises(ValueError, match="no batches"):
        methods.run_phase(model, 0, phase, [], desc="x", progress=False)
    assert calls == ["start", "stop"]


def test_learners_save_what_load_checkpoint_reads(tmp_path):
    model = supermask_model(BackboneConfig(), num_tasks=1)
    learner = methods.SupSup(model, FAST)
    learner.learn(0, batches(0), progress=False)
    learner.save(tmp_path / "m.safetensors")
    fresh = supermask_model(BackboneConfig(), num_tasks=1)
    il.load_checkpoint(tmp_path / "m.safetensors", fresh)
    assert all(a.export_masks() == b.export_masks() for (_, a), (_, b) in zip(supermask_layers(model), supermask_layers(fresh)))
    sup = learner.inference_model()
    assert isinstance(sup, nn.Module) and impress_layers(sup)
