"""pytest-benchmark suites of the kernels: every backend and the dense baselines on the same cases.

    pytest bench --benchmark-only                       # the default selection: about 2 minutes on 2 cores
    pytest bench --benchmark-only --full-grid           # every case and method: over 20 minutes on 2 cores
    pytest bench --benchmark-only --benchmark-json=F    # ... and every timing with its case (extra_info)
    pytest bench --benchmark-save=NAME / --benchmark-compare
    pytest bench --quick --benchmark-disable            # tiny cases, each call once (CI: the suites still run)

A test takes `param` (a bench_cases.Param: primitive, case, method), parametrized here from the
test's `@pytest.mark.bench(primitive)` over bench_cases.params: by default a case or two per
primitive, the library's kernel against the dense baselines; --full-grid every case, the
reference, the native kernel's variants and Triton's paths too; --quick (or
IMPRESSLEARN_BENCH_QUICK=1) the tiny cases, every method.

As each case group (the methods of one case) finishes, one line says how the kernel compares
with the best dense baseline, as a speed-up ratio of their fastest calls (bench_cases.speedup);
the lines are repeated after the tables and written into --benchmark-json's file
("impresslearn_speedups").
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
    group = parser.getgroup("impresslearn benchmarks")
    group.addoption("--quick", action="store_true", help="tiny cases, every method (also IMPRESSLEARN_BENCH_QUICK=1)")
    group.addoption(
        "--full-grid",
        action="store_true",
        help="every case and method: the reference, the native "
        "kernel's variants and Triton's paths included (over 20 minutes on 2 cores; the default is a "
        "case or two per primitive, the library's kernel against the dense baselines, about 2 minutes)",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "bench(primitive): a benchmark over the cases and methods of a primitive")
    if config.getoption("--quick"):
        os.environ["IMPRESSLEARN_BENCH_QUICK"] = "1"
    config.stash[SUMMARY] = _Summary()


def _quick(config) -> bool:
    return config.getoption("--quick") or os.environ.get("IMPRESSLEARN_BENCH_QUICK", "0") not in ("", "0")


INTERPRETED = "Triton's interpreter (no CUDA here) is far too slow to time; quick mode (--quick) runs its cases to show they work"


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("bench")
    if marker is None or "param" not in metafunc.fixturenames:
        return
    import bench_cases

    quick = _quick(metafunc.config)
    found = bench_cases.params(marker.args[0], quick=quick, full=metafunc.config.getoption("--full-grid"))
    metafunc.parametrize(
        "param",
        [
            pytest.param(p, id=p.id, marks=[pytest.mark.skip(reason=INTERPRETED)] if p.method.interpreted and not quick else [])
            for p in found
        ],
    )


@pytest.fixture
def run(benchmark, request):
    """run(param) -> the result of one call: times the call of `param`, grouped with the other
    methods of its case, with the case recorded for --benchmark-json."""
    import bench_cases

    def timed(param):
        fn = bench_cases.setup(param.primitive, param.case, param.method)
        benchmark.group = param.group
        benchmark.extra_info.update(
            primitive=param.primitive,
            case=param.case.id,
            method=param.method.id,
            device=param.method.device,
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(param.case).items()},
        )
        out = benchmark(fn)
        if benchmark.stats:  # timed (not under --benchmark-disable)
            request.config.stash[SUMMARY].fastest[request.node.nodeid] = benchmark.stats.stats.min
        return out

    return timed


_LAST: dict = {}


@pytest.fixture
def expected():
    """expected(param) -> what the results of `param`'s case are checked against
    (bench_cases.expected: float64 results and the reference's, computed on the CPU once per case:
    the params of a case come one after another)."""
    import bench_cases

    def result(param):
        key = (param.primitive, param.case)
        if key not in _LAST:
            _LAST.clear()
            _LAST[key] = bench_cases.expected(param.primitive, param.case)
        return _LAST[key]

    return result


# --------------------------------------------------------------------------- one line per case group


class _Summary:
    """Counts the tests of each case group left to run; when a group's last one ends, prints its
    line (bench_cases.speedup) at once, so a long run reports as it goes."""

    def __init__(self):
        self.pending: dict[str, int] = {}  # group -> tests not finished
        self.param_of: dict[str, object] = {}  # nodeid -> Param
        self.fastest: dict[str, float] = {}  # nodeid -> seconds of the fastest call
        self.passed: set[str] = set()
        self.failed: set[str] = set()
        self.rows: list[dict] = []

    def collected(self, items):
        for item in items:
            param = getattr(item, "callspec", None) and item.callspec.params.get("param")
            if param is not None and hasattr(param, "group"):
                self.param_of[item.nodeid] = param
                self.pending[param.group] = self.pending.get(param.group, 0) + 1

    def finished(self, nodeid: str):
        """The row of the group `nodeid` completes, if it does."""
        param = self.param_of.get(nodeid)
        if param is None:
            return None
        self.pending[param.group] -= 1
        if self.pending[param.group]:
            return None
        import bench_cases

        group = [(n, p) for n, p in self.param_of.items() if p.group == param.group]
        times = {p.method.name: self.fastest[n] for n, p in group if n in self.passed and n in self.fastest}
        failed = {p.method.name for n, p in group if n in self.failed}
        row = bench_cases.speedup(param.primitive, param.case, "cuda" if param.method.device == "cuda" else "cpu", times, failed)
        if row is not None:
            self.rows.append(row)
        return row


SUMMARY = pytest.StashKey[_Summary]()


def pytest_collection_finish(session):
    session.config.stash[SUMMARY].collected(session.items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    summary = item.config.stash[SUMMARY]
    if report.when == "call" and report.passed:
        summary.passed.add(report.nodeid)
    elif report.failed:
        summary.failed.add(report.nodeid)
    if report.when == "teardown":
        row = summary.finished(report.nodeid)
        reporter = item.config.pluginmanager.get_plugin("terminalreporter")
        if row is not None and reporter is not None:
            reporter.write_line(row["line"], bold=True)
    return report


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, config):
    """The lines again, together, after pytest-benchmark's tables."""
    rows = config.stash[SUMMARY].rows
    if rows:
        terminalreporter.section("impresslearn: the kernel against the best dense baseline, per case")
        for row in rows:
            terminalreporter.write_line(row["line"])


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["impresslearn_speedups"] = list(config.stash[SUMMARY].rows)
