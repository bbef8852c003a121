"""bench/bench_training.py runs and writes what it says: every method's step beside the plain
network of the same run (inserted when not asked for), the epoch against bare steps, JSON + md.
Run in this process (its main takes argv), the results read from the JSON it writes."""

import json
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def bench_training(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_training

    threads = torch.get_num_threads()
    yield bench_training
    torch.set_num_threads(threads)  # the script sets its --threads


def test_a_tiny_training_benchmark(bench_training, tmp_path):
    out = tmp_path / "t.json"
    assert (
        bench_training.main(
            [
                "--nets",
                "lenet",
                "--methods",
                "supsup-topk,impress-K10-channel",
                "--rounds",
                "1",
                "--steps",
                "1",
                "--data-root",
                "",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())
    (t,) = r["steps"]
    assert list(t["methods"]) == ["plain", "supsup-topk", "impress-K10-channel"]
    assert t["methods"]["plain"]["ratio_to_plain"] == 1.0
    for m in t["methods"].values():
        assert m["median_ms"] > 0 and len(m["rounds_ms"]) == 1
    e = r["epoch"]
    assert e["steps"] == 47 and e["ratio"] > 0 and "subset" in e["data"]  # the shipped subset: 6,000 / 128
    assert out.with_suffix(".md").exists()


def test_unknown_names_are_refused(bench_training, tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:
        bench_training.main(["--methods", "dense-magic", "--out", str(tmp_path / "x.json")])
    assert refused.value.code == 2 and "unknown method or network ['dense-magic']" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
