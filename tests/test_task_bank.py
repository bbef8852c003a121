"""The task bank: every task's outputs in one batched pass equal the model's own per task; the
mixture's weights are the superposition; per-sample gradients equal one backward per sample;
exhaustive and per-sample (mixed-batch) inference on trained tasks."""

import pytest
import torch
from continual_helpers import TASKS, permuted, trained

from impresslearn import set_task
from impresslearn.continual import backbone as bb
from impresslearn.continual import inference
from impresslearn.continual.task_bank import TaskBank
from impresslearn.layers import ImpressLayer, impress_layers, random_basis


def impress(per_channel: bool, arch="lenet", tasks=4):
    kw = dict(arch="resnet18", width=4, outputs=10, classes=10) if arch == "resnet18" else dict(outputs=20)
    cfg = bb.BackboneConfig(**kw)
    shapes = bb.weight_shapes(bb.network(cfg))
    basis = {n: random_basis(s, 5, 0.3, seed=i) for i, (n, s) in enumerate(shapes.items())}
    model = bb.impress_model(cfg, basis, per_channel=per_channel, num_tasks=tasks)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ImpressLayer):
                for t in range(m.num_tasks):  # each task finished; halved so no logit reaches 1e7 in float32
                    m.load_alpha(t, 0.5 * torch.randn(m.alpha_shape(), generator=g))
            if hasattr(m, "bns"):  # distinct BatchNorm statistics per task
                for bn in m.bns:
                    bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g) * 0.1)
                    bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) + 0.5)
    return model.eval()


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("arch", ["lenet", "resnet18"])
def test_every_tasks_outputs_equal_the_models_own(per_channel, arch):
    model = impress(per_channel, arch)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 28, 28, generator=gen) if arch == "lenet" else torch.randn(3, 3, 16, 16, generator=gen)
    bank = TaskBank(model)
    logits = bank.logits(x)
    assert logits.shape[:2] == (4, 3)
    for s in range(4):
        set_task(model, s)
        with torch.no_grad():
            torch.testing.assert_close(logits[s], model(x), rtol=1e-4, atol=1e-4)


def test_supsup_tasks_and_the_mixture():
    cfg, model = trained("threshold")
    bank = TaskBank(model)
    x, _ = next(iter(permuted().test(1, 16)))
    model.eval()
    for s in range(len(TASKS)):
        set_task(model, s)
        with torch.no_grad():
            torch.testing.assert_close(bank.logits(x)[s], model(x), rtol=1e-5, atol=1e-5)
    # the mixture's weights are the superposition W ⊙ Σ beta_s M_s of the Impress view
    sup = inference.superposition_model(cfg, model)
    beta = torch.tensor([0.2, 0.5, 0.3])
    set_task(sup, beta)
    with torch.no_grad():
        torch.testing.assert_close(bank.mixture_logits(x, beta), sup(x), rtol=1e-4, atol=1e-4)
    assert bank.nbytes == sum(t.numel() * 4 for t in bank.stacked.values())


def test_sample_gradients_equal_one_backward_per_sample():
    model = impress(False)
    bank = TaskBank(model)
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    objective = inference.entropy
    grads = bank.sample_gradients(x, objective)
    assert grads.shape == (5, 4)
    for i in range(5):
        beta = torch.full((4,), 0.25, requires_grad=True)
        set_task(model, beta)
        (g,) = torch.autograd.grad(objective(model(x[i : i + 1])), beta)
        # float32 by two paths (the bank's vmapped functional pass, the layers' combine op): over 60
        # inputs they differed by at most 2e-4 of the gradient's largest component; a wrong sample
        # or a batch-mean gradient differs by its whole size
        assert (grads[i] - g).abs().max() <= 1e-3 * g.abs().max(), (grads[i], g)


def test_exhaustive_and_per_sample_inference_find_trained_tasks():
    cfg, model = trained("threshold")
    sup = inference.superposition_model(cfg, model)
    batches = lambda t: permuted().test(t, 128, shuffle=True, limit=2)  # noqa: E731
    res = inference.task_inference(sup, batches, list(TASKS), objective="H", method="exhaustive")
    assert res["method"] == "exhaustive" and res["input"] == "batch" and res["task_acc"] == 1.0
    mixed = inference.task_inference(sup, batches, list(TASKS), objective="H", method="exhaustive", inputs="mixed")
    assert mixed["input"] == "mixed" and mixed["samples"] == 3 * 2 * 128 and sum(map(sum, mixed["confusion"])) == 768
    assert mixed["task_acc"] > 1 / len(TASKS) + 0.2 and mixed["samples_per_s"] > 0  # per image: harder than per batch
    one = inference.task_inference(sup, batches, list(TASKS), objective="G", method="oneshot", inputs="mixed")
    assert one["input"] == "mixed" and one["method"] == "oneshot" and 0 <= one["task_acc"] <= 1


def test_mixed_batches_use_every_sample_once():
    seen = []
    for x, y, t in inference.mixed_batches(lambda task: permuted().test(task, 50, limit=2), list(TASKS), seed=3):
        assert x.shape[0] == y.shape[0] == t.shape[0] <= 50
        seen += t.tolist()
    assert sorted(seen) == sorted([s for s in range(len(TASKS)) for _ in range(100)])
    assert seen[:50] != sorted(seen[:50])  # shuffled across tasks


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="Impress or Supermask"):
        TaskBank(torch.nn.Linear(3, 3))
    bank = TaskBank(impress(False))
    with pytest.raises(ValueError, match="per-sample inference"):
        inference.infer_sample_tasks(bank, torch.randn(2, 1, 28, 28), method="binary")
    with pytest.raises(ValueError, match="inputs must be one of"):
        inference.task_inference(impress(False), lambda t: [], [0, 1, 2, 3], inputs="sideways")


def test_exhaustive_g_scores_the_superfluous_mass():
    # G's own value (logsumexp over every output) is largest for a confident task; the exhaustive
    # score is the log of the mass on the superfluous outputs, lowest for the task that fits.
    score = inference.sample_score("G", classes=2)
    confident = torch.tensor([[8.0, 0.0, -3.0, -3.0]])
    flat = torch.tensor([[0.5, 0.4, 0.3, 0.2]])
    assert score(confident) < score(flat)
    assert inference.sample_objective("G", classes=2)(confident) > inference.sample_objective("G", classes=2)(flat)
    torch.testing.assert_close(score(flat), torch.log(flat.softmax(-1)[:, 2:].sum(-1)))
    cfg, model = trained("threshold")  # 100 outputs
    sup = inference.superposition_model(cfg, model)
    batches = lambda t: permuted().test(t, 128, shuffle=True, limit=2)  # noqa: E731
    res = inference.task_inference(sup, batches, list(TASKS), objective="G", method="exhaustive")
    assert res["task_acc"] == 1.0
    with pytest.raises(ValueError, match="superfluous"):
        score(torch.zeros(1, 2))


def test_the_diagnosis_of_the_superposition():
    cfg, model = trained("threshold")
    sup = inference.superposition_model(cfg, model)
    batches = lambda t: permuted().test(t, 128, shuffle=True, limit=2)  # noqa: E731
    d = inference.diagnose_superposition(sup, batches, list(TASKS), objective="H")
    assert d["batches"] == 6 and 0 <= d["superposition_acc"] <= 1
    # one-shot's own choice, counted the same way: task_inference finds the task as often as the
    # diagnosis says the true component is the most negative
    res = inference.task_inference(sup, batches, list(TASKS), objective="H", method="oneshot")
    assert d["true_task_most_negative"] == res["task_acc"]
    assert d["true_task_most_negative"] + d["true_task_most_positive"] <= 1
    assert 0 <= d["true_task_mean_rank"] <= len(TASKS) - 1
    assert d["task_output_std"] > 0 and d["superposition_output_std"] > 0
    assert set(d["true_task_most_negative_by_layer"]) == {n for n, _ in impress_layers(sup)}
    assert all(0 <= v <= 1 for v in d["true_task_most_negative_by_layer"].values())


def test_layer_gradients_sum_to_the_gradient():
    model = impress(True)
    x = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    beta = torch.tensor([0.1, 0.2, 0.3, 0.4])
    parts = inference.layer_gradients(model, x, inference.entropy, beta)
    assert len(parts) == 3
    b = beta.clone().requires_grad_(True)
    set_task(model, b)
    (whole,) = torch.autograd.grad(inference.entropy(model(x)), b)
    torch.testing.assert_close(sum(parts.values()), whole, rtol=1e-4, atol=1e-6)
