"""What this installation runs, and why not: the report of `impresslearn doctor`.

In the spirit of `python -m torch.utils.collect_env`, about this library: the versions it runs
on, each backend and the reason it is missing, the native build (which torch compiled it, which
torch it targets, which inner-loop variant this CPU gets), the CUDA devices and the threads.
Reading it changes nothing: a variant switched to test it is switched back.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
import platform

import torch

from . import backends, reference, threads
from .primitives import PRIMITIVES, MissingKernel, resolve

PACKAGES = ("torch", "torchvision", "triton", "numpy", "safetensors", "tqdm", "matplotlib")
# Masked weights of the library's models (LeNet-300-100; SupSup's CIFAR ResNet-18; torchvision's
# ResNet-50), for what the thread rule picks for each; counted here so doctor builds no model.
REFERENCE_MODELS = {"LeNet-300-100": 266_200, "CIFAR ResNet-18": 11_164_352, "ResNet-50": 25_502_912}
VARIANT_NAMES = {"avx512": "AVX-512", "avx2": "AVX2", "generic": "portable", "lut": "byte tables"}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _imports(module: str) -> str | None:
    """None if `module` imports, else the error in one line."""
    try:
        importlib.import_module(module)
    except Exception as err:  # noqa: BLE001 - any failure to import is what we report
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")
    return None


def _native() -> dict:
    from . import native

    out = {"library": str(native.LIBRARY), "build": native.build_info()}
    if native.UNAVAILABLE is None:
        current = native.variant()
        runs = []
        for name in VARIANT_NAMES:
            try:
                native.set_variant(name)
            except RuntimeError:  # this CPU cannot run it
                continue
            runs.append(name)
        native.set_variant(current)
        out.update(variant=current, variant_name=VARIANT_NAMES.get(current, current), cpu_runs=runs)
    return out


def _cuda() -> dict:
    out = {"available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda, "devices": []}
    if out["available"]:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out["devices"].append(
                {
                    "index": i,
                    "name": p.name,
                    "capability": f"{p.major}.{p.minor}",
                    "memory_gib": round(p.total_memory / 2**30, 1),
                    "multiprocessors": p.multi_processor_count,
                }
            )
    return out


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def primitive_table() -> dict[str, dict[str, str]]:
    """primitive -> backend -> what runs there: "kernel" (its own), "composed from X" or
    "reference" (declared fallbacks, docs/design.md §5.1), "MISSING" (a gap no declaration
    covers: its ops fail on that backend), "unavailable" (the backend cannot run here)."""
    table: dict[str, dict[str, str]] = {}
    for prim, spec in PRIMITIVES.items():
        row = table[prim] = {}
        for name in backends.NAMES:
            mod = backends.loaded(name)
            if mod is None:
                row[name] = "unavailable"
                continue
            try:
                how = resolve(mod.KERNELS, prim, reference.KERNELS, name).how
            except MissingKernel:
                how = "MISSING"
            row[name] = {"composed": f"composed from {', '.join(spec.composed_from)}", "portable": "reference"}.get(how, how)
    return table


def report() -> dict:
    """Everything `impresslearn doctor` prints, as a dict (its `--json`)."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    from . import __version__

    return {
        "impresslearn": {
            "version": __version__,
            "installed": _version("impresslearn"),  # the package metadata pip installed
            "location": os.path.dirname(os.path.abspath(__file__)),
        },
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "packages": {name: _version(name) for name in PACKAGES},
        "torchvision_imports": _imports("torchvision"),
        "backends": {name: backends.why_unavailable(name) for name in backends.NAMES},
        "primitives": primitive_table(),
        "native": _native(),
        "triton_interpret": os.environ.get("TRITON_INTERPRET", ""),
        "cuda": _cuda(),
        "threads": {
            "torch": torch.get_num_threads(),
            "interop": torch.get_num_interop_threads(),
            "cpus": os.cpu_count(),
            "usable_cpus": affinity,
            # what runs choose when not told (impresslearn.threads): per model size
            "runs_choose": {name: dataclasses.asdict(threads.choose(weights)) for name, weights in REFERENCE_MODELS.items()},
        },
    }


def _primitive_lines(table: dict[str, dict[str, str]]) -> list[str]:
    """The primitive x backend table, aligned."""
    names = list(backends.NAMES)
    rows = [["primitive", *names]] + [[prim, *(row[n] for n in names)] for prim, row in table.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def format_report(r: dict) -> str:
    """The report as aligned lines a person reads."""
    me = r["impresslearn"]
    built = (r["native"].get("build") or {}).get("version")
    disagree = {v for v in (me["installed"], built) if v is not None} - {me["version"]}
    rows = [
        (
            "impresslearn",
            f"{me['version']} at {me['location']}"
            + (f" (the installed metadata says {me['installed']}, the native build {built}: reinstall)" if disagree else ""),
        ),
        ("python", f"{r['python']} on {r['platform']}"),
        ("cpu", r["cpu"]),
    ]
    for name, version in r["packages"].items():
        note = ""
        if name == "torchvision" and version and r["torchvision_imports"]:
            note = f" (does not import: {r['torchvision_imports']})"
        rows.append((name, (version or "not installed") + note))
    for name, why in r["backends"].items():
        rows.append((f"backend {name}", "available" if why is None else f"missing: {why}"))
    nat = r["native"]
    build = nat.get("build") or {}
    if build:
        rows.append(
            (
                "native build",
                f"impresslearn {build.get('version', '(not recorded)')}, built with torch {build.get('built_with_torch')}, "
                f"loads on torch >= {build.get('target_torch')} ({build.get('abi', 'unknown')} ABI)",
            )
        )
    if "variant" in nat:
        rows.append(("native kernels", f"{nat['variant_name']} ({nat['variant']}); this CPU runs " + ", ".join(nat["cpu_runs"])))
    rows.append(("triton interpreter", "on (TRITON_INTERPRET=1)" if r["triton_interpret"] not in ("", "0") else "off"))
    cuda = r["cuda"]
    if cuda["devices"]:
        for d in cuda["devices"]:
            rows.append(
                (
                    f"cuda:{d['index']}",
                    f"{d['name']}, capability {d['capability']}, {d['memory_gib']} GiB, "
                    f"{d['multiprocessors']} SMs (CUDA {cuda['torch_cuda']})",
                )
            )
    else:
        rows.append(
            (
                "cuda",
                f"no device (torch built with CUDA {cuda['torch_cuda']})"
                if cuda["torch_cuda"]
                else "no device (a CPU-only torch)",
            )
        )
    t = r["threads"]
    rows.append(
        ("threads", f"torch {t['torch']} intra-op, {t['interop']} inter-op; {t['usable_cpus']} of {t['cpus']} CPUs usable")
    )
    for name, c in t.get("runs_choose", {}).items():
        rows.append((f"threads, {name} runs", f"{c['threads']}: {c['reason']} (--threads N chooses)"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines += ["", *_primitive_lines(r["primitives"])]
    missing = [name for name, why in r["backends"].items() if why is not None]
    if "native" in missing:
        lines.append(
            "\nThe native CPU ops are missing: everything runs on the pure-PyTorch reference (correct, "
            "slower). With a C++ compiler, rebuild them: pip install --no-build-isolation -e ."
        )
    return "\n".join(lines)
