"""GN task inference: objectives by hand, the superposition through the combine op, one-shot and
binary search over SupSup masks and ImpressLearn tasks."""

import math

import pytest
import torch
from continual_helpers import TASKS, permuted, trained

from impresslearn import set_task
from impresslearn.continual import alpha, inference, masks
from impresslearn.continual.backbone import impress_model
from impresslearn.continual.training import TrainConfig


def test_entropy_and_g_by_hand():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0]])
    h = inference.entropy(logits)
    p = torch.softmax(logits[1], 0)
    assert h.item() == pytest.approx((math.log(4) - (p * p.log()).sum().item()) / 2)
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0]], requires_grad=True)
    g = inference.g_objective(logits, classes=2)
    assert g.item() == pytest.approx(torch.logsumexp(logits[0], 0).item())
    g.backward()
    assert torch.all(logits.grad[0, :2] == 0) and torch.all(logits.grad[0, 2:] > 0)  # real outputs detached
    with pytest.raises(ValueError, match="superfluous"):
        inference.g_objective(torch.zeros(2, 10), classes=10)


@pytest.mark.parametrize("kind,objective", [("topk", "H"), ("threshold", "G"), ("threshold", "H")])
def test_one_shot_finds_the_task_among_three(kind, objective):
    cfg, model = trained(kind)
    sup = inference.superposition_model(cfg, model)
    res = inference.task_inference(
        sup, lambda t: permuted().test(t, 128, shuffle=True, limit=4), list(TASKS), objective=objective
    )
    assert res["batches"] == 12
    assert res["task_acc"] >= 0.9, res["confusion"]
    assert res["acc"] > 0.6


def test_binary_search_agrees_with_one_shot_on_clear_cases():
    cfg, model = trained("threshold")
    sup = inference.superposition_model(cfg, model)
    for t in TASKS:
        x, _ = next(iter(permuted().test(t, 128)))
        one = inference.infer_task(sup, x, "G", method="oneshot")
        two = inference.infer_task(sup, x, "G", method="binary")
        assert one == two == TASKS.index(t)
    with pytest.raises(ValueError):
        inference.infer_task(sup, x, "G", method="ternary")


def test_first_image_inference_returns_a_task():
    cfg, model = trained("threshold")
    sup = inference.superposition_model(cfg, model)
    x, _ = next(iter(permuted().test(1, 128)))
    assert inference.infer_task(sup, x, "G", first_image=True) in range(3)


def test_impresslearn_tasks_superpose_as_beta_at_A_and_are_found():
    cfg, model = trained("topk")
    b = masks.task_masks(model)
    imp = impress_model(cfg, b, per_channel=True, num_tasks=3)
    tr = TrainConfig(optimizer="adam", lr=1e-2, epochs=1.0)
    for s, t in enumerate((7, 8, 9)):
        alpha.fit_alpha(imp, s, permuted().train(t, 128, seed=s), tr, progress=False)
    beta = torch.tensor([0.2, 0.5, 0.3])
    set_task(imp, beta)
    layer = imp[1]
    A = layer.alphas  # every task finished: its alpha a row
    torch.testing.assert_close(layer.current_alpha(), torch.tensordot(beta, A, dims=1))
    res = inference.task_inference(imp, lambda t: permuted().test(t, 128, shuffle=True, limit=4), [7, 8, 9], objective="H")
    assert res["task_acc"] >= 0.75, res["confusion"]


def test_inference_over_a_vit():
    """A ViT (its attention projections masked): whole batches and mixed batches are inferred
    with a task per sample (the attention computed from the projections' own outputs), as one
    forward per task finds them; the diagnosis superposes through the model itself."""
    import torchvision

    import impresslearn as il

    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=16, num_classes=10
    )
    model = il.convert(vit, "supermask", density=0.5, num_tasks=2, seed=0)
    for t in range(2):
        il.set_task(model, t)
        il.finish_task(model)
    data = {t: [(torch.randn(8, 3, 16, 16) + 3 * t, torch.randint(0, 10, (8,)))] for t in (5, 6)}
    res = inference.task_inference(model, lambda t: data[t], [5, 6], method="exhaustive")
    manual = [
        int(inference.sample_score("H", 10)(inference.every_task_logits(model, x)).mean(1).argmin())
        for t in (5, 6)
        for x, _ in data[t]
    ]
    assert res["batches"] == 2 and [row.index(1) for row in res["confusion"]] == manual
    diag = inference.diagnose_superposition(model, lambda t: data[t], [5, 6])
    assert "encoder.layers.encoder_layer_0.self_attention.in_proj" in diag["true_task_most_negative_by_layer"]
    mixed = inference.task_inference(model, lambda t: data[t], [5, 6], method="exhaustive", inputs="mixed")
    x = torch.cat([data[t][0][0] for t in (5, 6)])
    own = []
    for t in range(2):
        il.set_task(model, t)
        with torch.no_grad():
            own.append(model(x))
    per_sample = inference.sample_score("H", 10)(torch.stack(own)).argmin(0)
    found = sum(int((per_sample[i * 8 : (i + 1) * 8] == i).sum()) for i in range(2))
    assert mixed["samples"] == 16 and mixed["task_acc"] == found / 16


def test_hybrid_tasks_of_a_resnet_are_inferred_on_the_model_itself():
    """A hybrid model (the stem a SupSup mask per task, alphas elsewhere) takes a mixture in every
    layer: one-shot and exhaustive inference run on it as converted, no superposition model built."""
    import torchvision

    import impresslearn as il

    torch.manual_seed(0)
    model = il.convert(
        torchvision.models.resnet18(num_classes=10),
        "impress",
        basis_size=2,
        density=0.5,
        num_tasks=3,
        seed=0,
        per_channel=True,
        overrides={"conv1": "supermask"},
    )
    for t in range(3):
        il.set_task(model, t)
        with torch.no_grad():
            for p in il.task_parameters(model, t):
                p.add_(torch.randn_like(p) * 0.5)
        il.finish_task(model)
    x = torch.randn(4, 3, 32, 32)
    scores = inference.sample_score("H", 10)(inference.every_task_logits(model, x)).mean(1)
    assert inference.infer_task(model, x, "H", method="exhaustive") == int(scores.argmin())
    g = inference._gradient(model.eval(), x, inference.objective_fn("H", 10), torch.full((3,), 1 / 3))
    assert inference.infer_task(model, x, "H", method="oneshot") == int(g.argmin())
