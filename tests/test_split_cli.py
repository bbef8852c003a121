"""`impresslearn run --benchmark split-cifar100|split-imagenet` on the synthetic stand-in: ResNet-50
end to end at a tiny size, learning on SplitCIFAR-100's shapes, and clear errors."""

import json

import pytest

from impresslearn import cli, load_checkpoint
from impresslearn.continual import backbone as bb
from impresslearn.continual.basis_file import load_basis
from impresslearn.experiments.split import SplitConfig


def test_split_imagenet_resnet50_smoke(tmp_path, capsys, one_thread):
    out = tmp_path / "inet.json"
    assert (
        cli.main(
            [
                "run",
                "--benchmark",
                "split-imagenet",
                "--synthetic",
                "--synthetic-train",
                "1",
                "--synthetic-test",
                "1",
                "--image-size",
                "32",
                "--basis",
                "random",
                "-K",
                "1",
                "--new-tasks",
                "1",
                "--no-supsup",
                "--alpha-iterations",
                "1",
                "--batch-size",
                "4",
                "--eval-batches",
                "1",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert r["status"] == "done" and r["backbone"]["arch"] == "resnet50" and r["lam"] == 0.005
    assert r["alpha_training"]["lr"] == 0.0025 and r["alpha_training"]["optimizer"] == "adam"
    assert r["storage"]["impresslearn_alphas"] == 54  # K = 1 for 53 convolutions and the head
    assert len(r["impresslearn"]["new_task_acc"]) == 1 and r["impresslearn"]["fits"][0]["steps"] == 1
    # The saved model is a standard checkpoint: load it into a freshly converted ResNet-50.
    basis, meta = load_basis(tmp_path / "inet.json.run" / "basis.safetensors")
    assert meta["basis"] == "random" and next(iter(basis.values())).num_masks == 1
    cfg = bb.BackboneConfig(arch="resnet50", outputs=10, classes=10, init="kaiming_normal", scale=False)
    model = bb.impress_model(cfg, basis)
    load_checkpoint(tmp_path / "inet.json.run" / "impress.safetensors", model)
    assert model.fc.task_alpha(0).tolist() == pytest.approx(r["impresslearn"]["alpha"]["fc"][0])
    assert "ImpressLearn (random K=1)" in capsys.readouterr().out


def test_split_cifar100_masks_learn_the_synthetic_tasks(tmp_path, one_thread):
    out = tmp_path / "cifar.json"
    assert (
        cli.main(
            [
                "run",
                "--benchmark",
                "split-cifar100",
                "--synthetic",
                "--synthetic-train",
                "8",
                "--synthetic-test",
                "8",
                "--width",
                "8",
                "-K",
                "1",
                "--basis",
                "random",
                "--new-tasks",
                "2",
                "--mask-lr",
                "0.003",
                "--mask-epochs",
                "4",
                "--alpha-epochs",
                "1",
                "--batch-size",
                "8",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert r["backbone"]["arch"] == "resnet18" and r["mask_training"]["epochs"] == 4
    assert len(r["supsup"]["task_acc"]) == 2 and r["supsup"]["mean_acc"] >= 0.4  # chance: 0.2
    assert len(r["incorrect_mask_acc"]) == 2 and r["incorrect_mask_mean"] < r["supsup"]["mean_acc"]
    diag = [r["incorrect_mask_matrix"][i][i] for i in range(2)]
    assert diag == r["supsup"]["task_acc"]  # masks re-measured from their packed files: nothing forgotten
    assert r["impresslearn"]["final_acc"] == r["impresslearn"]["new_task_acc"]


def test_split_runs_explain_bad_options(tmp_path, capsys):
    assert cli.main(["run", "--benchmark", "split-cifar100", "--out", str(tmp_path / "x.json")]) == 2
    assert "--data-root" in capsys.readouterr().err
    with pytest.raises(ValueError, match="do not fit"):
        SplitConfig(synthetic=True, basis_size=15, new_tasks=6).check()
    with pytest.raises(ValueError, match="overlap"):
        SplitConfig(synthetic=True, basis_size=5, first_new_task=3).check()
    with pytest.raises(SystemExit):
        cli.main(["run", "--benchmark", "split-imagenet", "--arch", "vgg"])
    assert SplitConfig(benchmark="split-imagenet", synthetic=True).backbone().arch == "resnet50"
