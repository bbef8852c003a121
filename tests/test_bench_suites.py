"""The pytest-benchmark suites in bench/ keep working: their quick mode (tiny cases, every backend
and baseline, Triton interpreted) runs here with timing off, and a timed run writes the JSON that
tables and plots are made from."""

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_timed_run_writes_grouped_json(tmp_path):
    out = tmp_path / "bench.json"
    done = _pytest("bench/test_combine.py", "-q", "--benchmark-only", "--benchmark-min-rounds=1",
                   "--benchmark-max-time=0.000001", "--benchmark-warmup=off", f"--benchmark-json={out}")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "benchmark 'combine[13x3x3x3-T9] cpu'" in done.stdout  # the side-by-side tables
    runs = json.loads(out.read_text())["benchmarks"]
    groups = {r["group"] for r in runs}
    assert {"combine[13x3x3x3-T1] cpu", "grad_alpha[13x3x3x3-T9] cpu"} <= groups
    methods = {r["extra_info"]["method"] for r in runs if r["group"] == "combine[13x3x3x3-T9] cpu"}
    assert {"reference", "dense_supsup", "dense_matvec"} <= methods
    assert all(r["extra_info"]["case"] and r["stats"]["median"] > 0 for r in runs)
