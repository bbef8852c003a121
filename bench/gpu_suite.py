"""The GPU suite: everything that needs a CUDA device, in one call of at most 8 minutes.

    python bench/gpu_suite.py                    # on an H100/H200: writes bench/results/gpu-suite-<gpu>.*
    python bench/gpu_suite.py --out DIR          # results elsewhere (e.g. $OUT on the lent machine)
    python bench/gpu_suite.py --dry-run --out D  # every step on the CPU, Triton interpreted, tiny sizes

On the GPU machine (torch 2.11, torchvision 0.26, triton 3.6, no registry), from the checkout:

    pip install --no-deps --no-build-isolation -e . && python bench/gpu_suite.py --out "$OUT"

Steps, in order, each in a child process with its own time limit (the rest of the budget, at
most its share), so that one step that overruns cannot take the others with it:

    doctor        `impresslearn doctor --json`: versions, backends, the GPU
    cuda_tests    pytest over the Triton cases of tests/kernels and the op, compile and CUDA tests
                  (on a GPU they run on CUDA tensors, compiled); the dry run runs only the
                  `cuda`-marked ones, which skip
    triton_bench  bench/run_triton.py (--smoke in the dry run): combine, impress_linear, popup,
                  the conv training step, each checked against the reference while timed
    memory_bench  bench/bench_memory.py --device cuda: ResNet-50 step memory, packed vs dense, and
                  the largest batch (the dry run: a narrow ResNet-18 on the CPU)
    task_inference  bench/bench_task_inference.py --device cuda: the task bank against the packed
                  path (exhaustive and one-shot per sample, mixed batches) on LeNet-300-100 and a
                  ResNet-18 among 20 tasks, Triton's task_row_linear on the GPU; the dry run: a
                  tiny LeNet on the CPU. Its JSON stays out of --out too; the summary holds its table
    task_memory   bench/bench_task_memory.py --device cuda --T 10 100: a SupSup ResNet-50 with T
                  finished tasks (packed), the peak of a new task's training step, a finished
                  task's forward (the dry run: a narrow ResNet-18 on the CPU); the code before the
                  task states is left out (it is extracted from git history, which the lent machine
                  has not). Its JSON stays out of --out (the file limit); the summary holds its cases.
                  It runs last, in the time the others leave (at most 90 s)

Written to --out: gpu-suite-<gpu>.json (each step: command, exit code, seconds, whether it timed
out, and what it measured), gpu-suite-<gpu>.md (the tables for the README), gpu-suite-<gpu>.log
(every step's output), and the files the two benchmarks write themselves (<gpu>.json/.png,
memory_<gpu>.json/.md): seven files, within what the lent machine sends back (task_memory's
results go into the summary). The summary is rewritten after every step: a killed run keeps what
ran.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUDGET_S = 480  # the whole suite: 8 minutes

# The tests that exercise a GPU when one is there (DEVICE is "cuda" in tests/cases.py then). Of
# the kernel tests only the Triton cases: those of the CPU backends are marked (cases.needs) and
# left to CI.
GPU_TESTS = [
    "tests/kernels",
    "tests/test_triton_backend.py",
    "tests/test_triton_compile.py",
    "tests/test_compile.py",
    "tests/test_ops.py",
    "tests/test_bench_memory.py",
]
GPU_MARKS = "not reference and not native"


@dataclass
class Step:
    name: str
    command: list[str]
    share_s: int  # the most this step may take
    env: dict = field(default_factory=dict)
    rc: int | None = None
    seconds: float | None = None
    timed_out: bool = False
    result: dict = field(default_factory=dict)
    output: str = ""  # all it printed (the record keeps its tail): what read_results parses


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def device_name(dry_run: bool) -> str:
    if dry_run:
        return "dry-run"
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run the suite on the GPU machine, or --dry-run to check it on a CPU")
    return torch.cuda.get_device_name(0)


def plan(out: Path, junit: Path, name: str, dry_run: bool) -> list[Step]:
    py = sys.executable
    # The dry run: the cuda-marked tests alone, collected and skipped on a CPU (shows the step and its parsing work).
    tests = [
        py,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        *GPU_TESTS,
        "-m",
        "cuda" if dry_run else GPU_MARKS,
    ]
    triton = [py, str(HERE / "run_triton.py"), "--out", str(out), "--quiet"] + (["--smoke"] if dry_run else [])
    memory = [py, str(HERE / "bench_memory.py"), "--out", str(out / f"memory_{slug(name)}.json")]
    memory += (
        ["--device", "cpu", "--arch", "resnet18", "--width", "8", "--T", "2", "--image-size", "32", "--batch", "1"]
        if dry_run
        else ["--device", "cuda", "--T", "10", "75", "--max-batch", "1024"]
    )
    # Its own results file goes to the scratch folder beside the test report (at most 8 files come back).
    task_memory = [py, str(HERE / "bench_task_memory.py"), "--out", str(junit.parent / "task_memory.json"), "--old-T"]
    task_memory += (
        [
            "--device",
            "cpu",
            "--arch",
            "resnet18",
            "--width",
            "4",
            "--T",
            "2",
            "--image-size",
            "16",
            "--forward-runs",
            "1",
            "--steps",
            "1",
        ]
        if dry_run
        else ["--device", "cuda", "--T", "10", "100"]
    )
    task_inference = [py, str(HERE / "bench_task_inference.py"), "--out", str(junit.parent / "task_inference.json")]
    task_inference += (
        ["--device", "cpu", "--quick", "--models", "lenet", "--modes", "exhaustive_sample", "oneshot_sample", "--batches", "1"]
        if dry_run
        else ["--device", "cuda", "--models", "lenet", "resnet18", "--T", "20", "--modes", "exhaustive_sample", "oneshot_sample"]
    )
    interpret = {"TRITON_INTERPRET": "1"} if dry_run else {}
    # The first four shares add up to the default budget; a step that ends early leaves its time to
    # the next, and the last, task_memory (at most 90 s), runs in the time the others leave.
    return [
        Step("doctor", [py, "-m", "impresslearn.cli", "doctor", "--json"], 20),
        Step("cuda_tests", tests, 140, interpret),
        Step("triton_bench", triton, 200, interpret),
        Step("memory_bench", memory, 120),
        Step("task_inference", task_inference, 90),
        Step("task_memory", task_memory, 90),
    ]


def run_step(step: Step, limit_s: float, log) -> None:
    env = {**os.environ, **step.env, "PYTHONUNBUFFERED": "1"}
    log.write(f"\n===== {step.name}: {' '.join(step.command)} (limit {limit_s:.0f} s)\n")
    log.flush()
    t0 = time.monotonic()
    try:
        done = subprocess.run(
            step.command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=max(limit_s, 1)
        )
        step.rc, output = done.returncode, done.stdout
    except subprocess.TimeoutExpired as err:
        step.timed_out, output = True, (err.stdout or b"")
        output = output.decode(errors="replace") if isinstance(output, bytes) else output
    step.seconds = round(time.monotonic() - t0, 1)
    log.write(output)
    log.write(f"\n===== {step.name}: exit {step.rc}, {step.seconds} s{', timed out' if step.timed_out else ''}\n")
    log.flush()
    step.output, step.result = output, {"output_tail": output[-2000:]}


def read_results(step: Step, out: Path, junit: Path, name: str) -> None:
    """What each step measured, from the files it wrote (nothing when it wrote none)."""
    s = slug(name)
    try:
        if step.name == "doctor" and step.rc == 0:
            text = step.output  # the whole report: longer than the tail kept
            report = json.loads(text[text.index("{") :])
            step.result = {"packages": report["packages"], "backends": report["backends"], "cuda": report["cuda"]}
        elif step.name == "cuda_tests":
            suite = ET.parse(junit).getroot()
            suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
            counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
            failed = [
                f"{case.get('classname')}::{case.get('name')}"
                for case in suite.iter("testcase")
                if case.find("failure") is not None or case.find("error") is not None
            ]
            step.result = {
                **counts,
                "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
                "failed": failed[:50],
            }
        elif step.name == "triton_bench":
            files = sorted(out.glob("*.json"), key=lambda p: p.stat().st_mtime)
            bench = [p for p in files if not p.name.startswith(("gpu-suite-", "memory_"))]
            if bench:
                data = json.loads(bench[-1].read_text())
                step.result = {
                    "file": bench[-1].name,
                    "summary": data["summary"],
                    "device": data["device"],
                    "rows": len(data["rows"]),
                }
        elif step.name == "memory_bench":
            data = json.loads((out / f"memory_{s}.json").read_text())
            step.result = {
                "file": f"memory_{s}.json",
                "arch": data["config"]["arch"],
                "cases": data["cases"],
                "table": data.get("table"),
            }
        elif step.name == "task_inference":  # written case by case: a step that timed out keeps what ran
            data = json.loads((junit.parent / "task_inference.json").read_text())
            step.result = {"cases": [{k: v for k, v in c.items() if k != "chosen"} for c in data["cases"]]}
            step.result["table"] = data.get("table")
        elif step.name == "task_memory":  # written case by case: a step that timed out keeps what ran
            data = json.loads((junit.parent / "task_memory.json").read_text())
            step.result = {
                "arch": data["config"]["arch"],
                "device": data["config"]["device"],
                "cases": data["cases"],
                "table": data.get("table"),
                "verdict": data.get("verdict"),
            }
    except (OSError, ValueError, KeyError, ET.ParseError) as err:
        step.result["read_error"] = f"{type(err).__name__}: {err}"


def markdown(name: str, steps: list[Step], dry_run: bool) -> str:
    lines = [
        f"# GPU suite on {name}{' (dry run on a CPU)' if dry_run else ''}",
        "",
        "| step | exit | seconds | result |",
        "|---|---|---|---|",
    ]
    for st in steps:
        if st.rc is None and not st.timed_out:
            lines.append(f"| {st.name} | not run | - | out of time |")
            continue
        r = st.result
        if st.name == "cuda_tests" and "tests" in r:
            what = f"{r['passed']} passed, {r['failures'] + r['errors']} failed, {r['skipped']} skipped"
        elif st.name == "triton_bench" and "summary" in r:
            what = f"{r['rows']} rows in {r['file']}"
        elif st.name == "memory_bench" and "cases" in r:
            what = f"{len(r['cases'])} cases in {r['file']}"
        elif st.name == "task_inference" and "cases" in r:
            what = f"{len(r['cases'])} cases (below)"
        elif st.name == "task_memory" and "cases" in r:
            what = f"{len(r['cases'])} case{'' if len(r['cases']) == 1 else 's'} (below)"
        elif st.name == "doctor" and "packages" in r:
            what = ", ".join(f"{k} {v}" for k, v in r["packages"].items() if k in ("torch", "triton"))
        else:
            what = r.get("read_error", "-")
        lines.append(f"| {st.name} | {'timed out' if st.timed_out else st.rc} | {st.seconds} | {what} |")
    for st in steps:
        if st.name == "task_inference" and st.result.get("table"):
            lines += ["", "## Task inference: the task bank against the packed path", "", st.result["table"]]
        if st.name == "memory_bench" and st.result.get("table"):
            lines += ["", f"## Training-step memory, packed vs dense ({st.result.get('arch', '?')})", "", st.result["table"]]
        if st.name == "task_memory" and st.result.get("table"):
            unit = "allocated on the GPU" if st.result.get("device", "").startswith("cuda") else "resident, above import"
            lines += [
                "",
                f"## SupSup model memory with T finished tasks ({st.result.get('arch', '?')}; MiB {unit})",
                "",
                st.result["table"],
                "",
                st.result.get("verdict") or "",
            ]
        if st.name == "triton_bench" and "summary" in st.result:
            lines += ["", "## Triton benchmark summary", "", "```json", json.dumps(st.result["summary"], indent=1), "```"]
    return "\n".join(lines) + "\n"


def write_summary(path: Path, name: str, steps: list[Step], started: float, dry_run: bool) -> None:
    record = {
        "device": name,
        "dry_run": dry_run,
        "budget_s": BUDGET_S,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": round(time.monotonic() - started, 1),
        "steps": [{k: v for k, v in asdict(st).items() if k not in ("env", "output")} for st in steps],
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)
    path.with_suffix(".md").write_text(markdown(name, steps, dry_run))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="every step on the CPU: Triton interpreted, tiny sizes")
    p.add_argument("--out", type=Path, default=HERE / "results", help="folder for the results")
    p.add_argument("--budget-s", type=int, default=BUDGET_S, help="the whole suite's time limit, seconds")
    args = p.parse_args(argv)
    name = device_name(args.dry_run)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = args.out / f"gpu-suite-{slug(name)}.json"
    started = time.monotonic()
    # The lent machine sends back at most 8 files: the test report stays out of --out.
    with tempfile.TemporaryDirectory() as scratch, open(args.out / f"gpu-suite-{slug(name)}.log", "w") as log:
        junit = Path(scratch) / "tests.xml"
        steps = plan(args.out, junit, name, args.dry_run)
        for step in steps:
            left = args.budget_s - (time.monotonic() - started)
            if left < 5:
                break  # out of time: the step stays "not run" in the summary
            run_step(step, min(step.share_s, left), log)
            read_results(step, args.out, junit, name)
            write_summary(summary, name, steps, started, args.dry_run)
    write_summary(summary, name, steps, started, args.dry_run)
    print(summary.with_suffix(".md").read_text())
    print(f"wrote {summary} (.md, .log beside it)")
    ok = all(st.rc == 0 for st in steps)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
