"""every_task_linear (a batch under every task's weight) and task_row_linear (each row under its
own task's), SupSup tasks of LeNet's first layer and a classifier, against the task bank (every
task's dense weight built beforehand, then GEMMs: what the library did before). Results are
checked against the float64 results within float32 rounding (bench_cases.Exact)."""

import bench_cases
import pytest


@pytest.mark.bench("every_task_linear")
def test_every_task_linear(run, expected, param):
    bench_cases.check(param, run(param), expected(param))


@pytest.mark.bench("task_row_linear")
def test_task_row_linear(run, expected, param):
    bench_cases.check(param, run(param), expected(param))
