"""Mask training on the shipped subset: masks learn, stay exact when stored, and nothing is forgotten."""

import copy

import pytest
import torch
from continual_helpers import TASKS, eval_batches, permuted, trained

from impresslearn import set_task
from impresslearn.continual import masks, metrics
from impresslearn.continual.backbone import BackboneConfig, supermask_model
from impresslearn.continual.training import TrainConfig
from impresslearn.layers import supermask_layers
from impresslearn.ops import popup_k


@pytest.mark.parametrize("kind", ["topk", "threshold"])
def test_a_learned_mask_beats_chance_by_far(kind):
    cfg, model = trained(kind)
    for i, t in enumerate(TASKS):
        acc = metrics.accuracy(model, eval_batches(t), task=i)
        assert acc > 0.6, f"{kind} mask {i}: {acc}"  # chance is 0.1


def test_untrained_scores_are_near_chance():
    cfg, _ = trained("topk")
    fresh = supermask_model(cfg, num_tasks=1)
    assert metrics.accuracy(fresh, eval_batches(0), task=0) < 0.35


def test_topk_masks_keep_the_density_and_threshold_masks_learn_theirs():
    cfg, model = trained("topk")
    for name, p in masks.task_masks(model).items():
        dense = p.unpack()
        kept = dense.reshape(dense.shape[0], -1).sum(1)
        assert (kept == popup_k(dense[0].numel(), 0.1)).all(), name
    _, thr = trained("threshold")
    d = [p.unpack().float().mean().item() for p in masks.task_masks(thr).values()]
    assert all(0.3 < v < 0.7 for v in d)  # SupSup's scores >= 0 masks keep about half


def test_training_a_task_leaves_the_backbone_and_other_tasks_untouched():
    cfg, model = trained("topk")
    model = copy.deepcopy(model)
    masks.load_task_masks(model, masks.task_masks(model))  # every task finished
    with pytest.raises(RuntimeError, match="task 1 is finished"):
        masks.task_scores(model, 1)
    for _, m in supermask_layers(model):  # trained further from scores that select its mask
        m.reopen_task(1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # reopened top-k scores are 0 or 1: a step large enough to move some across the threshold
    tr = TrainConfig(optimizer="rmsprop", lr=0.5, epochs=1.0, iterations=5)
    masks.train_mask(model, 1, permuted().train(5, 128), tr, progress=False)
    after = model.state_dict()
    changed = {k for k in before if not k.endswith("live_scores") and not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(".masks") for k in changed)
    for k in changed:  # only task 1's row of the packed masks
        assert torch.equal(before[k][[0, 2]], after[k][[0, 2]]) and not torch.equal(before[k][1], after[k][1])


def test_stored_masks_come_back_exactly():
    cfg, model = trained("topk")
    stored = masks.task_masks(model)
    fresh = supermask_model(cfg, num_tasks=1)
    masks.load_task_masks(fresh, stored)
    x, _ = next(iter(eval_batches(1)))
    for i in range(len(TASKS)):
        set_task(model, i)
        set_task(fresh, i)
        torch.testing.assert_close(model(x), fresh(x))
    with pytest.raises(KeyError):
        masks.load_task_masks(fresh, {"1": next(iter(stored.values()))})


def test_measured_forgetting_is_zero_for_frozen_masks():
    cfg = BackboneConfig()
    model = supermask_model(cfg, num_tasks=3)
    tr = TrainConfig(optimizer="rmsprop", lr=3e-4, epochs=1.0, iterations=15)
    R = metrics.AccuracyMatrix(3)
    for i in range(3):
        masks.train_mask(model, i, permuted().train(i, 128, seed=i), tr, progress=False)
        R.measure_row(i, lambda j: metrics.accuracy(model, eval_batches(j), task=j))
    assert R.forgetting() == 0.0 and R.backward_transfer() == 0.0
    assert all(R.R[2][j] == R.R[j][j] for j in range(3))


def test_presets_and_bad_configs():
    cfg, tr = masks.preset("supsup")
    assert (cfg.mask, cfg.init, cfg.scale, cfg.outputs) == ("threshold", "signed_constant", False, 100)
    assert (tr.optimizer, tr.lr, tr.iterations) == ("rmsprop", 1e-4, 1000)
    cfg, tr = masks.preset("topk-0.1")
    assert (cfg.mask, cfg.density, cfg.scale, tr.lr, tr.epochs) == ("topk", 0.1, True, 3e-4, 1.0)
    with pytest.raises(ValueError):
        masks.preset("nope")
    with pytest.raises(ValueError):
        BackboneConfig(outputs=5)
    with pytest.raises(ValueError):
        TrainConfig(optimizer="adagrad")
