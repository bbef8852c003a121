"""Faults and bad input, as a demanding user brings them: runs killed at random points (during a
save too), two runs on one --out, torn files fed to every reader, and refused values. Nothing
finished is lost, nothing is silently replaced, and every refusal is one sentence (status 2)."""

import json
import math
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torchvision
from file_damage import metadata, rewrite, tensors_of

import impresslearn as il
from impresslearn import cli, convert, finish_task, load_checkpoint, save_checkpoint, task_parameters
from impresslearn.continual.alpha import fit_alpha
from impresslearn.continual.resume import STATE_KEY, FileCheckpoint
from impresslearn.continual.training import TrainConfig, fit
from impresslearn.experiments.output import OutputError, RunLock
from impresslearn.files import CheckpointError
from impresslearn.kernel_masks import KernelMaskConfig, convert_kernelwise
from impresslearn.layers import TaskBatchNorm2d, TaskHeads, random_basis, set_submodule, set_task

HERE = Path(__file__).resolve().parent
# A tiny PermutedMNIST run on the shipped subset (about 8 s on one thread).
TINY = [
    "run",
    "--new-tasks",
    "2",
    "-K",
    "2",
    "--mask-epochs",
    "0.3",
    "--alpha-epochs",
    "0.3",
    "--quiet",
    "--incorrect-tasks",
    "2",
    "--threads",
    "1",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def impresslearn(args, cwd, helper=None, timeout=600):
    prefix = [sys.executable, str(HERE / helper)] if helper else [sys.executable, "-m", "impresslearn.cli"]
    return subprocess.run(prefix + list(args), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)


def one_sentence(text: str, match: str = "") -> str:
    line = text.strip()
    assert line.startswith("impresslearn: error: ") and "\n" not in line and "Traceback" not in line, text
    assert re.search(match, line), line
    return line


def refused(capsys, argv, match=""):
    capsys.readouterr()
    try:
        code = cli.main(argv)
    except SystemExit as stop:  # argparse's refusals exit from inside the parser
        code = stop.code
    assert code == 2, argv
    return one_sentence(capsys.readouterr().err, match)


def untimed(value):
    """A results record without what differs between two runs of the same work."""
    skip = ("seconds", "elapsed_s", "command", "machine", "resumed", "masks_from_cache", "status", "restart")
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in skip}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp-" in p.name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny run, uninterrupted."""
    folder = tmp_path_factory.mktemp("reference")
    done = impresslearn(TINY + ["--out", "r.json"], folder)
    assert done.returncode == 0, done.stderr
    return json.loads((folder / "r.json").read_text())


# --------------------------------------------------------------------------- kills

# Kill points drawn at random (seeded: the same draw every run): the N-th atomic write of the
# run, killed while the file is being saved (its temporary written, not yet renamed) or right
# after it landed. A tiny run makes about a dozen writes.
KILLS = [(n, when) for n, when in zip(random.Random(12).sample(range(1, 12), 4), ["before", "after"] * 2)]


@pytest.mark.parametrize("n, when", KILLS)
def test_killed_run_resumes_to_the_same_results(tmp_path, reference, n, when):
    killed = impresslearn([str(n), when] + TINY + ["--out", "r.json"], tmp_path, helper="kill_at_write.py")
    assert killed.returncode == -9, killed.stderr[-2000:]  # it did die at that write
    before = (tmp_path / "r.json").read_text() if (tmp_path / "r.json").exists() else None
    if before is not None:
        json.loads(before)  # whatever landed is whole, never torn
    again = impresslearn(TINY + ["--out", "r.json"], tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["status"] == "done" and r["resumed"] == (before is not None)
    assert untimed(r) == untimed(reference)
    assert leftovers(tmp_path) == []  # the killed save's temporary file is gone too


# --------------------------------------------------------------------------- two runs, one --out


def test_a_second_run_on_the_same_out_is_refused_at_once(tmp_path):
    # Another process holds r.json (this test's, so that nothing depends on how long a run
    # takes): the run is refused at once, names the holder and writes nothing.
    with RunLock(tmp_path / "r.json", command="impresslearn run --out r.json"):
        start = time.time()
        second = impresslearn(TINY + ["--out", "r.json"], tmp_path)
        assert second.returncode == 2 and time.time() - start < 60, second.stderr
        one_sentence(second.stderr, rf"r\.json is in use by another run \(pid {os.getpid()} on ")
        assert not (tmp_path / "r.json").exists()
    # let go, the same command runs
    assert impresslearn(TINY + ["--out", "r.json"], tmp_path).returncode == 0
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "done"


def test_a_run_holds_its_out_while_it_runs(tmp_path):
    slow = [a if a != "0.3" else "3" for a in TINY]
    first = subprocess.Popen(
        [sys.executable, "-m", "impresslearn.cli", *slow, "--out", "r.json"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = tmp_path / "r.json.lock"
    holder, deadline = None, time.time() + 120
    while holder is None and first.poll() is None and time.time() < deadline:
        try:  # empty (or half written) until the run has written its name
            holder = json.loads(lock.read_text())
        except (FileNotFoundError, ValueError):
            time.sleep(0.05)
    assert holder is not None, "the run never named itself in r.json.lock"
    assert holder["pid"] == first.pid
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "done"
    assert not lock.exists()  # let go at the end


def test_lock_names_its_holder_and_is_released(tmp_path):
    out = tmp_path / "r.json"
    with RunLock(out, command="impresslearn run --out r.json"):
        with pytest.raises(OutputError, match=rf"in use by another run \(pid {os.getpid()} on .*impresslearn run"):
            RunLock(out).acquire()
    with RunLock(out):  # free again
        pass


# --------------------------------------------------------------------------- --out is never replaced


def test_out_that_is_not_this_runs_results_is_never_replaced(tmp_path, capsys, reference):
    other = tmp_path / "notes.txt"
    other.write_text("a file of the user's")
    refused(capsys, TINY + ["--out", str(other)], "not a results file")
    refused(capsys, TINY + ["--out", str(other), "--restart"], "not a results file")  # not even with --restart
    assert other.read_text() == "a file of the user's"
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"hello": 1}))
    refused(capsys, TINY + ["--out", str(foreign)], "not an impresslearn results file")
    assert json.loads(foreign.read_text()) == {"hello": 1}
    finished = tmp_path / "finished.json"
    finished.write_text(json.dumps(reference))
    refused(
        capsys,
        [a if a != "2" else "3" for a in TINY[:3]] + TINY[3:] + ["--out", str(finished)],
        r"other settings \(differs in --new-tasks\); add --restart",
    )
    assert json.loads(finished.read_text()) == reference
    refused(capsys, TINY + ["--out", ""], "--out is empty")
    refused(capsys, TINY + ["--out", str(tmp_path)], "is a folder")
    refused(capsys, TINY + ["--out", str(other / "r.json")], "is a file, not a folder")


def test_restart_replaces_a_run_of_other_settings(tmp_path, reference):
    (tmp_path / "r.json").write_text(json.dumps({**reference, "config": {**reference["config"], "seed": 7}}))
    folder = tmp_path / "r.json.run"  # an earlier run of r.json left it: its marker names r.json
    folder.mkdir()
    (folder / ".impresslearn-run").write_text(str((tmp_path / "r.json").resolve()) + "\n")
    (folder / "stale").write_text("units of the other run")
    done = impresslearn(TINY + ["--out", "r.json", "--restart"], tmp_path)
    assert done.returncode == 0, done.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert untimed(r) == untimed(reference) and not (folder / "stale").exists()


@pytest.mark.parametrize("marker", [None, "another.json"])
def test_a_folder_that_is_not_the_runs_own_is_never_removed(tmp_path, capsys, marker):
    """A user's folder where a run would keep its units (no marker, or another results file's):
    refused in a sentence before any work, its files untouched, also with --restart."""
    folder = tmp_path / "r.json.run"
    folder.mkdir()
    (folder / "mine.txt").write_text("a user's file")
    if marker is not None:
        (folder / ".impresslearn-run").write_text(str((tmp_path / marker).resolve()) + "\n")
    for extra in ([], ["--restart"]):
        refused(capsys, TINY + ["--out", str(tmp_path / "r.json")] + extra, "is not the run folder of")
        assert (folder / "mine.txt").read_text() == "a user's file"
    assert not (tmp_path / "r.json").exists()


def test_results_files_of_one_stem_get_folders_of_their_own(tmp_path):
    """exp.json and exp.run get folders of their own (exp.json.run, exp.run.run): no results file
    shares its units folder with another of its stem or is its own folder."""
    for out in ("exp.json", "exp.run"):
        done = impresslearn(TINY + ["--out", out], tmp_path)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / out).is_file() and (tmp_path / (out + ".run") / ".impresslearn-run").is_file()


# --------------------------------------------------------------------------- torn files


def torn_versions(good: bytes) -> dict[str, bytes]:
    return {
        "empty": b"",
        "half": good[: len(good) // 2],
        "one byte": good[:1],
        "garbage": b"\x00\xff" * 40,
        "not json": b"results: fine\n",
    }


def test_torn_results_files_are_named_by_every_reader(tmp_path, capsys, reference):
    good = json.dumps(reference).encode()
    for name, data in torn_versions(good).items():
        path = tmp_path / "r.json"
        path.write_bytes(data)
        for command in (["table", str(path)], ["table", "--grid", str(path)], ["plot", str(path), "--out-dir", str(tmp_path)]):
            refused(capsys, command, re.escape(str(path)))
        refused(capsys, TINY + ["--out", str(path)], "not a results file|not an impresslearn results file")
        assert path.read_bytes() == data, name  # untouched
    refused(capsys, ["table", str(tmp_path / "missing.json")], "no such file")


# --------------------------------------------------------------------------- refused values

BAD = [  # (arguments after `impresslearn`, what the sentence must say)
    (["run", "-K", "0"], "--basis-size must be at least 1"),
    (["run", "-K", "x"], "invalid int value"),
    (["run", "--new-tasks", "0"], "--new-tasks must be at least 1"),
    (["run", "--density", "2"], "--density must lie in"),
    (["run", "--density", "0"], "--density must lie in"),
    (["run", "--density", "-0.5"], "--density must lie in"),
    (["run", "--mask-lr", "-1"], "mask training"),
    (["run", "--mask-lr", "0"], "mask training"),
    (["run", "--mask-epochs", "0"], "mask training"),
    (["run", "--mask-iterations", "0"], "mask training"),
    (["run", "--alpha-lr", "-1"], "alpha fit"),
    (["run", "--alpha-epochs", "0"], "alpha fit"),
    (["run", "--alpha-batch-size", "0"], "alpha fit"),
    (["run", "--outputs", "5"], "outputs .* must be at least the number of classes"),
    (["run", "--gn", "X"], r"--gn: invalid choice 'X' \(choose from G, H\)"),
    (["run", "--gn", "H", "--gn-methods", "magic"], "--gn-methods: invalid choice 'magic'"),
    (["run", "--gn", "H", "--gn-inputs", "middle"], "--gn-inputs: invalid choice 'middle'"),
    (["run", "--gn", "H", "--gn-on", "nothing"], "--gn-on: invalid choice 'nothing'"),
    (["run", "--gn", "H", "--gn-batches", "0"], "--gn-batches must be at least 1"),
    (["run", "--basis", "random", "--basis-gn", "1"], "heterogeneous"),
    (["run", "-K", "2", "--basis-gn", "3"], "cannot exceed"),
    (["run", "--validation", "-3"], "--validation must be >= 0"),
    (["run", "--incorrect-tasks", "-1"], "--incorrect-tasks must be >= 0"),
    (["run", "--first-new-task", "1", "-K", "5"], "overlap"),
    (["run", "--benchmark", "rotated-mnist", "--new-angles", "5,15", "--new-tasks", "3"], "2 new angles given"),
    (["run", "--benchmark", "rotated-mnist", "--angle-step", "inf"], "finite"),
    (["run", "--threads", "0"], "--threads: must be at least 1"),
    (["run", "--threads", "-2"], "--threads: must be at least 1"),
    (["run", "--basis", "mixed"], "invalid choice"),
    (["run", "--preset", "best"], "invalid choice"),
    (["run", "--scale", "maybe"], "expected true or false"),
    (["run", "--hybrid", "middle"], "invalid choice"),
    (["run", "--data-root", "/nonexistent/mnist"], "MNIST not found under /nonexistent/mnist"),
    (["run", "--benchmark", "split-cifar100"], "--data-root"),
    (["run", "--benchmark", "split-cifar100", "--synthetic", "--workers", "-1"], "--workers must be >= 0"),
    (["run", "--benchmark", "split-cifar100", "--synthetic", "--density", "0"], "--density must lie in"),
    (["run", "--benchmark", "split-cifar100", "--synthetic", "-K", "15", "--new-tasks", "6"], "do not fit"),
    (["run", "--benchmark", "split-cifar100", "--synthetic", "--first-new-task", "3", "-K", "5"], "overlap"),
    (["run", "--benchmark", "split-cifar100", "--synthetic", "--eval-batches", "0"], "--eval-batches must be at least 1"),
    (["run", "--benchmark", "split-cifar100", "--synthetic", "--checkpoint-every", "-1"], "--checkpoint-every must be"),
    (["run", "--benchmark", "split-cifar100", "--synthetic", "--mask-iterations", "0"], "mask training"),
    (["run", "--benchmark", "split-cifar100", "--synthetic", "--lr", "-1"], "mask training"),
    (["run", "--benchmark", "split-cifar100", "--synthetic", "--image-size", "0"], "--image-size must be at least 1"),
    (["run", "--benchmark", "split-cifar100", "--synthetic", "--width", "0"], "--width must be at least 1"),
    (["run", "--benchmark", "split-cifar100", "--synthetic", "--threads", "0"], "--threads: must be at least 1"),
    (["run", "--benchmark", "split-imagenet", "--arch", "vgg"], "invalid choice"),
    (["run", "--benchmark", "split-cifar100", "--synthetic", "--data-root", "/nonexistent"], None),
    (["storage", "--density", "x"], "expected a number"),
    # values that ran to chance-level results, or were refused only after the work
    (["run", "--mask-lr", "inf"], "--mask-lr: must be a finite number"),
    (["run", "--alpha-epochs", "nan"], "--alpha-epochs: must be a finite number"),
    (["run", "--lam", "nan"], "--lam: must be a finite number"),
    (["run", "--lam", "-1"], "--lam must be a finite number >= 0"),
    (["run", "--benchmark", "rotated-mnist", "--new-angles", "nan,1"], "--new-angles: must be a finite number"),
    (["run", "--seed", str(10**23)], r"--seed must be a whole number in \[0, 2\*\*63\)"),
    (["run", "--density", "1e-17"], "keeps no weight of a layer of 235200 weights"),
    (["run", "--new-tasks", str(10**8)], "would allocate .* more than this machine"),
    (["run", "--benchmark", "split-cifar100", "--synthetic", "--lam", "nan"], "--lam: must be a finite number"),
    (["run", "--benchmark", "split-cifar100", "--synthetic", "--lam", "-1"], "--lam must be a finite number >= 0"),
    (["adapt", "--scale", "nan"], "--scale: must be a finite number"),
    (["adapt", "--temperature", "inf"], "--temperature: must be a finite number"),
    (["adapt", "--seed", str(2**63)], "--seed must be a whole number"),
    (["quickstart", "--threads", "0"], "--threads: must be at least 1"),
    (["table"], "the following arguments are required"),
    (["plot"], "the following arguments are required"),
    (["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize("argv, match", BAD, ids=[" ".join(a[1:]) or a[0] for a, _ in BAD])
def test_every_refused_value_is_one_sentence_before_any_work(tmp_path, capsys, argv, match):
    out = ["--out", str(tmp_path / "r.json")] if argv[0] in ("run", "adapt") else []
    if match is None:  # a synthetic split run takes no --data-root: accepted, then refused for its --out
        (tmp_path / "r.json").write_text("not results")
        match = "not a results file"
    start = time.time()
    refused(capsys, argv + out, match)
    assert time.time() - start < 30  # refused before any data is read or trained on
    assert not (tmp_path / "r.json.run").exists()


def test_debug_shows_the_traceback(tmp_path):
    done = impresslearn(["run", "-K", "0", "--out", "r.json", "--debug"], tmp_path)
    assert done.returncode != 0 and "Traceback" in done.stderr and "basis_size must be at least 1" in done.stderr


# --------------------------------------------------------------------------- resuming a fit


class _Stop(Exception):
    pass


class _StopAfterSave(FileCheckpoint):
    def save(self, data):
        super().save(data)
        raise _Stop


class _Batches:
    """5 batches an epoch, in an order drawn from the epoch: resumable mid-epoch."""

    def __init__(self):
        gen = torch.Generator().manual_seed(3)
        self.x, self.y = torch.randn(20, 6, generator=gen), torch.randint(0, 3, (20,), generator=gen)

    def __len__(self):
        return 5

    def epoch_iter(self, epoch, start):
        order = torch.randperm(20, generator=torch.Generator().manual_seed(epoch))
        for b in range(start, 5):
            i = order[4 * b : 4 * b + 4]
            yield self.x[i], self.y[i]


def _fit_task():
    """A converted MLP and 15 steps of Adam (3 epochs of 5 batches)."""
    model = convert(
        torch.nn.Sequential(torch.nn.Linear(6, 9), torch.nn.ReLU(), torch.nn.Linear(9, 3)), mode="supermask", num_tasks=1, seed=1
    )
    return model, _Batches(), TrainConfig(optimizer="adam", lr=0.05, epochs=3, batch_size=4)


def _saved_at_step_4(path):
    model, batches, cfg = _fit_task()
    with pytest.raises(_Stop):
        fit(model, task_parameters(model, 0), batches, cfg, checkpoint=_StopAfterSave(path), every=4, progress=False)
    return path.read_bytes()


def _position(**change):
    return lambda h: h["position"].update(change)


def _optimizer_shape(h):
    h["optimizer"]["param_groups"][0]["params"] = [0]  # one parameter where the optimizer has two


RESUME_DAMAGE = [
    (_position(step=40, epoch=8, batch=0), "never saves"),  # past the end: was silently skipped
    (_position(step=-3), "step = -3"),  # negative: trained more than asked
    (_position(epoch=7), "not step 4"),
    (_position(losses=["x"] * 4), "'losses'"),
    (lambda h: h["position"].pop("batch"), "batch = None"),
    (_optimizer_shape, "cannot take"),
    (lambda h: h.update(optimizer=None), "no optimizer state"),
]


@pytest.mark.parametrize("edit, match", RESUME_DAMAGE, ids=[m for _, m in RESUME_DAMAGE])
def test_a_fit_resumes_all_or_nothing(tmp_path, edit, match):
    # Every field of a saved training state is checked before the first tensor is copied: a
    # refused state leaves the model exactly as it was (before, the tensors were copied, then the
    # position or the optimizer failed).
    path = tmp_path / "state.safetensors"
    damaged = rewrite(_saved_at_step_4(path), STATE_KEY, edit)
    if "optimizer" not in json.loads(metadata(damaged)[STATE_KEY]) or edit is RESUME_DAMAGE[-1][0]:
        damaged = rewrite(damaged, STATE_KEY, tensors={k: v for k, v in tensors_of(damaged).items() if not k.startswith("opt.")})
    path.write_bytes(damaged)
    model, batches, cfg = _fit_task()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    before_floats = [p.detach().clone() for p in task_parameters(model, 0)]
    with pytest.raises(CheckpointError, match=match):
        fit(model, task_parameters(model, 0), batches, cfg, checkpoint=path, every=4, progress=False)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(p, q) for p, q in zip(task_parameters(model, 0), before_floats))


def test_an_intact_state_still_resumes_to_the_uninterrupted_result(tmp_path):
    path = tmp_path / "state.safetensors"
    _saved_at_step_4(path)
    resumed, batches, cfg = _fit_task()
    out = fit(resumed, task_parameters(resumed, 0), batches, cfg, checkpoint=path, every=4, progress=False)
    straight, batches, cfg = _fit_task()
    ref = fit(straight, task_parameters(straight, 0), batches, cfg, progress=False)
    assert out["resumed_from"] == 4 and out["steps"] == ref["steps"] == 15 and out["loss"] == ref["loss"]
    assert all(torch.equal(a, b) for a, b in zip(task_parameters(resumed, 0), task_parameters(straight, 0)))


# --------------------------------------------------------------------------- values and sizes


def _mlp():
    return torch.nn.Sequential(torch.nn.Linear(6, 9), torch.nn.ReLU(), torch.nn.Linear(9, 3))


BAD_LIBRARY_VALUES = [
    # (what is built, the sentence it is refused with): each failed later, or not at all, before
    (lambda: convert(_mlp(), "supermask", num_tasks=0), "num_tasks must be a whole number of at least 1"),
    (lambda: il.SupermaskLinear(6, 3, num_tasks=0), "num_tasks must be"),
    (lambda: TaskHeads(torch.nn.Linear(4, 2), num_tasks=0), "num_tasks must be"),
    (lambda: TaskBatchNorm2d(4, num_tasks=0), "num_tasks must be"),
    (lambda: convert(_mlp(), "impress", basis_size=0), "at least one mask"),
    (lambda: il.ImpressLinear(6, 3, random_basis((3, 6), 0, 0.5)), "at least one mask"),
    (lambda: il.SupermaskLinear(6, 3, density=1e-17), "keeps no weight of a layer of 18 weights"),
    (lambda: il.SupermaskLinear(0, 3), "every dimension at least 1"),
    (lambda: il.SupermaskLinear(6, 3, seed=2**70), r"seed must be a whole number in \[0, 2\*\*63\)"),
    (lambda: il.SupermaskLinear(6, 3, seed=-1), "seed must be"),
    (lambda: il.ImpressLinear(6, 3, random_basis((3, 6), 2, 0.5), scale_density=1e-300), "keeps no weight"),
    (lambda: il.SupermaskLinear(784, 300, num_tasks=10**9), r"1000000000 tasks .* would allocate .* more than this machine"),
    (lambda: TaskHeads(torch.nn.Linear(512, 1000), num_tasks=10**7), r"would allocate .* more than this machine"),
    (lambda: TrainConfig(lr=math.inf), "lr must be a finite number"),
    (lambda: TrainConfig(epochs=math.nan), "epochs must be a finite number"),
    (lambda: TrainConfig(momentum=1.5), "momentum in"),
    (lambda: KernelMaskConfig(scale=math.nan), "scale must be a finite number"),
]


@pytest.mark.parametrize("build, match", BAD_LIBRARY_VALUES, ids=[m[:40] for _, m in BAD_LIBRARY_VALUES])
def test_bad_values_and_sizes_are_refused_where_they_are_given(build, match):
    # Refused in one sentence when the object is made, not at its first forward (num_tasks=0 was
    # an IndexError there) and not by the OS killing the process (10**9 tasks).
    with pytest.raises(ValueError, match=match) as err:
        build()
    assert "\n" not in str(err.value)


def test_fit_alpha_refuses_a_penalty_that_is_not_a_finite_number():
    model = convert(_mlp(), "impress", basis_size=2, num_tasks=1, seed=1)
    batches = [(torch.randn(4, 6), torch.randint(0, 3, (4,)))]
    for lam in (math.nan, math.inf, -1.0):
        with pytest.raises(ValueError, match="lam must be a finite number >= 0"):
            fit_alpha(model, 0, batches, TrainConfig(), lam=lam, progress=False)


def test_a_crafted_scale_density_in_a_checkpoint_is_refused_whole(tmp_path):
    # 1e-300 lies in (0, 1] but keeps no weight: it rebuilt a backbone of inf before
    model = convert(_mlp(), "supermask", scale=True, seed=1)
    save_checkpoint(tmp_path / "m.safetensors", model)
    data = (tmp_path / "m.safetensors").read_bytes()
    key = next(k for k in metadata(data) if not k.endswith(".sha256"))
    header = json.loads(metadata(data)[key])
    layer = next(n for n, rec in header["layers"].items() if rec.get("scale_density"))

    def edit(h):
        h["layers"][layer]["scale_density"] = 1e-300

    (tmp_path / "bad.safetensors").write_bytes(rewrite(data, key, edit))
    fresh = convert(_mlp(), "supermask", scale=True, seed=1)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(CheckpointError, match="scale_density"):
        load_checkpoint(tmp_path / "bad.safetensors", fresh, backbone="file")
    assert all(torch.equal(v, before[k]) for k, v in fresh.state_dict().items())


# --------------------------------------------------------------------------- precision modes


def _family(name):
    """A small model of each layer family, and an input for it."""

    def cnn():
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 5, 3), torch.nn.BatchNorm2d(5), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(180, 4)
        )

    def vit():
        return torchvision.models.VisionTransformer(
            image_size=16, patch_size=8, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16, num_classes=3
        )

    img, small = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 8, 8)
    return {
        "supermask-cnn": (lambda: convert(cnn(), "supermask", num_tasks=2, seed=1), small),
        "impress-cnn": (lambda: convert(cnn(), "impress", basis_size=3, num_tasks=2, seed=1), small),
        "impress-per-channel-cnn": (
            lambda: convert(cnn(), "impress", basis_size=3, per_channel=True, num_tasks=2, seed=1),
            small,
        ),
        "supermask-vit": (lambda: convert(vit(), "supermask", num_tasks=2, seed=1), img),
        "impress-vit": (lambda: convert(vit(), "impress", basis_size=2, num_tasks=2, seed=1), img),
        "kernel-masks-cnn": (lambda: convert_kernelwise(cnn(), num_tasks=2), small),
    }[name]


FAMILIES = ["supermask-cnn", "impress-cnn", "impress-per-channel-cnn", "supermask-vit", "impress-vit", "kernel-masks-cnn"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_layer_family_runs_under_autocast(family, dtype):
    # ImpressLearn layers failed under autocast ("input dtype differs from weight dtype"): a task
    # in training and a finished one both run in the autocast dtype, close to float32, with
    # finite gradients for the task's floats.
    make, x = _family(family)
    torch.manual_seed(0)
    model = make()
    ref = model(x).detach()
    with torch.autocast("cpu", dtype=dtype):
        y = model(x)
    assert y.dtype == dtype and torch.allclose(y.float(), ref, atol=0.05, rtol=0.05)
    y.float().square().sum().backward()
    grads = [p.grad for p in task_parameters(model, 0)]
    assert grads and all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    finish_task(model, 0)
    with torch.autocast("cpu", dtype=dtype):
        assert model(x).dtype == dtype


@pytest.mark.parametrize("family", FAMILIES)
def test_every_layer_family_runs_in_float64(family):
    make, x = _family(family)
    model = make().double()
    y = model(x.double())
    assert y.dtype == torch.float64
    y.sum().backward()
    assert all(p.grad.dtype == torch.float64 for p in task_parameters(model, 0))


@pytest.mark.parametrize("where", ["folder", "missing-folder", "fifo", "plot-folder"])
def test_quickstart_refuses_an_unwritable_out_before_the_lessons(tmp_path, capsys, where):
    # --out was checked only when the results were written, after the whole run
    out, plot = tmp_path / "q.json", []
    if where == "folder":
        out.mkdir()
    elif where == "missing-folder":
        out = tmp_path / "nowhere" / "q.json"
    elif where == "fifo":
        os.mkfifo(out)
    else:
        (tmp_path / "p.png").mkdir()
        plot = ["--plot", str(tmp_path / "p.png")]
    start = time.time()
    refused(capsys, ["quickstart", "--quiet", "--threads", "1", "--out", str(out), *plot])
    assert time.time() - start < 10


def test_a_results_name_too_long_for_its_lock_and_folder_is_refused_in_a_sentence(tmp_path, capsys):
    # a raw "[Errno 36] File name too long" on <out>.lock before
    refused(capsys, ["run", "--out", str(tmp_path / ("a" * 246 + ".json"))], "a name of 251 bytes.* at most 250")


# --------------------------------------------------------------------------- checkpoints hold every family


def _kernel_masks_with_heads(seed):
    """A pretrained conv net (the same weights every time) adapted by kernel masks, one head per
    task (a new head drawn from `seed`)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 3))
    model = convert_kernelwise(net, num_tasks=2, include=lambda name, m: name != "3")
    torch.manual_seed(seed)
    set_submodule(model, "3", TaskHeads(model[3], num_tasks=2))
    return model


def test_kernel_masks_and_task_heads_are_saved_whole(tmp_path):
    # Before: no kernel-mask state and no head weights were written; loading raised nothing (kernel
    # masks: outputs off by up to 8.3) or a bare StopIteration (heads).
    model, x = _kernel_masks_with_heads(0), torch.randn(5, 3, 8, 8)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for task in (0, 1):
        set_task(model, task)
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), torch.arange(5) % 3).backward()
            opt.step()
    finish_task(model, 0)  # task 0 finished, task 1 still open
    model.eval()
    want = {t: (set_task(model, t), model(x))[1].detach() for t in (0, 1)}
    save_checkpoint(tmp_path / "m.safetensors", model)
    fresh = _kernel_masks_with_heads(1).eval()
    assert not torch.equal(fresh[3].heads[1].weight, model[3].heads[1].weight)
    load_checkpoint(tmp_path / "m.safetensors", fresh)
    for t in (0, 1):
        set_task(fresh, t)
        assert torch.equal(fresh(x), want[t]), t
    assert fresh[0].is_finished(0) and not fresh[0].is_finished(1)
