"""`impresslearn doctor`: the report says what loaded and why not, and matches the registry."""

import json
import os
import re
import subprocess
import sys

import torch

import impresslearn
from impresslearn import backends, doctor


def test_report_matches_the_backend_registry():
    r = doctor.report()
    assert r["packages"]["torch"] and torch.__version__.startswith(r["packages"]["torch"].split("+")[0])
    assert set(r["backends"]) == set(backends.NAMES)
    for name, why in r["backends"].items():
        assert (why is None) == (name in impresslearn.available_backends())
        assert why == backends.why_unavailable(name)
    assert r["backends"]["reference"] is None
    assert r["threads"]["torch"] == torch.get_num_threads()
    assert r["cuda"]["available"] == torch.cuda.is_available()


def test_native_section_names_the_variant_and_the_build():
    r = doctor.report()
    if r["backends"]["native"] is not None:
        return  # nothing loaded: covered by the reason above
    from impresslearn import native

    nat = r["native"]
    assert nat["variant"] == native.variant() and nat["variant"] in nat["cpu_runs"]
    assert "generic" in nat["cpu_runs"]
    assert nat["build"]["abi"] == "stable" and nat["build"]["target_torch"] == "2.11"
    text = doctor.format_report(r)
    assert f"loads on torch >= {nat['build']['target_torch']}" in text and doctor.VARIANT_NAMES[nat["variant"]] in text


def test_a_missing_backend_is_explained(monkeypatch):
    r = doctor.report()
    r["backends"]["native"] = "the C++ extension was not built"
    text = doctor.format_report(r)
    assert "backend native" in text and "missing: the C++ extension was not built" in text
    assert "pip install --no-build-isolation -e ." in text


def test_cli_prints_the_report_and_json():
    env = {**os.environ, "IMPRESSLEARN_NO_NATIVE": "1"}  # a backend missing on purpose
    done = subprocess.run(
        [sys.executable, "-m", "impresslearn.cli", "doctor"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "backend native" in done.stdout and "IMPRESSLEARN_NO_NATIVE" in done.stdout
    assert "torch" in done.stdout and "threads" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "impresslearn.cli", "doctor", "--json"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout)
    assert r["backends"]["native"] == "turned off by IMPRESSLEARN_NO_NATIVE" and r["backends"]["reference"] is None


def test_one_version_everywhere():
    """impresslearn.__version__ is the one source: the installed metadata and the native build
    record agree with it, and doctor shows it (and says so when they do not agree)."""
    import importlib.metadata

    from impresslearn import native

    r = doctor.report()
    assert r["impresslearn"]["version"] == impresslearn.__version__ == importlib.metadata.version("impresslearn")
    info = native.build_info()
    if info is not None:  # (no build record: no native library to agree)
        assert info["version"] == impresslearn.__version__, "rebuild the native ops: pip install --no-build-isolation -e ."
    text = doctor.format_report(r)
    assert re.search(rf"^impresslearn +{re.escape(impresslearn.__version__)} at ", text, re.M), text
    assert "reinstall" not in text
    r["impresslearn"]["installed"] = "0.0.1"
    assert "the installed metadata says 0.0.1" in doctor.format_report(r)
