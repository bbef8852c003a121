"""Threads chosen by model size unless the user chose: --threads first, then OMP/MKL in the
environment, then the rule; doctor reports the rule for the library's models with their real
weight counts."""

import math
import re

import pytest
import torch

from impresslearn import doctor, threads
from impresslearn.cli import main
from impresslearn.cli.options import say_threads, use_threads
from impresslearn.continual import backbone as bb


@pytest.fixture(autouse=True)
def keep_torch_threads(monkeypatch):
    before = torch.get_num_threads()
    for var in threads.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    yield
    torch.set_num_threads(before)


def test_the_rule_by_model_size():
    assert threads.default_threads(266_200, cpus=2).threads == 1
    big = threads.default_threads(25_000_000, cpus=2)
    assert big.threads == 2 and "one thread per usable CPU" in big.reason
    assert threads.default_threads(threads.SMALL_MODEL_WEIGHTS, cpus=4).threads == 4


def test_explicit_choices_win(monkeypatch):
    assert threads.choose(266_200, explicit=3) == threads.ThreadChoice(3, "--threads")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    c = threads.choose(266_200)
    assert c.threads == torch.get_num_threads() and "OMP_NUM_THREADS=2" in c.reason
    assert threads.apply(266_200, explicit=1).threads == 1 and torch.get_num_threads() == 1


def test_doctor_counts_the_real_models():
    real = {
        "LeNet-300-100": dict(),
        "CIFAR ResNet-18": dict(arch="resnet18", classes=10, outputs=10),
        "ResNet-50": dict(arch="resnet50", classes=1000, outputs=1000),
    }
    for name, kw in real.items():
        shapes = bb.weight_shapes(bb.network(bb.BackboneConfig(**kw)))
        assert doctor.REFERENCE_MODELS[name] == sum(math.prod(s) for s in shapes.values()), name
    text = doctor.format_report(doctor.report())
    assert re.search(r"threads, LeNet-300-100 runs +1: 266,200 weights", text)


def test_a_run_says_what_it_chose_once_accepted(tmp_path, capsys):
    # refused (--out holds a file that is not a results file): the refusal is all it prints, but
    # the threads are set already (before any data is read)
    out = tmp_path / "r.json"
    out.write_text("not results")
    torch.set_num_threads(2)
    assert main(["run", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "CPU thread" not in err and torch.get_num_threads() == 1
    say_threads(use_threads(bb.BackboneConfig(), None))
    assert "impresslearn: 1 CPU thread (266,200 weights < 2,000,000" in capsys.readouterr().err
    say_threads(use_threads(bb.BackboneConfig(), 2))
    assert "impresslearn: 2 CPU threads (--threads)" in capsys.readouterr().err
    say_threads(use_threads(bb.BackboneConfig(), 2), quiet=True)
    assert capsys.readouterr().err == ""
