"""KSM and its baselines (impresslearn.methods.ksm, experiments.adapt, `impresslearn adapt`):
task 0 is the pretrained network, mask methods never touch the backbone and forget nothing
(measured), storage is counted by hand, Piggyback keeps exactly its packed mask, the CLI refuses
bad options with one sentence and writes one key per method."""

import json
import math

import pytest
import torch
from test_faults import refused

from impresslearn import cli, models
from impresslearn.continual.metrics import accuracy
from impresslearn.data import AdaptationTasks, load_subset
from impresslearn.experiments.adapt import AdaptConfig, AdaptRunner
from impresslearn.kernel_masks import KernelMaskConfig, kernel_mask_layers
from impresslearn.layers import set_task, supermask_layers
from impresslearn.methods import ksm

TINY = dict(
    tasks=("digits0-4", "digits5-9", "inverted"),
    pretrain_iterations=20,
    iterations=6,
    batch_size=32,
    eval_samples=200,
    progress=False,
    verbose=False,
)


def pretrained():
    torch.manual_seed(0)
    return models.mnist_convnet(10, (4, 8, 8))


@pytest.mark.parametrize("method", ksm.METHODS)
def test_task_zero_is_the_pretrained_network(method):
    net = pretrained().eval()
    model = ksm.build_model(method, net, 3).eval()
    x = torch.randn(5, 784)
    set_task(model, 0)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-6)
    assert torch.equal(net.conv1.weight, pretrained().conv1.weight)  # the source is copied, not changed


def test_storage_counts_by_hand():
    net = pretrained()  # conv1 4x1x3x3, conv2 8x4x3x3, conv3 8x8x3x3, head 8 -> 10
    head = 4 * (8 * 10 + 10)
    weights = 4 * sum(p.numel() for n, p in net.named_parameters() if not n.startswith("head"))
    assert ksm.bytes_per_task(ksm.build_model("head", net, 2), "head")["total"] == head
    assert ksm.bytes_per_task(ksm.build_model("finetune", net, 2), "finetune")["total"] == head + weights
    # Piggyback: 1 bit per weight, rows of 9 / 36 / 72 bits padded to 1 / 2 / 3 words
    pig = ksm.bytes_per_task(ksm.build_model("piggyback", net, 2), "piggyback")
    assert pig["bits_packed"] == 4 * (4 * 1 + 8 * 2 + 8 * 3)
    assert pig["bits_exact"] == math.ceil(36 / 8) + math.ceil(288 / 8) + math.ceil(576 / 8)
    # kernel-wise: 4 + 32 + 64 kernels; rows of 1 / 4 / 8 bits pad to one word each
    kb = ksm.bytes_per_task(ksm.build_model("kernel_binary", net, 2), "kernel_binary")
    assert kb["bits_packed"] == 4 * (4 + 8 + 8) and kb["real"] == 0 and kb["total"] == head + 80
    k = ksm.bytes_per_task(ksm.build_model("ksm", net, 2), "ksm")
    assert k["real"] == 4 * (4 + 32 + 64) and k["total"] == head + 80 + 400


def test_piggyback_keeps_exactly_its_packed_mask():
    model = ksm.build_model("piggyback", pretrained(), 2)
    with torch.no_grad():
        for _, layer in supermask_layers(model):
            layer.task_floats(1).normal_()
    set_task(model, 1)
    model.eval()
    x = torch.randn(4, 784)
    with torch.no_grad():
        before = model(x)
        ksm.finish_task(model, "piggyback", 1)
        assert torch.equal(model(x), before)
    for _, layer in supermask_layers(model):
        floats = layer.finished_floats(1)  # ±b: the same mask back, at the scores' starting scale
        assert layer.is_finished(1) and floats.abs().unique().numel() == 1 and torch.equal(floats >= 0, layer.mask(1) > 0)


def test_trainable_groups_hold_only_the_task_own_tensors():
    model = ksm.build_model("ksm", pretrained(), 3)
    groups = ksm.trainable(model, "ksm", 2, lr=1e-2, head_lr=1e-3)
    own = {id(p) for p in groups[0]["params"]}
    assert own == {id(layer.live_logits) for _, layer in kernel_mask_layers(model)}
    assert all(layer.live_task == 2 for _, layer in kernel_mask_layers(model))
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in ksm.heads_of(model).heads[2].parameters()}


def test_annealed_temperature_is_geometric():
    """The KSM learner's phase sets the temperature before every step: 1, 0.1, 0.01 over 3 steps."""
    model = ksm.build_model("ksm", pretrained(), 2, kernel=KernelMaskConfig())
    (phase,) = ksm.KSM(model, ksm.KsmConfig(iterations=3, temperature=1.0, temperature_end=0.01)).phases(1)
    layer = kernel_mask_layers(model)[0][1]
    phase.start()
    seen = [layer.temperature]
    for step in (1, 2):
        phase.after_step(step)
        seen.append(layer.temperature)
    assert seen == pytest.approx([1.0, 0.1, 0.01])


@pytest.fixture(scope="module")
def tiny_results():
    return AdaptRunner(AdaptConfig(**TINY), None).run()


def test_mask_methods_forget_nothing_measured(tiny_results):
    r = tiny_results
    for method in ksm.METHODS:
        rec = r[method]
        for key in ("task_acc", "acc_matrix", "bwt", "bytes_per_task", "train_s_per_task"):
            assert key in rec, (method, key)
        assert len(rec["acc_matrix"]) == 3 and len(rec["train_s_per_task"]) == 2
    for method in ("head", *ksm.MASK_METHODS):
        rec = r[method]
        # every earlier task's accuracy, re-measured after each later task, is exactly the same
        for j in range(3):
            column = [row[j] for row in rec["acc_matrix"][j:]]
            assert len(set(column)) == 1, (method, j, column)
        assert rec["bwt"] == 0.0 and rec["forgetting"] == 0.0
        assert rec["backbone_unchanged"] is True
    assert r["finetune"]["backbone_unchanged"] is False
    assert r["ksm"]["acc_matrix"][0][0] == r["pretrain"]["acc"]
    for method in ksm.METHODS:  # the smallest exact form: a mask method's bits coded, never above the packed
        rec = r[method]
        assert len(rec["smallest_bytes_per_task"]) == 2 and all(
            s <= rec["bytes_per_task"] for s in rec["smallest_bytes_per_task"]
        )
    assert all(s < r["piggyback"]["bytes_per_task"] for s in r["piggyback"]["smallest_bytes_per_task"])


def test_stored_ksm_model_matches_bits_plus_real():
    stream = AdaptationTasks(load_subset(), ("digits0-4", "inverted"))
    model = ksm.build_model("ksm", pretrained(), 2)
    with torch.no_grad():
        for _, layer in kernel_mask_layers(model):
            layer.task_floats(1).normal_()
    set_task(model, 1)
    model.eval()
    acc_r = accuracy(model, stream.test(1, samples=100))
    ksm.finish_task(model, "ksm", 1)
    assert accuracy(model, stream.test(1, samples=100)) == acc_r
    for _, layer in kernel_mask_layers(model):
        bits, real = layer.stored_parts(1)
        assert torch.equal(layer.mask(1), bits.unpack()[0].float() + real)


def test_cli_refusals_are_one_sentence(capsys, tmp_path):
    out = ["--out", str(tmp_path / "a.json")]
    refused(capsys, ["adapt", "--methods", "ksm,packnet", *out], "--methods: invalid choice 'packnet'")
    refused(capsys, ["adapt", "--tasks", "digits0-4", *out], "--tasks must be two or more")
    refused(capsys, ["adapt", "--tasks", "digits0-4,cifar", *out], "--tasks: invalid choice 'cifar'")
    refused(capsys, ["adapt", "--temperature", "0", *out], "--temperature must be a finite positive number")
    refused(capsys, ["adapt", "--iterations", "0", *out], "must be at least 1")
    refused(capsys, ["adapt", "--real", "cubic", *out], "invalid choice")
    refused(capsys, ["adapt", "--out", str(tmp_path)], "is a folder")
    refused(capsys, ["adapt", "--data-root", str(tmp_path / "nowhere"), *out], "MNIST not found")


def test_cli_writes_a_key_per_method(capsys, tmp_path):
    out = tmp_path / "adapt.json"
    argv = [
        "adapt",
        "--methods",
        "head,ksm",
        "--tasks",
        "digits0-4,rotated90",
        "--pretrain-iterations",
        "5",
        "--iterations",
        "3",
        "--eval-samples",
        "100",
        "--quiet",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| ksm |" in printed and "| head |" in printed
    r = json.loads(out.read_text())
    assert r["status"] == "done" and set(r["methods_done"]) == {"head", "ksm"}
    assert r["ksm"]["bwt"] == 0.0 and "reconstructed" in r
    assert cli.main(["plot", str(out), "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "ksm-adapt-accuracy-vs-bytes.png").stat().st_size > 0
    # the same command again keeps what is there; other settings on the same file are refused
    assert cli.main(argv) == 0
    refused(capsys, [*argv[:-2], "--seed", "3", "--out", str(out)], "other settings")
