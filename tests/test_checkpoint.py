"""Checkpoints: round trips, rebuilt backbones, version and damage checks, atomic saves."""

import json
import os

import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file

import impresslearn as il
from impresslearn import checkpoint, layers, models


def supermask_lenet(seed=0, tasks=2):
    return il.convert(models.lenet_300_100(), "supermask", density=0.1, seed=seed, num_tasks=tasks)


def outputs(model, x, tasks):
    outs = []
    for t in range(tasks):
        il.set_task(model, t)
        outs.append(model(x))
    return torch.stack(outs)


def test_supermask_round_trip_rebuilds_backbone(tmp_path):
    model = supermask_lenet(seed=0, tasks=3)
    path = tmp_path / "masks.safetensors"
    il.save_checkpoint(path, model, metadata={"benchmark": "permuted-mnist"})
    fresh = supermask_lenet(seed=99, tasks=1)  # other seed: the file's seeds must win
    meta = il.load_checkpoint(path, fresh)
    assert meta == {"benchmark": "permuted-mnist"}
    x = torch.randn(4, 784)
    torch.testing.assert_close(outputs(fresh, x, 3), outputs(model, x, 3))
    for (_, a), (_, b) in zip(layers.task_modules(model), layers.task_modules(fresh)):
        assert a.export_masks() == b.export_masks()
    # masks only: about 1 bit per weight per task, far below the float scores
    assert os.path.getsize(path) < 3 * 266_200 / 8 * 1.1 + 4096


def test_impress_round_trip_with_batchnorm_and_scores(tmp_path):
    model = il.convert(models.cifar_resnet18(num_classes=5, width=8), "impress", basis_size=3, per_channel=True,
                       num_tasks=2, seed=4)
    model.train()
    il.set_task(model, 1)
    with torch.no_grad():
        for _, m in layers.task_modules(model):
            if isinstance(m, layers.ImpressLayer):
                m.alpha[1].normal_()
        model(torch.randn(4, 3, 32, 32))  # moves task 1's BatchNorm statistics
    path = tmp_path / "impress.safetensors"
    il.save_checkpoint(path, model)
    fresh = il.convert(models.cifar_resnet18(num_classes=5, width=8), "impress", basis_size=1, seed=0)
    il.load_checkpoint(path, fresh)
    model.eval(), fresh.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(outputs(fresh, x, 2), outputs(model, x, 2))


def test_scores_and_kept_weights(tmp_path):
    model = il.convert(nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 2)), "supermask", init="keep",
                       mask="threshold", density=0.5)
    path = tmp_path / "s.safetensors"
    il.save_checkpoint(path, model, include_scores=True)
    header, tensors = checkpoint.read_checkpoint(path)
    assert header["layers"]["0"]["weights_included"] and "0.scores" in tensors
    fresh = il.convert(nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 2)), "supermask", init="keep",
                       mask="threshold", density=0.5)
    il.load_checkpoint(path, fresh)
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(model[0].weight, fresh[0].weight) and torch.equal(model[0].bias, fresh[0].bias)


def test_other_format_version(tmp_path):
    path = tmp_path / "v.safetensors"
    il.save_checkpoint(path, supermask_lenet())
    header, tensors = checkpoint.read_checkpoint(path)
    header["format_version"] = 999
    save_file(tensors, path, metadata={"impresslearn": json.dumps(header)})
    with pytest.raises(checkpoint.CheckpointError, match="format version 999"):
        il.load_checkpoint(path, supermask_lenet())


def test_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "t.safetensors"
    il.save_checkpoint(path, supermask_lenet())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="truncated or corrupt"):
        il.load_checkpoint(path, supermask_lenet())
    save_file({"x": torch.zeros(2)}, path)
    with pytest.raises(checkpoint.CheckpointError, match="not an impresslearn checkpoint"):
        il.load_checkpoint(path, supermask_lenet())


def test_model_mismatch(tmp_path):
    path = tmp_path / "m.safetensors"
    il.save_checkpoint(path, supermask_lenet())
    with pytest.raises(checkpoint.CheckpointError, match="do not match"):
        il.load_checkpoint(path, il.convert(models.lenet_300_100(hidden=(300, 50))[:4], "supermask"))
    with pytest.raises(checkpoint.CheckpointError, match="ImpressLinear"):
        il.load_checkpoint(path, il.convert(models.lenet_300_100(), "impress", basis_size=2))


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
def test_interrupted_save_keeps_old_file(tmp_path, monkeypatch, fail_at):
    path = tmp_path / "a.safetensors"
    old = supermask_lenet(seed=1)
    il.save_checkpoint(path, old)
    before = path.read_bytes()

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, fail_at, interrupt)
    with pytest.raises(KeyboardInterrupt):
        il.save_checkpoint(path, supermask_lenet(seed=2, tasks=4))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["a.safetensors"]  # no temporary file left behind
