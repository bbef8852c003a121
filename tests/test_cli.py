"""The command line: storage table, a tiny run on the shipped subset, plots, clear errors, and one
short real-MNIST experiment end to end."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_faults import refused

from impresslearn import cli
from impresslearn.experiments import tables

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
]


def test_storage_prints_table2(capsys):
    assert cli.main(["storage"]) == 0
    out = capsys.readouterr().out
    for name in ("LeNet-300-100", "ResNet-18", "ResNet-50", "55.46", "55.50", "26.20"):
        assert name in out


def test_split_benchmarks_take_their_own_options(capsys, tmp_path):
    # split-cifar100 / split-imagenet go to impresslearn.cli.split (tests/test_split_cli.py).
    refused(capsys, ["run", "--benchmark", "split-cifar100", "--out", str(tmp_path / "x.json")], "--data-root")


def test_bad_options_are_rejected(tmp_path, capsys):
    with pytest.raises(SystemExit):  # argparse's own refusal: usage and one error line, status 2
        cli.main(["run", "--basis", "mixed"])
    capsys.readouterr()
    refused(capsys, TINY + ["--gn", "X", "--out", str(tmp_path / "r.json")], "--gn: invalid choice 'X'")
    refused(capsys, TINY + ["--basis", "random", "--basis-gn", "1", "--out", str(tmp_path / "r.json")], "heterogeneous")


def test_hybrid_first_run_infers_tasks(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert (
        cli.main(TINY + ["--hybrid", "first", "--gn", "H", "--gn-batches", "2", "--gn-on", "impresslearn", "--out", str(out)])
        == 0
    )
    r = json.loads(out.read_text())
    assert r["config"]["hybrid"] == "first" and r["impresslearn"]["hybrid"] == "first"
    assert r["storage"]["impresslearn_hybrid_mask_bytes"] == 300 * 25 * 4  # the first layer, packed in 32-bit words
    (found,) = r["task_inference"]["impresslearn"]
    assert found["batches"] == 4 and found["method"] == "oneshot"
    assert "ImpressLearn (heterogeneous K=2, per-layer, hybrid-first)" in capsys.readouterr().out


def test_matrix_every_measures_the_diagonal_between_full_rows(tmp_path, capsys):
    out = tmp_path / "r.json"
    refused(capsys, TINY + ["--matrix-every", "0", "--out", str(out)], "--matrix-every must be at least 1")
    assert (
        cli.main(
            [
                "run",
                "--new-tasks",
                "3",
                "--first-new-task",
                "0",
                "--no-impresslearn",
                "--mask-epochs",
                "0.2",
                "--quiet",
                "--incorrect-tasks",
                "0",
                "--matrix-every",
                "5",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    m = json.loads(out.read_text())["supsup"]["acc_matrix"]
    R = m["matrix"]
    assert R[1][0] is None and R[1][1] is not None  # row 1: the diagonal only
    assert all(v is not None for v in R[2])  # the last row: every task
    assert m["forgetting"] == 0.0 and m["backward_transfer"] == 0.0  # frozen masks, measured
    capsys.readouterr()


def test_tiny_run_writes_results_and_plots(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert cli.main(TINY + ["--basis", "random", "--per-channel", "--gn", "H", "--gn-batches", "2", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["status"] == "done" and r["command"].startswith("impresslearn run")
    assert len(r["supsup"]["task_acc"]) == 2 and len(r["impresslearn"]["new_task_acc"]) == 2
    assert len(r["incorrect_mask_acc"]) == 2
    assert r["supsup"]["acc_matrix"]["forgetting"] == 0.0
    st = r["storage"]
    assert st["supsup_packed"] == 34_160 and st["impresslearn"] == 2 * 410 * 4
    # the learned masks coded for cold storage: under half the packed form at density 0.1
    assert len(st["supsup_coded_per_task"]) == 2 and st["supsup_coded"] < st["supsup_packed"] / 2
    assert r["config"]["basis"] == "random" and r["config"]["per_channel"] is True
    assert r["task_inference"]["supsup"][0]["batches"] == 4
    printed = capsys.readouterr().out
    assert "SupSup" in printed and "ImpressLearn (random K=2, per-channel)" in printed
    assert cli.main(["table", str(out)]) == 0
    assert "| permuted-mnist random K=2 per-channel | 2 |" in capsys.readouterr().out
    assert cli.main(["table", "--grid", str(out)]) == 0
    grid = capsys.readouterr().out.splitlines()
    acc = 100 * r["impresslearn"]["mean_acc"]
    assert grid[0] == "| K | random, per-channel |"
    assert grid[2] == f"| 2 | {acc:.1f} % (3,280 B) |"
    assert cli.main(["plot", str(out), "--out-dir", str(tmp_path)]) == 0
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["permuted-mnist-accuracy-vs-bytes.png", "permuted-mnist-impressions.png"]
    assert all((tmp_path / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_rotated_run_with_the_cache(tmp_path):
    cache = tmp_path / "cache"
    args = TINY + ["--benchmark", "rotated-mnist", "--new-angles", "5,15", "--cache", str(cache)]
    cli.main(args + ["--out", str(tmp_path / "a.json")])
    cli.main(args + ["--hybrid", "--out", str(tmp_path / "b.json")])
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["tasks"]["new"] == ["rotation 5°", "rotation 15°"] and a["tasks"]["basis"] == ["rotation 0°", "rotation 10°"]
    assert b["supsup"]["masks_from_cache"] == 2 and b["supsup"]["task_acc"] == a["supsup"]["task_acc"]
    assert b["impresslearn"]["hybrid"] and b["storage"]["impresslearn_hybrid_mask_bytes"] == 160
    assert len(list(cache.glob("*.safetensors"))) == 4  # 2 new-task masks + 2 basis masks


@pytest.mark.slow
def test_short_real_experiment_end_to_end(mnist_root, tmp_path):
    """A short PermutedMNIST run on the full data through the console entry point."""
    out = tmp_path / "real.json"
    cmd = [
        sys.executable,
        "-m",
        "impresslearn.cli",
        "run",
        "--data-root",
        str(mnist_root),
        "--new-tasks",
        "2",
        "-K",
        "3",
        "--mask-epochs",
        "0.25",
        "--alpha-epochs",
        "0.25",
        "--per-channel",
        "--gn",
        "H",
        "--gn-batches",
        "3",
        "--incorrect-tasks",
        "2",
        "--quiet",
        "--out",
        str(out),
    ]
    subprocess.run(cmd, check=True, timeout=600)
    r = json.loads(out.read_text())
    assert r["data"]["train"] == 60_000 and r["data"]["eval"] == 10_000
    assert min(r["supsup"]["task_acc"]) > 0.8  # a quarter epoch of real data
    assert min(r["impresslearn"]["new_task_acc"]) > 0.5  # per-channel alphas over 3 impressions
    assert max(r["incorrect_mask_acc"]) < 0.25  # wrong masks: chance
    assert r["task_inference"]["supsup"][0]["task_acc"] >= 0.8


def test_compression_ratio_below_one_is_not_rounded_to_zero():
    # per-channel alphas with a large basis can cost more than the mask they replace
    assert tables.ratio(0.4196) == "0.42×"
    assert tables.ratio(4.17) == "4.2×"
    assert tables.ratio(285.4) == "285×"


def test_supsup_only_run_from_seed_one_records_its_learned_density(tmp_path, capsys):
    # SupSup's own task set (permutation seeds 1, 2, ...) needs no basis: --first-new-task 0 is
    # allowed without ImpressLearn, which then prints no row of its own; threshold masks record
    # the density they learned, not the unused setting.
    out = tmp_path / "r.json"
    loud = [a for a in TINY if a != "--quiet"]
    assert cli.main(loud + ["--no-impresslearn", "--first-new-task", "0", "--mask", "threshold", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "ImpressLearn" not in printed.out and "SupSup only" in printed.err and "basis heterogeneous" not in printed.err
    r = json.loads(out.read_text())
    assert r["tasks"]["new"][0].endswith("seed 1)") or "seed 1" in r["tasks"]["new"][0]
    assert r["backbone"]["density"] is None and 0.2 < r["backbone"]["measured_density"] < 0.8
    assert r["backbone"]["measured_density"] == r["storage"]["supsup_density"]


def test_gn_mixed_and_exhaustive_reach_the_results(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert (
        cli.main(
            TINY
            + [
                "--no-impresslearn",
                "--preset",
                "supsup",
                "--mask-iterations",
                "30",
                "--gn",
                "H",
                "--gn-methods",
                "oneshot,binary,exhaustive",
                "--gn-inputs",
                "batch,mixed",
                "--gn-batches",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    gn = json.loads(out.read_text())["task_inference"]["supsup"]
    done = {(r["method"], r["input"]) for r in gn}
    # binary search halves a whole batch's candidates: not run per sample
    assert done == {
        ("oneshot", "batch"),
        ("binary", "batch"),
        ("exhaustive", "batch"),
        ("oneshot", "mixed"),
        ("exhaustive", "mixed"),
    }
    for r in gn:
        assert 0 <= r["task_acc"] <= 1 and r["samples_per_s"] > 0
        if r["input"] == "mixed":
            assert r["samples"] == 2 * 128
    (diag,) = json.loads(out.read_text())["task_inference_diagnosis"]["supsup"]
    assert diag["objective"] == "H" and diag["batches"] == 2
    one = next(r for r in gn if (r["method"], r["input"]) == ("oneshot", "batch"))
    assert diag["true_task_most_negative"] == one["task_acc"]  # the same choice, counted twice
    assert cli.main(["table", "--inference", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| oneshot, batch | oneshot, mixed |" in text and "| SupSup masks, permuted-mnist (supsup, " in text
    assert "superposition accuracy" in text


def test_the_overview_plot_of_every_method(tmp_path):
    root = Path(__file__).resolve().parent.parent / "results"
    files = [
        root / "permuted" / "grid-heterogeneous-K10-per-channel.json",
        root / "exssnet" / "permuted-d0.05-s0.json",
        root / "ksm" / "adapt.json",
    ]
    out = tmp_path / "overview.png"
    assert cli.main(["plot", "--overview", str(out)] + [str(f) for f in files]) == 0
    assert out.stat().st_size > 10_000


def _parsers():
    from impresslearn.cli import build_parser
    from impresslearn.cli import split as split_cli

    top = build_parser()
    subs = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices
    return {**{f"impresslearn {k}": v for k, v in subs.items()}, "impresslearn run (split)": split_cli.build_parser()}


@pytest.mark.parametrize("command", list(_parsers()))
def test_help_shows_every_default(command):
    # every option that takes a value says its default (or what decides it) in --help
    parser = _parsers()[command]
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0 or action.default is argparse.SUPPRESS or action.required:
            continue
        entry = " ".join(parser._get_formatter()._format_action(action).split())
        assert "default" in entry, f"{command}: {entry}"


def test_each_experiment_is_a_command_of_its_own(capsys, tmp_path):
    """mnist, compare and split take only their own options; a misplaced one is refused naming the
    command that takes it; `run` stays the older spelling of all three."""
    out = ["--out", str(tmp_path / "x.json")]
    refused(capsys, ["mnist", "--methods", "exssnet", *out], "--methods belongs to impresslearn compare")
    refused(capsys, ["compare", "--basis-size", "3", *out], "--basis-size belongs to impresslearn mnist")
    refused(
        capsys,
        ["mnist", "--benchmark", "split-mnist", *out],
        "split-mnist has no basis tasks: ImpressLearn there takes --basis random",
    )
    refused(capsys, ["split", "--benchmark", "split-cifar100", *out], "--data-root")
    parser = cli.build_parser()
    assert parser.parse_args(["compare"]).methods == ["supsup", "ssnet", "exssnet", "exssnet-kkt"]
    assert parser.parse_args(["run"]).methods is None  # run without --methods: the mnist experiment


def test_mnist_and_run_are_one_experiment(tmp_path, capsys):
    """A run started as `run` is resumed by the same options under `mnist` (one configuration)."""
    out = tmp_path / "r.json"
    args = TINY[1:] + ["--new-tasks", "1", "--no-impresslearn", "--out", str(out)]
    assert cli.main(["run", *args]) == 0
    first = json.loads(out.read_text())
    assert cli.main(["mnist", *args]) == 0
    again = json.loads(out.read_text())
    assert again["resumed"] and again["config"] == first["config"]
    assert again["supsup"]["task_acc"] == first["supsup"]["task_acc"]


COMMITTED = sorted(p for p in (Path(__file__).resolve().parents[1] / "results").rglob("*.json") if ".run" not in str(p))


def test_every_committed_results_file_reads_or_says_why(capsys):
    """Every results file the project has committed makes a table, or is refused in one sentence
    (exit 2: a file of another tool, a run folder's config): never a traceback (exit 1)."""
    assert len(COMMITTED) > 50
    kinds = {"mnist": 0, "compare": 0, "adapt": 0, "split": 0}
    for path in COMMITTED:
        code = cli.main(["table", str(path)])
        err = capsys.readouterr().err
        assert code in (0, 2), (path, err)
        if code == 2:
            assert err.count("\n") == 1 and "Traceback" not in err, (path, err)
            continue
        r = json.loads(path.read_text())
        kind = (
            "adapt"
            if "methods_done" in r
            else "compare"
            if isinstance(r.get("methods"), list)
            else "split"
            if r["config"]["benchmark"].startswith("split-i")
            else "mnist"
        )
        kinds[kind] += 1
    assert all(kinds.values()), kinds  # each command's files read


@pytest.mark.parametrize(
    "name, png",
    [
        ("exssnet/split-d0.05-s0.json", "split-mnist-methods-accuracy-vs-bytes.png"),
        ("ksm/adapt.json", "ksm-adapt-accuracy-vs-bytes.png"),
        ("scale/split-imagenet-100-tasks.json", "split-imagenet-accuracy-vs-bytes.png"),
    ],
)
def test_plot_reads_each_commands_results(tmp_path, capsys, name, png):
    path = Path(__file__).resolve().parents[1] / "results" / name
    assert cli.main(["plot", str(path), "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_quantised_alphas_end_to_end(tmp_path, capsys):
    """--alpha-bits: the alphas train quantised, the storage record counts codes and scales."""
    out = tmp_path / "q.json"
    args = TINY + ["--per-channel", "--alpha-bits", "4", "--alpha-scale", "row", "--incorrect-tasks", "0", "--out", str(out)]
    assert cli.main(args) == 0
    r = json.loads(out.read_text())
    # LeNet-300-100, K = 2 per channel: 2 x 410 4-bit codes and 410 float16 scales a task
    assert r["storage"]["impresslearn_alpha_bytes"] == 2 * 410 * 4 // 8 + 2 * 410
    assert r["config"]["alpha_bits"] == 4 and len(r["impresslearn"]["new_task_acc"]) == 2
    refused(capsys, TINY + ["--alpha-scale", "row", "--out", str(out)], "give --alpha-bits too")


def test_the_pareto_front_keeps_what_nothing_beats():
    from impresslearn.experiments.plots import pareto_front

    points = [(100, 90.0), (50, 80.0), (200, 85.0), (50, 70.0), (400, 95.0), (300, 94.0)]
    assert pareto_front(points) == [(50, 80.0), (100, 90.0), (300, 94.0), (400, 95.0)]


def test_per_channel_layers_are_named_layers(capsys, tmp_path):
    out = ["--out", str(tmp_path / "x.json")]
    refused(
        capsys,
        ["mnist", "--per-channel-layers", "7", *out],
        r"per-channel layers must be layers of the backbone \(1, 3, 5\), got 7",
    )
    refused(capsys, ["mnist", "--per-channel-layers", "5", "--alpha-bits", "4", "--alpha-scale", "row", *out], "in every layer")
