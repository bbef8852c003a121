"""When the "triton" backend is available, where it runs, and that "auto" never interprets on a CPU."""

import os
import subprocess
import sys

import pytest
import torch

import impresslearn
from impresslearn import ops

PROBE = "import impresslearn; print(impresslearn.backends.why_unavailable('triton'))"


def run_probe() -> str:
    """Why the triton backend is unavailable, in a process without TRITON_INTERPRET ("None" if it is available)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine")
def test_unavailable_without_cuda_or_interpreter():
    # (with TRITON_INTERPRET=1, as in this process, it is available: the other Triton tests run)
    reason = run_probe()
    assert "CUDA" in reason and "TRITON_INTERPRET" in reason


def test_auto_never_picks_the_interpreter_on_cpu():
    assert ops.backend_for("cpu") != "triton"


@pytest.mark.skipif("triton" not in impresslearn.available_backends(), reason="triton backend unavailable")
def test_supports_matches_how_kernels_run():
    from impresslearn import kernels
    from impresslearn.kernels.runtime import INTERPRETED

    assert kernels.supports("cpu") == INTERPRETED
    assert kernels.supports("cuda") == (not INTERPRETED)
    device = "cpu" if INTERPRETED else "cuda"
    with impresslearn.backend("triton"):
        assert ops.backend_for(device) == "triton"
    if not INTERPRETED:  # compiled kernels refuse CPU tensors with a clear message
        with impresslearn.backend("triton"), pytest.raises(RuntimeError, match="cannot run on cpu"):
            ops.threshold_mask(torch.zeros(3))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter runs only on the CPU-only machine")
def test_interpreter_runs_loops_over_kernel_arguments():
    # triton 3.6's interpreter with numpy >= 2.4 cannot (kernels/runtime.py reads the argument by
    # element there); every combine and GEMM kernel loops over such a bound.
    from impresslearn.kernels import runtime

    assert runtime.INTERPRETED and runtime._loops_run()
