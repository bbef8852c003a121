"""Settings that select code are Choice members (docs/design.md §4.7): configs convert the strings
they are given (from the command line, from a results file) and refuse a typo in one sentence,
and a member reads and writes as its string."""

import dataclasses
import json

import pytest

from impresslearn.choices import Choice
from impresslearn.continual.backbone import BackboneConfig
from impresslearn.continual.training import Optimizer, Schedule, TrainConfig
from impresslearn.experiments import RunConfig
from impresslearn.kernel_masks import KernelMaskConfig, RealForm
from impresslearn.layers import MaskMode
from impresslearn.methods.exssnet import ExssnetConfig, ExssnetMethod
from impresslearn.methods.ksm import KsmConfig, KsmMethod
from impresslearn.seeding import Init


@pytest.mark.parametrize(
    "make, field, member",
    [
        (lambda: TrainConfig(optimizer="lbfgs"), "optimizer", Optimizer.LBFGS),
        (lambda: TrainConfig(schedule="cosine"), "schedule", Schedule.COSINE),
        (lambda: BackboneConfig(mask="threshold"), "mask", MaskMode.THRESHOLD),
        (lambda: BackboneConfig(init="kaiming_normal"), "init", Init.KAIMING_NORMAL),
        (lambda: ExssnetConfig(method="exssnet-kkt"), "method", ExssnetMethod.EXSSNET_KKT),
        (lambda: KsmConfig(method="piggyback"), "method", KsmMethod.PIGGYBACK),
        (lambda: KernelMaskConfig(real="none"), "real", RealForm.NONE),
    ],
)
def test_configs_hold_members_made_from_strings(make, field, member):
    cfg = make()
    assert getattr(cfg, field) is member and member == member.value
    # written and read back as the string: a config from a results file is the same config
    record = json.loads(json.dumps(dataclasses.asdict(cfg)))
    assert record[field] == member.value and type(cfg)(**{field: record[field]}) == cfg


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: TrainConfig(optimizer="adamw"), "optimizer must be one of adam, rmsprop, sgd, lbfgs, got 'adamw'"),
        (lambda: BackboneConfig(mask="topK"), "mask must be one of topk, threshold, got 'topK'"),
        (lambda: ExssnetConfig(method="exsnet"), "method must be one of supsup, ssnet, exssnet, exssnet-kkt"),
        (lambda: KernelMaskConfig(relax="gumbel"), "relax must be one of softmax, ste, got 'gumbel'"),
    ],
)
def test_a_typo_is_one_sentence(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_run_config_converts_its_lists_and_basis():
    cfg = RunConfig(basis="random", gn_objectives=["H"], gn_methods=["exhaustive"], gn_inputs=["mixed"])
    cfg.check()
    assert cfg.basis.name == "RANDOM" and [o.name for o in cfg.gn_objectives] == ["H"]
    assert cfg.record()["gn_methods"] == ["exhaustive"]  # still compares with a results file's strings
    with pytest.raises(ValueError, match="a GN method must be one of oneshot, binary, exhaustive, got 'greedy'"):
        RunConfig(gn_methods=["greedy"]).check()


def test_a_member_is_its_string():
    class Colour(Choice):
        DARK_RED = "dark-red"

    m = Colour.DARK_RED
    assert str(m) == f"{m}" == "dark-red" and {"dark-red": 1}[m] == 1 and json.dumps(m) == '"dark-red"'
    assert Colour.of("dark-red") is m and Colour.of(m) is m and Colour.names() == ("dark-red",)
