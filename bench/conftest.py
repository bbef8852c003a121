"""pytest-benchmark suites of the kernels: every backend and the dense baselines on the same cases.

    pytest bench --benchmark-only                       # the tables, one group per primitive and case
    pytest bench --benchmark-only --benchmark-json=F    # ... and every timing with its case (extra_info)
    pytest bench --benchmark-save=NAME / --benchmark-compare
    pytest bench --quick --benchmark-disable            # tiny cases, each call once (CI: the suites still run)

A test takes `param` (a bench_cases.Param: primitive, case, method), parametrized here from the
test's `@pytest.mark.bench(primitive)` over bench_cases.params. --quick (or
IMPRESSLEARN_BENCH_QUICK=1) picks the tiny cases.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

# As in tests/conftest.py: without a GPU the Triton kernels run in Triton's interpreter, which
# must be chosen before triton is imported (the backend registry imports it lazily).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# The suites and the scripts import the shared cases the same way: `import bench_cases`.
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", help="impresslearn benchmarks: tiny cases only "
                     "(also IMPRESSLEARN_BENCH_QUICK=1)")


def pytest_configure(config):
    config.addinivalue_line("markers", "bench(primitive): a benchmark over the cases and methods of a primitive")
    if config.getoption("--quick"):
        os.environ["IMPRESSLEARN_BENCH_QUICK"] = "1"


def _quick(config) -> bool:
    return config.getoption("--quick") or os.environ.get("IMPRESSLEARN_BENCH_QUICK", "0") not in ("", "0")


INTERPRETED = ("Triton's interpreter (no CUDA here) is far too slow to time; "
               "quick mode (--quick) runs its cases to show they work")


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("bench")
    if marker is None or "param" not in metafunc.fixturenames:
        return
    import bench_cases

    quick = _quick(metafunc.config)
    found = bench_cases.params(marker.args[0], quick=quick)
    metafunc.parametrize("param", [
        pytest.param(p, id=p.id, marks=[pytest.mark.skip(reason=INTERPRETED)] if p.method.interpreted and not quick else [])
        for p in found])


@pytest.fixture
def run(benchmark):
    """run(param) -> the result of one call: times the call of `param`, grouped with the other
    methods of its case, with the case recorded for --benchmark-json."""
    import bench_cases

    def timed(param):
        fn = bench_cases.setup(param.primitive, param.case, param.method)
        benchmark.group = param.group
        benchmark.extra_info.update(primitive=param.primitive, case=param.case.id, method=param.method.id,
                                    device=param.method.device, **{k: (list(v) if isinstance(v, tuple) else v)
                                                                   for k, v in vars(param.case).items()})
        return benchmark(fn)

    return timed


_LAST: dict = {}


@pytest.fixture
def expected():
    """expected(param) -> the reference backend's result on the CPU for the same case (the last one
    kept: the params of a case come one after another)."""
    import bench_cases

    def result(param):
        key = (param.primitive, param.case)
        if key not in _LAST:
            _LAST.clear()
            _LAST[key] = bench_cases.setup(param.primitive, param.case, bench_cases.Method("reference"))()
        return _LAST[key]

    return result
