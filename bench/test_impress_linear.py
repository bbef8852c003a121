"""impress_linear (F.linear(x, W_eff, bias) with W_eff formed from the packed words), forward and
forward + backward (the gradients of x and alpha), against the dense baselines and the floor
(F.linear with W_eff precomputed); and one ImpressLearn training step of LeNet-300-100.
Results are checked against the float64 results within float32 rounding (bench_cases.Exact)."""

import bench_cases
import pytest


@pytest.mark.bench("impress_linear")
def test_impress_linear(run, expected, param):
    bench_cases.check(param, run(param), expected(param))


@pytest.mark.bench("impress_linear_backward")
def test_impress_linear_backward(run, expected, param):
    bench_cases.check(param, run(param), expected(param))


@pytest.mark.bench("lenet_step")
def test_lenet_step(run, expected, param):
    bench_cases.check(param, run(param), expected(param))
