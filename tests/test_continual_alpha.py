"""ImpressLearn alpha fitting on the shipped subset: eq. 1 and 2, per layer and per channel, hybrid,
L-BFGS, and basis-GN."""

import pytest
import torch
from continual_helpers import TASKS, eval_batches, permuted, trained

from impresslearn import layers, set_task
from impresslearn.continual import alpha, basis, masks, metrics
from impresslearn.continual.backbone import impress_model
from impresslearn.continual.inference import superposition_model
from impresslearn.continual.training import TrainConfig
from impresslearn.layers import ImpressLinear, SupermaskLinear

FAST = TrainConfig(optimizer="adam", lr=1e-2, epochs=1.0, batch_size=128)


def task_basis(kind="topk"):
    cfg, model = trained(kind)
    return cfg, masks.task_masks(model)


def test_one_hot_alpha_reproduces_the_mask_exactly():
    cfg, model = trained("topk")
    sup = superposition_model(cfg, model)
    x, _ = next(iter(eval_batches(2)))
    for s in range(len(TASKS)):
        set_task(model, s)
        set_task(sup, s)
        torch.testing.assert_close(sup(x), model(x), rtol=1e-5, atol=1e-5)


def test_alphas_start_at_one_over_k_and_have_the_right_shapes():
    cfg, b = task_basis()
    per_layer = impress_model(cfg, b)
    per_channel = impress_model(cfg, b, per_channel=True)
    for (_name, m), (_, mc) in zip(layers.impress_layers(per_layer), layers.impress_layers(per_channel)):
        assert tuple(m.task_alpha(0).shape) == (3,) and torch.allclose(m.task_alpha(0), torch.full((3,), 1 / 3))
        assert tuple(mc.task_alpha(0).shape) == (3, m.weight.shape[0])


def test_penalty_is_eq2_by_hand():
    cfg, b = task_basis()
    model = impress_model(cfg, b)
    vals = [torch.tensor([0.5, -0.25, 1.0]), torch.tensor([0.1, 0.1, 0.1]), torch.tensor([-1.0, 0.0, 0.0])]
    with torch.no_grad():
        for (_, m), v in zip(layers.impress_layers(model), vals):
            m.task_alpha(0).copy_(v)
    expected = (1.75 - 1) ** 2 + (0.3 - 1) ** 2 + (1.0 - 1) ** 2
    assert alpha.alpha_penalty(model, 0).item() == pytest.approx(expected)
    pc = impress_model(cfg, b, per_channel=True)  # at 1/K every channel sums to exactly 1
    assert alpha.alpha_penalty(pc, 0).item() == pytest.approx(0.0, abs=1e-9)


def test_fit_learns_only_the_task_alphas_and_per_channel_learns_a_new_task():
    cfg, b = task_basis()
    model = impress_model(cfg, b, per_channel=True, num_tasks=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    task0 = [m.task_alpha(0).detach().clone() for _, m in layers.impress_layers(model)]
    alpha.fit_alpha(model, 1, permuted().train(7, 128, seed=0), FAST, progress=False)
    after = model.state_dict()
    # the task is finished: its alphas are rows of the `alphas` buffers; the slot holds nothing
    assert all(after[k].numel() == 0 for k in after if k.endswith("live_alpha"))
    changed = {k for k, v in after.items() if not k.endswith("live_alpha") and not torch.equal(before[k], v)}
    assert changed == {"1.alphas", "3.alphas", "5.alphas"}
    for (_, m), a in zip(layers.impress_layers(model), task0):  # task 0's own alphas: untouched
        assert torch.equal(m.task_alpha(0), a) and not torch.equal(m.alphas[1], before[f"{_}.alphas"][1])
    acc = metrics.accuracy(model, eval_batches(7), task=1)
    assert acc > 0.5, acc  # a new permutation from 3 impressions, 1 epoch on 6,000 images


def test_large_lambda_pulls_the_alpha_sums_to_one():
    cfg, b = task_basis()
    model = impress_model(cfg, b)
    with torch.no_grad():
        for _, m in layers.impress_layers(model):
            m.task_alpha(0).mul_(3)  # sums start at 3
    alpha.fit_alpha(
        model, 0, permuted().train(7, 128), TrainConfig(optimizer="adam", lr=5e-2, iterations=60), lam=100.0, progress=False
    )
    sums = [m.task_alpha(0).abs().sum().item() for _, m in layers.impress_layers(model)]
    assert all(abs(s - 1) < 0.2 for s in sums), sums  # from 3, against the cross-entropy
    with pytest.raises(ValueError):
        alpha.fit_alpha(model, 0, permuted().train(7, 128), FAST, lam=-1.0)


def test_hybrid_learns_a_last_layer_mask_with_the_alphas():
    cfg, b = task_basis()
    model = impress_model(cfg, {k: v for k, v in b.items() if k != "5"} | {"5": b["5"]}, hybrid=True)
    assert isinstance(model[5], SupermaskLinear) and isinstance(model[1], ImpressLinear)
    params = alpha.alpha_params(model, 0)
    assert len(params) == 3 and params[-1] is model[5].live_scores
    start = model[5].task_floats(0).detach().clone()
    alpha.fit_alpha(model, 0, permuted().train(7, 128), FAST, progress=False, finish=False)
    assert not torch.equal(start, model[5].task_floats(0))
    with pytest.raises(ValueError, match="L-BFGS"):
        alpha.fit_alpha(model, 0, permuted().train(7, 128), TrainConfig(optimizer="lbfgs", lr=1.0, iterations=2))


def test_hybrid_first_keeps_a_first_layer_mask_and_superposes_exactly():
    cfg, b = task_basis()
    model = impress_model(cfg, b, hybrid="first", per_channel=True, num_tasks=2)
    assert isinstance(model[1], SupermaskLinear) and isinstance(model[5], ImpressLinear)
    alpha.fit_alpha(model, 0, permuted().train(7, 128), FAST, progress=False)
    torch.manual_seed(0)
    with torch.no_grad():  # task 1: other alphas and scores than task 0's
        model[1].task_floats(1).normal_()
        for _, m in layers.impress_layers(model):
            m.task_alpha(1).normal_()
    sup = superposition_model(cfg, model)
    assert not layers.supermask_layers(sup) and sup[1].basis_size == 2
    x, _ = next(iter(eval_batches(2)))
    outs = []
    for s in range(2):
        set_task(model, s)
        set_task(sup, s)
        outs.append(model(x))
        torch.testing.assert_close(sup(x), outs[-1], rtol=1e-5, atol=1e-5)
        set_task(sup, torch.nn.functional.one_hot(torch.tensor(s), 2).float())  # a one-hot mixture too
        torch.testing.assert_close(sup(x), outs[-1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(outs[0], outs[1])
    with pytest.raises(ValueError, match="hybrid must be one of"):
        impress_model(cfg, b, hybrid="middle")


def test_full_batch_lbfgs_lowers_the_loss():
    cfg, b = task_basis()
    model = impress_model(cfg, b, per_channel=True)
    data = permuted().train(7, 6000)
    x, y = next(iter(data))
    loss0 = torch.nn.functional.cross_entropy(model(x), y).item()
    out = alpha.fit_alpha(model, 0, data, TrainConfig(optimizer="lbfgs", lr=1.0, iterations=10), progress=False)
    assert out["loss"] < 0.7 * loss0, (loss0, out)


def test_basis_gn_points_at_the_tasks_own_mask():
    cfg, b = task_basis()
    for k in (0, 2):
        model = impress_model(cfg, b)
        res = alpha.basis_gn(model, 0, permuted().train(TASKS[k], 128, seed=5), FAST, k, progress=False)
        assert res["found"], res["favoured"]
        assert metrics.accuracy(model, eval_batches(TASKS[k]), task=0) > 0.6


def test_random_and_homogeneous_bases():
    cfg, _ = task_basis()
    r = basis.random_basis(cfg, 4, seed=1)
    assert basis.basis_size(r) == 4
    dense = r["1"].unpack().reshape(4, -1)
    assert (dense.sum(1) == dense.sum(1)[0]).all() and not torch.equal(dense[0], dense[1])
    assert basis.random_basis(cfg, 4, seed=1)["1"] == r["1"]
    tr = TrainConfig(optimizer="rmsprop", lr=3e-4, iterations=10)
    h = basis.homogeneous_basis(cfg, 2, lambda t: permuted().train(0, 128, seed=t), tr, progress=False)
    m = h["1"].unpack()
    assert m.shape[0] == 2 and not torch.equal(m[0], m[1])  # same task, different seeds
    both = basis.concat([basis.select(r, [0]), basis.select(h, [1])])
    assert basis.basis_size(both) == 2 and torch.equal(both["3"].unpack()[1], h["3"].unpack()[1])
