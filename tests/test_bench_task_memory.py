"""The task-memory benchmark's one command works end to end (a narrow ResNet-18 at 16x16 here; the
real run is `python bench/bench_task_memory.py`, results in bench/results/task_memory_cpu.*)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import torch.nn as nn

from impresslearn import models

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "bench_task_memory.py"
TINY = ["--arch", "resnet18", "--width", "4", "--image-size", "16", "--steps", "1", "--forward-runs", "1"]
FIELDS = (
    "baseline_mb",
    "converted_mb",
    "finished_mb",
    "held_trimmed_mb",
    "step_peak_mb",
    "forward_ms",
    "backend",
    "backbone_bytes",
    "packed_mask_bytes",
    "task_scores_bytes",
)


def _old_commit_here() -> bool:
    done = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", "7a68853^{commit}"], capture_output=True)
    return done.returncode == 0


def test_cpu_benchmark_writes_cases_and_table(tmp_path):
    out = tmp_path / "task_memory.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            *TINY,
            "--T",
            "3",
            "--old-T",
            "2",
            "--out",
            str(out),
            "--old-path",
            str(tmp_path / "il-old"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    new, old = res["cases"]
    assert new["code"] == "new" and new["T"] == 3 and new["status"] == "ok", new
    for key in FIELDS:
        assert new[key] is not None, key
    assert new["step_peak_mb"] > 0 and new["forward_ms"] > 0 and new["impresslearn"] == str(ROOT / "impresslearn")
    # 1 bit per weight per task, each row (a weight's first dimension) padded to whole 32-bit words:
    # T times one mask's words.
    shapes = [m.weight.shape for m in models.cifar_resnet18(100, width=4).modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    one_mask = sum(4 * s[0] * math.ceil(math.prod(s[1:]) / 32) for s in shapes)
    assert new["packed_bytes_per_task"] == one_mask and new["packed_mask_bytes"] == 3 * one_mask
    assert new["backbone_bytes"] >= new["task_scores_bytes"] == 4 * new["masked_weights"]
    # the code before the task states, run from its own extracted copy (where the history has it)
    if _old_commit_here():
        assert old["status"] == "ok" and old["impresslearn"].startswith(str(tmp_path / "il-old")), old
        assert old["all_scores_bytes"] == 2 * old["task_scores_bytes"]  # every task's floats, for life
    else:
        assert old["status"] == "not run" and "not in this checkout" in old["error"]
    assert "| 3 | now (" in res["table"] and "Acceptance" in res["verdict"]
    assert out.with_suffix(".md").read_text().count("| 2 | before, 7a68853") == (1 if _old_commit_here() else 0)
