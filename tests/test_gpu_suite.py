"""The GPU suite works before a GPU is lent: its dry run runs every step on the CPU, and its time
limits hold (a step over its share is stopped and recorded; steps past the budget are not run)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def suite(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import gpu_suite

    yield gpu_suite
    sys.modules.pop("gpu_suite", None)


def test_dry_run_runs_every_step(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCH / "gpu_suite.py"), "--dry-run", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((tmp_path / "gpu-suite-dry-run.json").read_text())
    steps = {s["name"]: s for s in record["steps"]}
    assert list(steps) == ["doctor", "cuda_tests", "triton_bench", "memory_bench", "task_inference", "task_memory"]
    assert all(s["rc"] == 0 and not s["timed_out"] for s in steps.values())
    assert steps["doctor"]["result"]["backends"]["reference"] is None
    tests = steps["cuda_tests"]["result"]
    assert tests["tests"] > 0 and tests["skipped"] == tests["tests"]  # the cuda-marked tests, skipped on a CPU
    assert steps["triton_bench"]["result"]["summary"]["kernel_results_differing_from_reference"] == 0
    assert len(steps["memory_bench"]["result"]["cases"]) == 2
    assert [c["status"] for c in steps["task_inference"]["result"]["cases"]] == ["ok"] * 4
    assert record["seconds"] <= record["budget_s"]
    md = (tmp_path / "gpu-suite-dry-run.md").read_text()
    assert "| cuda_tests | 0 |" in md and "packed vs dense" in md
    assert "===== memory_bench" in (tmp_path / "gpu-suite-dry-run.log").read_text()
    # what the lent machine sends back: at most 8 files
    assert len([p for p in tmp_path.iterdir() if p.is_file()]) <= 8


def test_a_step_over_its_limit_is_stopped(suite, tmp_path):
    step = suite.Step("slow", [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(30)"], 1)
    with open(tmp_path / "log", "w") as log:
        suite.run_step(step, 1, log)
    assert step.timed_out and step.rc is None and step.seconds < 20
    assert "started" in (tmp_path / "log").read_text()


def test_steps_past_the_budget_are_not_run(suite, tmp_path):
    steps = [suite.Step("a", [sys.executable, "-c", "pass"], 5), suite.Step("b", [sys.executable, "-c", "pass"], 5)]
    suite.write_summary(tmp_path / "s.json", "x", steps, 0.0, True)
    assert "| a | not run |" in (tmp_path / "s.md").read_text()
