"""combine (W ⊙ Σ_t alpha_t M_t) and its alpha gradient: the backends, the native inner loops and
Triton's coefficient paths, against the dense baselines (SupSup's broadcast, one matrix-vector
product), on ResNet's 512x512x3x3 layer at T = 1 ... 250. Each result is checked against the
float64 result within what float32 rounding allows over its sum (bench_cases.Exact), so a
baseline that drifts fails here instead of being timed."""

import bench_cases
import pytest


@pytest.mark.bench("combine")
def test_combine(run, expected, param):
    bench_cases.check(param, run(param), expected(param))


@pytest.mark.bench("grad_alpha")
def test_combine_grad_alpha(run, expected, param):
    bench_cases.check(param, run(param), expected(param))
