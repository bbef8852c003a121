"""The Triton benchmark runner works end to end (--smoke: tiny sizes, interpreted on a CPU without CUDA)."""

import json
import sys
from pathlib import Path

import pytest

import impresslearn

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.skipif("triton" not in impresslearn.available_backends(), reason="triton backend unavailable")
def test_smoke_run_writes_results_and_plot(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import run_triton

    path = run_triton.main(["--smoke", "--out", str(tmp_path), "--quiet"])
    results = json.loads(path.read_text())
    assert path.with_suffix(".png").stat().st_size > 0
    assert {r["bench"] for r in results["rows"]} == {"combine", "impress_linear", "conv_step", "popup"}
    assert all("ms" in r and r["ms"] > 0 for r in results["rows"])
    # the runner checks the kernels against the reference while it times them
    assert results["summary"]["kernel_results_differing_from_reference"] == 0
    assert any("matches_reference" in r for r in results["rows"])
    assert any("max_rel_error_vs_reference" in r for r in results["rows"])
    sys.modules.pop("run_triton", None)
