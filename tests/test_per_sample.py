"""A task per sample (TaskRows) and each sample's own gradient with respect to a mixture
(SampleMixture), on the library's models and on torchvision models it did not write: every
task's outputs in one pass equal the model's own per task; per-sample gradients equal one backward
per sample (or finite differences, where BatchNorm mixes running statistics); exhaustive and
per-sample (mixed-batch) inference on trained tasks; what a model that cannot take a task per
sample says."""

import copy

import pytest
import torch
import torchvision
from continual_helpers import TASKS, permuted, trained

import impresslearn as il
from impresslearn import set_task
from impresslearn.continual import backbone as bb
from impresslearn.continual import inference
from impresslearn.layers import (
    ImpressLayer,
    SampleMixture,
    TaskRows,
    finish_task,
    impress_layers,
    per_sample_supported,
    random_basis,
    task_modules,
)


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


def torchvision_model(name: str, mode: str, tasks: int = 3) -> tuple[torch.nn.Module, torch.Tensor]:
    """A torchvision model built without weights, converted as a user would, its tasks made
    distinct (scores or alphas moved, per-task BatchNorm statistics drawn) and finished."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    if name == "vit":
        net = torchvision.models.VisionTransformer(
            image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
        )
    elif name == "convnext":
        net = torchvision.models.convnext_tiny(num_classes=10)
        x = x[:3]
    else:
        net = {"resnet18": torchvision.models.resnet18, "mobilenet": torchvision.models.mobilenet_v3_small}[name](num_classes=10)
    kw = dict(density=0.5, num_tasks=tasks, seed=0)
    net = (
        il.convert(net, "supermask", **kw)
        if mode == "supermask"
        else il.convert(net, "impress", basis_size=2, per_channel=True, **kw)
    )
    g = torch.Generator().manual_seed(1)
    for t in range(tasks):
        set_task(net, t)
        with torch.no_grad():
            for _, m in task_modules(net):
                if hasattr(m, "slot") and m.slot.numel():
                    m.slot.add_(0.3 * torch.randn(m.slot.shape, generator=g))
                if hasattr(m, "bns"):
                    m.bns[t].running_mean.copy_(torch.randn(m.num_features, generator=g))
                    m.bns[t].running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        finish_task(net, t)
    return net.eval(), x


MODELS = [(n, m) for n in ("vit", "resnet18", "mobilenet", "convnext") for m in ("supermask", "impress")]


@pytest.mark.parametrize("name, mode", MODELS, ids=[f"{n}-{m}" for n, m in MODELS])
def test_a_task_per_sample_on_torchvision_models(name, mode):
    """One forward with a task per sample equals each sample run under its own task, and every
    task's outputs at once equal the model's own per task (ViT attention, LayerNorm, BatchNorm,
    depthwise and grouped convolutions, squeeze-excitation)."""
    net, x = torchvision_model(name, mode)
    assert per_sample_supported(net)
    with torch.no_grad():
        own = []
        for t in range(3):
            set_task(net, t)
            own.append(net(x))
        own = torch.stack(own)
        tasks = torch.tensor([2, 0, 1, 2][: x.shape[0]])
        set_task(net, TaskRows(tasks))
        mixed = net(x)
    torch.testing.assert_close(mixed, own[tasks, torch.arange(x.shape[0])], rtol=1e-4, atol=1e-5)
    every = inference.every_task_logits(net, x, tasks_per_pass=2)  # two passes: 2 tasks, then 1
    torch.testing.assert_close(every, own, rtol=1e-4, atol=1e-5)


def per_sample_oracle(model, x, objective, n, eps=1e-6):
    """[B, n] by central differences in float64: each sample alone, the mixture beta moved by ±eps
    (small: a ReLU's kink within a larger step bends the difference by percents)."""
    model = copy.deepcopy(model).double()
    beta = torch.full((n,), 1.0 / n, dtype=torch.float64)
    out = torch.empty(x.shape[0], n, dtype=torch.float64)
    with torch.no_grad():
        for i in range(x.shape[0]):
            for s in range(n):
                vals = []
                for sign in (1, -1):
                    b = beta.clone()
                    b[s] += sign * eps
                    set_task(model, SampleMixture(b, torch.zeros(1, n, dtype=torch.float64)))
                    vals.append(objective(model(x[i : i + 1].double())).sum())
                out[i, s] = (vals[0] - vals[1]) / (2 * eps)
    return out


@pytest.mark.parametrize("name, mode", [("resnet18", "impress"), ("mobilenet", "supermask"), ("vit", "impress")])
def test_sample_gradients_on_torchvision_models(name, mode):
    """Each sample's gradient from one forward and one backward equals central differences of
    that sample alone (BatchNorm normalising each sample with the mixture of running statistics)."""
    net, x = torchvision_model(name, mode)
    objective = inference.sample_objective("H", 10)
    grads = inference.sample_gradients(net, x, objective)
    want = per_sample_oracle(net, x, objective, 3)
    torch.testing.assert_close(grads.double(), want, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("arch", ["lenet", "resnet18"])
def test_every_tasks_outputs_equal_the_models_own(per_channel, arch):
    model = impress(per_channel, arch)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 28, 28, generator=gen) if arch == "lenet" else torch.randn(3, 3, 16, 16, generator=gen)
    logits = inference.every_task_logits(model, x)
    assert logits.shape[:2] == (4, 3)
    for s in range(4):
        set_task(model, s)
        with torch.no_grad():  # float32 through 18 layers, convolutions over other batch sizes: logits of ~70 agree to 1e-4 of it
            torch.testing.assert_close(logits[s], model(x), rtol=3e-4, atol=1e-4)


def test_supsup_tasks_every_task_and_rows():
    cfg, model = trained("threshold")
    x, _ = next(iter(permuted().test(1, 16)))
    model.eval()
    logits = inference.every_task_logits(model, x)
    for s in range(len(TASKS)):
        set_task(model, s)
        with torch.no_grad():
            torch.testing.assert_close(logits[s], model(x), rtol=1e-5, atol=1e-5)
    tasks = torch.arange(16) % len(TASKS)
    torch.testing.assert_close(inference.rows_forward(model, x, tasks), logits[tasks, torch.arange(16)], rtol=1e-5, atol=1e-5)


def test_sample_gradients_equal_one_backward_per_sample():
    model = impress(False)
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    objective = inference.entropy
    grads = inference.sample_gradients(model, x, lambda logits: torch.stack([objective(r[None]) for r in logits]))
    assert grads.shape == (5, 4)
    for i in range(5):
        beta = torch.full((4,), 0.25, requires_grad=True)
        set_task(model, beta)
        (g,) = torch.autograd.grad(objective(model(x[i : i + 1])), beta)
        assert (grads[i] - g).abs().max() <= 1e-4 * g.abs().max(), (grads[i], g)


def test_supsup_sample_gradients_match_the_superposition_model():
    """A SupSup model's own mixture (its finished masks combined) gives the same per-sample
    gradients as its superposition as an Impress model."""
    cfg, model = trained("threshold")
    sup = inference.superposition_model(cfg, model)
    x, _ = next(iter(permuted().test(2, 8)))
    objective = inference.sample_objective("G", 10)
    torch.testing.assert_close(
        inference.sample_gradients(model, x, objective), inference.sample_gradients(sup, x, objective), rtol=1e-4, atol=1e-5
    )


def test_exhaustive_and_per_sample_inference_find_trained_tasks():
    cfg, model = trained("threshold")
    sup = inference.superposition_model(cfg, model)
    batches = lambda t: permuted().test(t, 128, shuffle=True, limit=2)  # noqa: E731
    res = inference.task_inference(sup, batches, list(TASKS), objective="H", method="exhaustive")
    assert res["method"] == "exhaustive" and res["input"] == "batch" and res["task_acc"] == 1.0
    mixed = inference.task_inference(sup, batches, list(TASKS), objective="H", method="exhaustive", inputs="mixed")
    assert mixed["input"] == "mixed" and mixed["samples"] == 3 * 2 * 128 and sum(map(sum, mixed["confusion"])) == 768
    assert mixed["task_acc"] > 1 / len(TASKS) + 0.2 and mixed["samples_per_s"] > 0  # per image: harder than per batch
    one = inference.task_inference(model, batches, list(TASKS), objective="G", method="oneshot", inputs="mixed")
    assert one["input"] == "mixed" and one["method"] == "oneshot" and one["task_acc"] > 0.9


def test_mixed_batches_use_every_sample_once():
    seen = []
    for x, y, t in inference.mixed_batches(lambda task: permuted().test(task, 50, limit=2), list(TASKS), seed=3):
        assert x.shape[0] == y.shape[0] == t.shape[0] <= 50
        seen += t.tolist()
    assert sorted(seen) == sorted([s for s in range(len(TASKS)) for _ in range(100)])
    assert seen[:50] != sorted(seen[:50])  # shuffled across tasks


def test_bad_requests_are_refused():
    model = impress(False)
    with pytest.raises(ValueError, match="per-sample inference"):
        inference.infer_sample_tasks(model, torch.randn(2, 1, 28, 28), method="binary")
    with pytest.raises(IndexError, match=r"task ids must lie in \[0, 4\)"):
        set_task(model, TaskRows(torch.tensor([0, 4])))
    set_task(model, TaskRows(torch.tensor([0, 1, 2])))
    with pytest.raises(ValueError, match="a batch of 2 samples was given 3 tasks"):
        model(torch.randn(2, 1, 28, 28))
    with pytest.raises(RuntimeError, match="no one effective weight"):
        next(m for _, m in impress_layers(model)).effective_weight()
    set_task(model, 0)
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


def test_a_model_that_cannot_take_a_task_per_sample_says_so_and_is_left_as_it_was():
    """Kernel-wise masks take one task per batch: every_task_logits runs them one forward per
    task, and a task per sample is refused in a sentence before any module changes."""
    from impresslearn.kernel_masks import convert_kernelwise

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 5))
    net = convert_kernelwise(net, num_tasks=2).eval()
    assert not per_sample_supported(net)
    set_task(net, 1)
    with pytest.raises(NotImplementedError, match="cannot take a task per sample"):
        set_task(net, TaskRows(torch.tensor([0, 1])))
    assert all(m.task == 1 and m.rows is None for _, m in task_modules(net))
    x = torch.randn(2, 3, 6, 6)
    every = inference.every_task_logits(net, x)
    for t in range(2):
        set_task(net, t)
        with torch.no_grad():
            torch.testing.assert_close(every[t], net(x))


class _Attend(torch.nn.Module):
    def __init__(self, batch_first):
        super().__init__()
        self.mha = torch.nn.MultiheadAttention(8, 2, batch_first=batch_first)

    def forward(self, x, **kw):
        return self.mha(x, x, x, **kw)


@pytest.mark.parametrize("batch_first", [True, False])
def test_masked_attention_with_a_task_per_sample_matches_its_own_function(batch_first):
    """The attention a task per sample computes from its projections' outputs equals
    nn.MultiheadAttention's under each task: weights asked for or not, padding and causal masks."""
    net = il.convert(_Attend(batch_first), "supermask", density=0.5, num_tasks=2, seed=0)
    g = torch.Generator().manual_seed(0)
    for t in range(2):
        set_task(net, t)
        finish_task(net, t)
    net.eval()
    x = torch.randn(3, 5, 8, generator=g)  # [batch, length, embed]
    xin = x if batch_first else x.transpose(0, 1)
    pad = torch.tensor([[False] * 5, [False, False, False, True, True], [False] * 4 + [True]])
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)
    tasks = torch.tensor([1, 0, 1])
    for kw in ({}, {"need_weights": False}, {"key_padding_mask": pad}, {"attn_mask": causal, "need_weights": False}):
        own = []
        for t in range(2):
            set_task(net, t)
            with torch.no_grad():
                own.append(net(xin, **kw))
        set_task(net, TaskRows(tasks))
        with torch.no_grad():
            out, weights = net(xin, **kw)
        b = 0 if batch_first else 1
        want = torch.stack([own[t][0].select(b, i) for i, t in enumerate(tasks.tolist())], b)
        torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)
        if kw.get("need_weights", True):
            torch.testing.assert_close(weights, torch.stack([own[t][1][i] for i, t in enumerate(tasks.tolist())]))
        else:
            assert weights is None
