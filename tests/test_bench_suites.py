"""The pytest-benchmark suites in bench/ keep working: their quick mode (tiny cases, every backend
and baseline, Triton interpreted) runs here with timing off; a timed run writes the JSON that
tables and plots are made from, and bench_native.py joins it with the memory of each case."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import impresslearn

ROOT = Path(__file__).resolve().parents[1]


def _pytest(*args, timeout=600):
    env = {**os.environ, "IMPRESSLEARN_BENCH_QUICK": "1"}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_quick_suites_pass():
    done = _pytest("bench", "-q", "--benchmark-disable")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
    assert int(summary.split(" passed")[0].split()[-1]) >= 50  # every primitive's cases and methods


@pytest.fixture(scope="module")
def timed_run(tmp_path_factory):
    """bench/test_combine.py in quick mode, each call timed once, with its JSON."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    done = _pytest("bench/test_combine.py", "-q", "--benchmark-only", "--benchmark-min-rounds=1",
                   "--benchmark-max-time=0.000001", "--benchmark-warmup=off", f"--benchmark-json={out}")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    return done.stdout, out


def test_timed_run_writes_grouped_json(timed_run):
    stdout, out = timed_run
    assert "benchmark 'combine[13x3x3x3-T9] cpu'" in stdout  # the side-by-side tables
    runs = json.loads(out.read_text())["benchmarks"]
    groups = {r["group"] for r in runs}
    assert {"combine[13x3x3x3-T1] cpu", "grad_alpha[13x3x3x3-T9] cpu"} <= groups
    methods = {r["extra_info"]["method"] for r in runs if r["group"] == "combine[13x3x3x3-T9] cpu"}
    assert {"reference", "dense_supsup", "dense_matvec"} <= methods
    assert all(r["extra_info"]["case"] and r["stats"]["median"] > 0 for r in runs)


@pytest.mark.skipif("native" not in impresslearn.available_backends(), reason="bench_native.py times the native backend")
def test_memory_per_case_joins_the_timings(timed_run, tmp_path):
    _, timings = timed_run
    out = tmp_path / "memory.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_native.py"), "--quick", "--only", "combine",
                           "--methods", "native", "dense_supsup", "--timings", str(timings), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())["results"]
    assert {(r["case"], r["method"]) for r in rows} == {(c, m) for c in ("13x3x3x3-T1", "13x3x3x3-T9")
                                                       for m in ("native", "dense_supsup")}
    assert all(r["peak_mb"] >= 0 and r["inputs_mb"] >= 0 and r["median_ms"] > 0 for r in rows)
    assert "| 13x3x3x3-T9 |" in done.stdout and "×" in done.stdout
