"""The pytest-benchmark suites in bench/ keep working, checked through what they return: every
quick case and method runs and passes the suites' own check (bench_cases.check), the default
selection is the small one it says and the full grid holds it, the rounding rule takes a long
sum that cancels and refuses a wrong one, the speed-up lines say what the timings say, and a
timed run of a few tests writes the JSON that tables and plots are made from (its speed-ups
included), and bench_native.py joins such a JSON with the memory of each case."""

import json
from pathlib import Path

import pytest

import impresslearn

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
PRIMITIVES = ("combine", "grad_alpha", "impress_linear", "impress_linear_backward", "popup", "lenet_step")


@pytest.fixture(scope="module")
def bench_cases():
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(BENCH))
        import bench_cases

        yield bench_cases


def test_every_quick_case_and_method_runs_and_passes_its_check(bench_cases):
    ran = 0
    for primitive in PRIMITIVES:
        for case in bench_cases.cases(primitive, quick=True):
            expect = bench_cases.expected(primitive, case)
            for param in bench_cases.params(primitive, quick=True):
                # A whole training step in Triton's interpreter takes longer than all the rest
                # together; the kernels it calls run interpreted above (combine, impress_linear).
                if param.case != case or (primitive == "lenet_step" and param.method.interpreted):
                    continue
                bench_cases.check(param, bench_cases.setup(primitive, case, param.method)(), expect)
                ran += 1
    assert ran >= 50  # every primitive's cases and methods


def test_the_default_selection_and_the_full_grid(bench_cases):
    kernel = bench_cases.kernel()
    for primitive in PRIMITIVES:
        default = bench_cases.params(primitive, quick=False)
        full = {p.id for p in bench_cases.params(primitive, quick=False, full=True)}
        assert {p.case.id for p in default} == set(bench_cases.DEFAULT_CASES[primitive])
        assert {p.id for p in default} <= full and len(full) > len(default)
        names = {p.method.name for p in default if p.method.device == "cpu"}
        assert kernel in names and set(bench_cases.dense_baselines(primitive)) <= names
        assert not any(p.method.interpreted or (p.method.variant and p.method.variant != "pack") for p in default)
    assert sum(len(bench_cases.params(p, quick=False)) for p in PRIMITIVES) <= 40  # a few minutes on 2 cores
    if "native" in impresslearn.available_backends():  # the kernel tests' discovery, shared
        from cases import VARIANTS

        assert bench_cases.native_variants() == VARIANTS and "generic" in VARIANTS


def test_the_rounding_rule_takes_a_long_cancelling_sum_and_refuses_a_wrong_one(bench_cases):
    """The alpha gradient of ResNet's 512x512x3x3 layer at T = 1: a sum of 1.2 M terms of both
    signs that cancel to a few hundredths of their root-sum-of-squares, where float32 results
    (the reference's, a matrix-vector product's) are a few 1e-4 of the value off (a bound of 1e-4
    of the reference's value failed there): every CPU method passes, a result one term off fails."""
    case = bench_cases.CombineCase(bench_cases.LAYER, 1)
    (expect,) = bench_cases.expected("grad_alpha", case)
    for method in bench_cases.methods("grad_alpha", variants=False):
        if method.device == "cpu" and not method.interpreted:
            expect.check(bench_cases.setup("grad_alpha", case, method)(), method.name)
    weight, _, _, grad = bench_cases.combine_inputs(case)
    one_term = (grad * weight).abs().max()  # a result that misses (or doubles) a single weight's term
    with pytest.raises(AssertionError, match="beyond rounding"):
        expect.check(expect.ref + one_term, "wrong")


def test_speedup_lines(bench_cases):
    kernel = bench_cases.kernel()
    case = bench_cases.CombineCase(bench_cases.LAYER, 8)
    row = bench_cases.speedup("combine", case, "cpu", {kernel: 0.010, "dense_supsup": 0.5, "dense_matvec": 0.031})
    assert row["line"] == f"combine 512x512x3x3 T=8: {kernel} 3.1x faster than the best dense baseline (dense_matvec)"
    assert row["baseline"] == "dense_matvec" and row["speedup"] == pytest.approx(3.1)
    linear = bench_cases.LinearCase(1000, 2048, 75, 1)
    row = bench_cases.speedup("impress_linear", linear, "cpu", {kernel: 0.004, "floor": 0.002, "dense_matvec": 0.002})
    assert row["line"] == (
        f"impress_linear 1000x2048 T=75 batch 1: {kernel} 2.0x slower than the best dense baseline "
        "(dense_matvec), 2.0x the time of the floor (F.linear with W_eff made beforehand)"
    )
    row = bench_cases.speedup("combine", case, "cpu", {kernel: 0.0102, "dense_matvec": 0.010})
    assert row["line"].endswith(f": {kernel} about as fast as the best dense baseline (dense_matvec)")
    assert "failed its check" in bench_cases.speedup("combine", case, "cpu", {"dense_matvec": 1.0}, {kernel})["line"]
    assert bench_cases.speedup("combine", case, "cpu", {"dense_matvec": 1.0}) is None  # the kernel not run


def test_a_timed_run_writes_the_json_and_a_line_per_case_group(bench_cases, pytester, monkeypatch, tmp_path):
    """The combine suites on their quick T = 9 case, each call timed once, run in this process."""
    out = tmp_path / "bench.json"
    monkeypatch.setenv("IMPRESSLEARN_BENCH_QUICK", "1")  # what --quick sets: undone after the test
    done = pytester.runpytest_inprocess(
        str(BENCH / "test_combine.py"),
        "--quick",
        "-p",
        "no:cacheprovider",
        "-k",
        "T9 and not triton",
        "--benchmark-only",
        "--benchmark-min-rounds=1",
        "--benchmark-max-time=0.000001",
        "--benchmark-warmup=off",
        f"--benchmark-json={out}",
    )
    assert done.ret == 0, "\n".join(done.outlines[-40:])
    result = json.loads(out.read_text())
    runs = result["benchmarks"]
    assert {r["group"] for r in runs} == {"combine[13x3x3x3-T9] cpu", "grad_alpha[13x3x3x3-T9] cpu"}
    methods = {r["extra_info"]["method"] for r in runs if r["group"] == "combine[13x3x3x3-T9] cpu"}
    assert {"reference", bench_cases.kernel(), "dense_supsup", "dense_matvec"} <= methods
    assert all(r["extra_info"]["case"] == "13x3x3x3-T9" and r["stats"]["median"] > 0 for r in runs)
    rows = result["impresslearn_speedups"]
    assert [(r["primitive"], r["case"]) for r in rows] == [("combine", "13x3x3x3-T9"), ("grad_alpha", "13x3x3x3-T9")]
    for r in rows:
        fastest = {x["extra_info"]["method"]: x["stats"]["min"] for x in runs if x["extra_info"]["primitive"] == r["primitive"]}
        dense = {m: fastest[m] for m in ("dense_supsup", "dense_matvec")}
        assert r["baseline"] == min(dense, key=dense.get)
        assert r["speedup"] == pytest.approx(dense[r["baseline"]] / fastest[r["kernel"]])
        assert r["line"].startswith(f"{r['primitive']} 13x3x3x3 T=9: {r['kernel']} ")
    # each line printed as its group finished, before the tables at the end
    first_table = next(i for i, line in enumerate(done.outlines) if "benchmark 'combine" in line)
    assert done.outlines.index(rows[0]["line"]) < first_table


@pytest.mark.skipif("native" not in impresslearn.available_backends(), reason="bench_native.py times the native backend")
def test_memory_per_case_joins_the_timings(bench_cases, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_native

    timings = tmp_path / "timings.json"  # what --benchmark-json writes, the fields bench_native.py reads
    cases, methods = ("13x3x3x3-T1", "13x3x3x3-T9"), {"native": 1.0, "dense_supsup": 4.0}
    timings.write_text(
        json.dumps(
            {
                "benchmarks": [
                    {
                        "extra_info": {"primitive": "combine", "case": case, "method": method},
                        "stats": {"median": ms / 1e3, "min": ms / 2e3, "rounds": 3},
                    }
                    for case in cases
                    for method, ms in methods.items()
                ]
            }
        )
    )
    out = tmp_path / "memory.json"
    record = bench_native.main(
        ["--quick", "--only", "combine", "--methods", *methods, "--no-memory", "--timings", str(timings), "--out", str(out)]
    )
    rows = record["results"]
    assert {(r["case"], r["method"]) for r in rows} == {(c, m) for c in cases for m in methods}
    assert all(r["median_ms"] == methods[r["method"]] and r["rounds"] == 3 for r in rows)
    assert json.loads(out.read_text())["results"] == rows
    # the memory of a case: one call in a process of its own
    memory = bench_native.measure("combine", "13x3x3x3-T9", "native", quick=True)
    assert memory["peak_mb"] >= 0 and memory["inputs_mb"] >= 0, memory
