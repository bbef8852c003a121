"""bench/bench_training.py runs and writes what it says: every method's step beside the plain
network of the same run (inserted when not asked for), the epoch against bare steps, JSON + md."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_training.py"


def test_a_tiny_training_benchmark(tmp_path):
    out = tmp_path / "t.json"
    subprocess.run([sys.executable, str(BENCH), "--nets", "lenet", "--methods", "supsup-topk,impress-K10-channel",
                    "--rounds", "1", "--steps", "1", "--data-root", "", "--out", str(out)], check=True,
                   capture_output=True, text=True, timeout=600)
    r = json.loads(out.read_text())
    (t,) = r["steps"]
    assert list(t["methods"]) == ["plain", "supsup-topk", "impress-K10-channel"]
    assert t["methods"]["plain"]["ratio_to_plain"] == 1.0
    for m in t["methods"].values():
        assert m["median_ms"] > 0 and len(m["rounds_ms"]) == 1
    e = r["epoch"]
    assert e["steps"] == 47 and e["ratio"] > 0 and "subset" in e["data"]  # the shipped subset: 6,000 / 128
    assert "| supsup-topk |" in out.with_suffix(".md").read_text()


def test_unknown_names_are_refused(tmp_path):
    res = subprocess.run([sys.executable, str(BENCH), "--methods", "dense-magic", "--out", str(tmp_path / "x.json")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "unknown method or network ['dense-magic']" in res.stderr
