"""The frontier across results files (experiments/frontier.py, `table --frontier`, `plot
--frontier`): real runs of the mnist and compare commands, each method at its smallest exact form,
seeds pooled, the Pareto front and the reach computed from the numbers."""

import json

import pytest
from test_cli import TINY

from impresslearn import cli
from impresslearn.experiments import frontier
from impresslearn.experiments.frontier import Point


def run(tmp_path, name, *extra):
    out = tmp_path / f"{name}.json"
    assert cli.main(TINY + ["--incorrect-tasks", "0", "--cache", str(tmp_path / "cache"), *extra, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("frontier")
    return [
        run(tmp, "q4", "--per-channel", "--alpha-bits", "4", "--alpha-step", "mse"),
        run(tmp, "q4-s1", "--per-channel", "--alpha-bits", "4", "--alpha-step", "mse", "--seed", "1"),
        run(tmp, "layer", "--per-channel", "--alpha-bits", "3"),
        run(tmp, "d05", "--no-impresslearn", "--density", "0.05"),
    ]


def test_each_file_gives_its_points_at_their_smallest_form(files):
    ((bench, points),) = frontier.frontier_points([str(f) for f in files]).items()
    assert bench == "permuted-mnist"
    by = {(p.family, p.label): p for p in points}
    q4 = by[("ImpressLearn", "K=2 per-channel, 4-bit/layer mse")]
    assert sorted(q4.accs) == [0, 1]  # two seeds pooled
    recorded = [json.loads(f.read_text()) for f in files[:2]]
    assert q4.sizes == {r["config"]["seed"]: r["storage"]["impresslearn_smallest"] for r in recorded}
    # range-coded codes: fewer bytes than the bit-packed 4-bit codes the run trained as
    assert all(r["storage"]["impresslearn_smallest"] < r["storage"]["impresslearn_alpha_bytes"] for r in recorded)
    sup = by[("SupSup", "top-k d=0.1")]
    assert sorted(sup.accs) == [0, 1]  # the masks shared by the files of a seed count once
    assert sup.sizes[0] == recorded[0]["storage"]["supsup_coded"]
    assert by[("SupSup", "top-k d=0.05")].sizes[0] < sup.sizes[0]


def test_the_reach_is_the_fewest_bytes_within_a_point():
    ref = Point("SupSup", "top-k d=0.1", {0: 0.94}, {0: 15000.0}, density=0.1)
    far = Point("ImpressLearn", "a", {0: 0.92}, {0: 400.0})
    near = Point("ImpressLearn", "b", {0: 0.935, 1: 0.933}, {0: 900.0, 1: 1100.0})
    big = Point("ImpressLearn", "c", {0: 0.95}, {0: 2000.0})
    assert frontier.reach([ref, far, near, big]) == (ref, near) and near.nbytes == 1000.0
    assert frontier.pareto([ref, far, near, big]) == [far, near, big]
    assert frontier.reach([ref, far]) is None and frontier.reach([far, near]) is None


def test_table_and_plot_commands(files, tmp_path, capsys):
    assert cli.main(["table", "--frontier", *map(str, files)]) == 0
    text = capsys.readouterr().out
    assert "**permuted-mnist**" in text and "K=2 per-channel, 4-bit/layer mse | 2 |" in text
    assert ("Fewest bytes within a point of SupSup" in text) or ("No ImpressLearn setting comes within" in text)
    assert cli.main(["plot", "--frontier", *map(str, files), "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "permuted-mnist-frontier.png").read_bytes()[:4] == b"\x89PNG"


def test_an_unfinished_run_is_left_out_and_named(files, tmp_path, capsys):
    """A run still going (or killed) holds means over some tasks only: it is no point of the
    frontier, and the table says it was left out."""
    r = json.loads(files[0].read_text())
    r["status"] = "running"
    r["impresslearn"]["mean_acc"] = 1.0  # what a partial mean could be
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps(r))
    points = frontier.frontier_points([str(partial), str(files[3])])["permuted-mnist"]
    assert [p.family for p in points] == ["SupSup"]
    assert cli.main(["table", "--frontier", str(partial), str(files[3])]) == 0
    assert f"Left out, not finished: {partial}." in capsys.readouterr().out
