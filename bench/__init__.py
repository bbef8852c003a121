"""Benchmarks: scripts (run them as files, e.g. `python bench/run_triton.py`) and the
pytest-benchmark suites (`pytest bench --benchmark-only`).

A package only so that pytest names the suites bench.test_<primitive>: tests/kernels holds
test files of the same names, and both can then be collected in one run.
"""
