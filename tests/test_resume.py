"""Interrupted training resumes without losing anything: the state files (optimizer state and
position included), the resumable loop, and a split-benchmark run killed with SIGKILL after a
checkpoint and restarted with the same command; damaged basis and state files are refused (each
a sentence naming the file and the entry), files from before the checksums still load, and
restoring a task is all or nothing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from file_damage import as_legacy, data_offsets, data_start, entry_at, flip_bit, one_sentence, rewrite, set_dtype, tensors_of
from safetensors.torch import load_file

from impresslearn import cli
from impresslearn.checkpoint import CheckpointError
from impresslearn.continual import backbone as bb
from impresslearn.continual.basis_file import BASIS_KEY, load_basis, save_basis
from impresslearn.continual.resume import (
    STATE_KEY,
    FileCheckpoint,
    load_state,
    load_task_state,
    restore_tensors,
    save_state,
    task_state,
)
from impresslearn.continual.training import TrainConfig, fit
from impresslearn.data.split import split_cifar100
from impresslearn.layers import random_basis, task_parameters

HERE = Path(__file__).resolve().parent


def test_state_file_round_trip_with_adam(tmp_path):
    p = torch.nn.Parameter(torch.randn(4, 3))
    opt = torch.optim.Adam([p], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        (p**3).sum().backward()
        opt.step()
    save_state(tmp_path / "s.safetensors", {"p": p}, optimizer=opt, position={"step": 3, "losses": [1.5]})
    tensors, opt_state, pos = load_state(tmp_path / "s.safetensors")
    assert torch.equal(tensors["p"], p.detach()) and pos == {"step": 3, "losses": [1.5]}
    q = torch.nn.Parameter(tensors["p"].clone())
    opt2 = torch.optim.Adam([q], lr=0.1)
    opt2.load_state_dict(opt_state)
    for o, param in ((opt, p), (opt2, q)):  # one more step each: identical
        o.zero_grad()
        (param**3).sum().backward()
        o.step()
    assert torch.equal(p, q)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_state(tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="reserved"):
        save_state(tmp_path / "x.safetensors", {"opt.0.x": p})


def test_basis_file_round_trip(tmp_path):
    basis = {"a": random_basis((5, 7), 3, 0.5, seed=1), "b.c": random_basis((4, 2, 3, 3), 3, 0.2, seed=2)}
    save_basis(tmp_path / "basis.safetensors", basis, metadata={"seed": 7})
    back, meta = load_basis(tmp_path / "basis.safetensors")
    assert meta == {"seed": 7} and back == basis
    with pytest.raises(ValueError, match="same number"):
        save_basis(tmp_path / "x.safetensors", {"a": basis["a"], "b": random_basis((2, 2), 1, 0.5)})


class Interrupt(Exception):
    pass


class FailingCheckpoint(FileCheckpoint):
    """Saves, then stops the run (as a kill would) after `after` saves."""

    def __init__(self, path, after):
        super().__init__(path)
        self.after, self.saves = after, 0

    def save(self, data):
        super().save(data)
        self.saves += 1
        if self.saves == self.after:
            raise Interrupt


def _impress_task():
    cfg = bb.BackboneConfig(arch="resnet18", outputs=5, classes=5, width=2, init="kaiming_normal", scale=False)
    basis = {n: random_basis(s, 2, 0.3, seed=i) for i, (n, s) in enumerate(bb.weight_shapes(bb.network(cfg)).items())}
    model = bb.impress_model(cfg, basis, num_tasks=1)
    batches = split_cifar100(synthetic=True, synthetic_train=5, synthetic_test=1).train(1, 5, seed=3)
    return model, batches


def _alphas(model):
    return task_parameters(model, 0)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resumed_training_continues_exactly(tmp_path, one_thread, schedule):
    # The one training loop, uninterrupted and interrupted-then-resumed: the same steps, loss and
    # tensors, the learning-rate schedule included.
    cfg = TrainConfig(optimizer="adam", lr=0.05, epochs=3, batch_size=5, schedule=schedule)  # 5 batches an epoch: 15 steps
    ref, batches = _impress_task()
    out_ref = fit(ref, _alphas(ref), batches, cfg, state=task_state(ref, 0))
    model, batches = _impress_task()
    ckpt = FailingCheckpoint(tmp_path / "p.safetensors", after=2)
    with pytest.raises(Interrupt):  # stopped right after the checkpoint of step 8 (mid-epoch)
        fit(model, _alphas(model), batches, cfg, state=task_state(model, 0), checkpoint=ckpt, every=4)
    # What the checkpoint holds is what the model had learned at that point.
    saved, _, pos = load_state(ckpt.path)
    assert pos["step"] == 8 and pos["epoch"] == 1 and pos["batch"] == 3
    assert all(torch.equal(saved[k], v.detach().cpu()) for k, v in task_state(model, 0).items())
    # A fresh process would start from a fresh model: resuming from the file gives the uninterrupted result.
    fresh, batches = _impress_task()
    out = fit(fresh, _alphas(fresh), batches, cfg, state=task_state(fresh, 0), checkpoint=ckpt.path, every=4)
    assert out["resumed_from"] == 8 and out["steps"] == out_ref["steps"] == 15 and out["loss"] == out_ref["loss"]
    for k, v in task_state(ref, 0).items():
        assert torch.equal(task_state(fresh, 0)[k], v), k
    # load_task_state puts a saved task back into a model
    other, _ = _impress_task()
    load_task_state(other, 0, {k: v.detach() for k, v in task_state(fresh, 0).items()})
    assert all(torch.equal(a, b) for a, b in zip(_alphas(other), _alphas(fresh)))


def test_resumable_training_rejects_what_it_cannot_resume(tmp_path):
    model, batches = _impress_task()
    with pytest.raises(ValueError, match="lbfgs"):
        fit(model, _alphas(model), batches, TrainConfig(optimizer="lbfgs"), checkpoint=tmp_path / "s")
    with pytest.raises(TypeError, match="epoch_iter"):
        fit(
            model,
            _alphas(model),
            [(torch.zeros(1, 3, 32, 32), torch.zeros(1, dtype=torch.long))],
            TrainConfig(),
            checkpoint=tmp_path / "s",
        )


RUN = [
    "run",
    "--benchmark",
    "split-cifar100",
    "--synthetic",
    "--synthetic-train",
    "8",
    "--synthetic-test",
    "2",
    "--width",
    "4",
    "-K",
    "2",
    "--new-tasks",
    "1",
    "--no-supsup",
    "--mask-iterations",
    "6",
    "--alpha-iterations",
    "6",
    "--batch-size",
    "8",
    "--eval-batches",
    "1",
    "--checkpoint-every",
    "2",
    "--threads",
    "1",
    "--quiet",
]


def _run(args, tmp_path, kill_after=None):
    cmd = [sys.executable, str(HERE / "kill_after_saves.py"), str(kill_after or 0)] + args
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_killed_run_resumes_with_the_same_command(tmp_path):
    """SIGKILL mid-run, after the 4th in-progress checkpoint (step 4 of the second basis mask);
    the same command then finishes it, and every result equals an uninterrupted run's."""
    killed = _run(RUN + ["--out", "r.json"], tmp_path, kill_after=4)
    assert killed.returncode == -9, killed.stderr[-2000:]
    units = tmp_path / "r.json.run" / "units"
    assert (units / "basis-0000.safetensors").exists() and (units / "basis-0001.progress.safetensors").exists()
    saved = load_file(units / "basis-0001.progress.safetensors")
    resumed = _run(RUN + ["--out", "r.json"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole = _run(RUN + ["--out", "whole.json"], tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]
    r, w = (json.loads((tmp_path / f).read_text()) for f in ("r.json", "whole.json"))
    assert r["resumed"] and r["units_from_checkpoints"] == 1 and not w["resumed"]
    assert [b["resumed_from"] for b in r["basis_training"]] == [0, 4]  # from the checkpoint, not from scratch
    assert r["basis_training"][1]["loss"] == w["basis_training"][1]["loss"]
    for key in ("supsup", "impresslearn"):
        assert _untimed(r[key]) == _untimed(w[key]), key
    for f in ("basis.safetensors", "impress.safetensors"):
        a, b = load_file(tmp_path / "r.json.run" / f), load_file(tmp_path / "whole.json.run" / f)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f
    assert any(k.endswith(".scores") for k in saved)  # the checkpoint held the mask's scores in progress
    # The same --out with other settings is refused (status 2, one sentence) rather than mixed.
    assert cli.main([a if a != "6" else "7" for a in RUN] + ["--out", str(tmp_path / "r.json")]) == 2


def _untimed(value):
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


# --------------------------------------------------------------------------- damaged basis files and states


def _refused(call, path, data, match, entry=None):
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=match) as info:
        call(path)
    message = str(info.value)
    assert str(path) in message and one_sentence(message), message
    assert entry is None or repr(entry) in message, message


def _basis_file(tmp_path):
    basis = {
        "a": random_basis((5, 7), 3, 0.5, seed=1),
        "b.c": random_basis((4, 2, 3, 3), 3, 0.2, seed=2),
        "d": random_basis((40, 70), 3, 0.3, seed=3),
    }
    path = tmp_path / "basis.safetensors"
    save_basis(path, basis, metadata={"seed": 7})
    return basis, path, path.read_bytes()


def test_damaged_basis_files_are_refused(tmp_path):
    basis, path, data = _basis_file(tmp_path)
    for offset in data_offsets(data, 8):
        _refused(load_basis, path, flip_bit(data, offset, 5), "does not match its SHA-256", entry_at(data, offset))
    for size in (0, 9, data_start(data), len(data) - 1):
        _refused(load_basis, path, data[:size], "truncated or corrupt")
    for legacy in (False, True):
        base = as_legacy(data, BASIS_KEY) if legacy else data
        _refused(
            load_basis,
            path,
            set_dtype(base, "b.c", "F32"),
            "where torch.int32 is expected" if legacy else "does not match its SHA-256",
            "b.c",
        )
    tensors = tensors_of(data)
    _refused(
        load_basis, path, rewrite(data, BASIS_KEY, tensors={k: v for k, v in tensors.items() if k != "d"}), "lacks entry", "d"
    )
    _refused(load_basis, path, rewrite(data, BASIS_KEY, tensors=dict(tensors, e=tensors["a"].clone())), "unexpected entry", "e")
    _refused(load_basis, path, rewrite(data, BASIS_KEY, lambda h: h["shapes"].update(a=[5, 40])), "of shape", "a")
    _refused(load_basis, path, rewrite(data, BASIS_KEY, lambda h: h.update(basis_size=2)), "of shape", "a")
    _refused(load_basis, path, rewrite(data, BASIS_KEY, lambda h: h.update(format_version=3)), "format version 3")
    _refused(load_basis, path, rewrite(data, BASIS_KEY, lambda h: h.update(shapes=[])), "'shapes'")


def test_legacy_basis_files_still_load(tmp_path):
    basis, path, data = _basis_file(tmp_path)
    path.write_bytes(as_legacy(data, BASIS_KEY))
    back, meta = load_basis(path)
    assert back == basis and meta == {"seed": 7}


def _state_file(tmp_path):
    p = torch.nn.Parameter(torch.randn(40, 3))
    opt = torch.optim.Adam([p], lr=0.1)
    (p**2).sum().backward()
    opt.step()
    bn = torch.arange(6, dtype=torch.int64)
    path = tmp_path / "state.safetensors"
    save_state(path, {"p": p, "bn.num_batches_tracked": bn}, optimizer=opt, position={"step": 1})
    return path, path.read_bytes()


def test_damaged_states_are_refused(tmp_path):
    path, data = _state_file(tmp_path)
    for offset in data_offsets(data, 8):
        _refused(load_state, path, flip_bit(data, offset, 2), "does not match its SHA-256", entry_at(data, offset))
    for size in (0, 9, data_start(data), len(data) - 1):
        _refused(load_state, path, data[:size], "truncated or corrupt")
    _refused(load_state, path, set_dtype(data, "p", "I32"), "does not match its SHA-256", "p")
    _refused(load_state, path, rewrite(data, STATE_KEY, lambda h: h.update(version=7)), "format version 7")
    _refused(load_state, path, rewrite(data, STATE_KEY, lambda h: h.update(position=None)), "'position'")
    tensors = tensors_of(data)
    _refused(
        load_state,
        path,
        rewrite(data, STATE_KEY, tensors=dict(tensors, **{"opt.x.y": tensors["p"].clone()})),
        "names no parameter",
        "opt.x.y",
    )
    _refused(load_state, path, rewrite(data, STATE_KEY, lambda h: h.update(optimizer=None)), "unexpected entry", "opt.0.exp_avg")
    stripped = as_legacy(data, STATE_KEY, "version", edit=lambda h: h.update(version=2))
    _refused(load_state, path, stripped, "lacks the checksums")


def test_legacy_states_still_load_and_are_checked_against_the_model(tmp_path):
    path, data = _state_file(tmp_path)
    current = load_state(path)
    path.write_bytes(as_legacy(data, STATE_KEY, "version"))
    legacy = load_state(path)
    assert legacy[2] == current[2] and legacy[1]["param_groups"] == current[1]["param_groups"]
    assert all(torch.equal(legacy[0][k], current[0][k]) for k in current[0])
    # Without checksums an edited dtype reads; copying it into live tensors is what refuses it.
    path.write_bytes(set_dtype(as_legacy(data, STATE_KEY, "version"), "bn.num_batches_tracked", "F64"))
    saved, _, _ = load_state(path)
    live = {"p": torch.zeros(40, 3), "bn.num_batches_tracked": torch.zeros(6, dtype=torch.int64)}
    with pytest.raises(CheckpointError, match="'bn.num_batches_tracked' of dtype torch.float64 where torch.int64"):
        restore_tensors(live, saved, str(path))
    assert not live["p"].any()  # "p" comes first and fits, but nothing was copied


def test_load_task_state_is_all_or_nothing():
    model, _ = _impress_task()
    fresh = {k: v.detach().clone() for k, v in task_state(model, 0).items()}
    good = {k: torch.full_like(v, 3) for k, v in fresh.items()}
    last = sorted(good)[-1]
    cases = [
        ({k: v for k, v in good.items() if k != last}, "lacks entry", last),
        (dict(good, extra=torch.zeros(1)), "unexpected entry", "extra"),
        (dict(good, **{last: torch.zeros(2, 2, 2, 2)}), "of shape", last),
        (dict(good, **{last: good[last].double()}), "of dtype", last),
    ]
    for tensors, match, entry in cases:
        with pytest.raises(CheckpointError, match=match) as info:
            load_task_state(model, 0, tensors, name="unit alpha-0000")
        assert repr(entry) in str(info.value) and "unit alpha-0000" in str(info.value)
        assert all(torch.equal(v, fresh[k]) for k, v in task_state(model, 0).items())
    load_task_state(model, 0, good)
    assert all(torch.equal(v, good[k]) for k, v in task_state(model, 0).items())
