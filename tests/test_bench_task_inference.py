"""The task-inference benchmark's one command works end to end on tiny models (the real run is
`python bench/bench_task_inference.py`, results in bench/results/task_inference_cpu.*): both paths
run in their children, choose the same tasks, and the table holds every case."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "bench_task_inference.py"


def test_quick_run_writes_cases_and_table(tmp_path):
    out = tmp_path / "task_inference.json"
    cmd = [sys.executable, str(BENCH), "--quick", "--models", "lenet", "vit", "--batches", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    cases = {(c["model"], c["mode"], c["path"]): c for c in res["cases"]}
    assert len(cases) == 2 * 3 * 2
    for mode in ("exhaustive_batch", "exhaustive_sample", "oneshot_sample"):
        bank, packed = cases[("lenet", mode, "bank")], cases[("lenet", mode, "packed")]
        assert bank["status"] == packed["status"] == "ok", (bank, packed)
        assert packed["chosen"] == bank["chosen"] and len(packed["chosen"]) == 2 * 8  # warm-up and one timed batch
        assert packed["images_per_s"] > 0 and packed["peak_above_model_mb"] >= 0 and packed["backend"] == "native"
        assert bank["bank_bytes"] > 0 and "bank_bytes" not in packed
    # a ViT takes no bank: one forward per task before, and no per-sample inference at all
    assert cases[("vit", "exhaustive_batch", "bank")]["status"] == "ok"
    assert cases[("vit", "oneshot_sample", "bank")]["status"] == "not available"
    assert cases[("vit", "oneshot_sample", "packed")]["status"] == "ok"
    md = out.with_suffix(".md").read_text()
    assert "| lenet | 3 | oneshot, sample |" in md and "| vit | 3 | exhaustive, sample | not available |" in md
