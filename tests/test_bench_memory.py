"""The memory benchmark's one command works end to end (tiny sizes here; the real run is
`python bench/bench_memory.py`, results in bench/results/)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_memory.py"
TINY = ["--arch", "resnet18", "--width", "4", "--image-size", "16", "--T", "3", "--steps", "1"]


def _bench(tmp_path, *args):
    out = tmp_path / "memory.json"
    proc = subprocess.run([sys.executable, str(BENCH), *args, "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), out


def test_cpu_benchmark_writes_cases_and_table(tmp_path):
    res, out = _bench(tmp_path, *TINY)
    cases = {(c["mode"], c["T"]): c for c in res["cases"]}
    assert set(cases) == {("packed", 3), ("dense", 3)}
    for c in cases.values():
        assert c["status"] == "ok" and c["peak_rss_mb"] > c["rss_import_mb"] > 0 and c["step_s"] > 0
        assert c["ru_maxrss_mb"] >= c["peak_rss_mb"] - 1  # wait4's figure covers the whole child, exit included
    # 1 bit per weight per mask against 32: the bases differ by about 32x (rows padded to 32 bits).
    ratio = cases[("dense", 3)]["basis_mb"] / cases[("packed", 3)]["basis_mb"]
    assert 20 < ratio <= 32
    assert "| 3 |" in res["table"] and out.with_suffix(".md").read_text().startswith("`python bench/bench_memory.py")


def test_a_case_beyond_the_limit_is_recorded_not_run(tmp_path):
    res, _ = _bench(tmp_path, "--T", "150", "--modes", "dense", "--limit-gb", "8")
    (case,) = res["cases"]
    assert case["status"] == "out of memory" and "13.1 GiB" in case["error"]  # 150 x 23.5 M float32 masks


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_benchmark_finds_the_largest_batch(tmp_path):
    res, _ = _bench(tmp_path, *TINY, "--device", "cuda", "--max-batch", "64")
    for c in res["cases"]:
        assert c["status"] == "ok" and c["cuda_peak_mb"] > 0 and 1 <= c["max_batch"] <= 64
