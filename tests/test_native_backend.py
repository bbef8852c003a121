"""The native backend's loading: CI demands it; a missing build, or one that targets a newer torch
than the one running, is reported and never loaded; a build made with a newer torch loads."""

import json
import os

import pytest
import torch
from cases import VARIANTS, requires_native

import impresslearn
from impresslearn import native


@pytest.mark.skipif(
    os.environ.get("IMPRESSLEARN_REQUIRE_NATIVE", "0") in ("", "0"),
    reason="set IMPRESSLEARN_REQUIRE_NATIVE=1 where the native ops must have been built (CI)",
)
def test_native_backend_was_built():
    assert "native" in impresslearn.available_backends(), impresslearn.backends.why_unavailable("native")


def test_missing_library_is_reported(tmp_path, monkeypatch):
    monkeypatch.delenv("IMPRESSLEARN_NO_NATIVE", raising=False)
    monkeypatch.setattr(native, "LIBRARY", tmp_path / "_native.so")
    assert "was not built" in native._load()


def test_library_for_a_newer_torch_is_not_loaded(tmp_path, monkeypatch):
    monkeypatch.delenv("IMPRESSLEARN_NO_NATIVE", raising=False)
    library = tmp_path / "_native.so"
    library.write_bytes(b"not a library: loading it would fail loudly")
    monkeypatch.setattr(native, "LIBRARY", library)
    monkeypatch.setattr(native, "BUILD_INFO", tmp_path / "_native.json")
    assert "no stable-ABI build record" in native._load()
    # a record of the build before the stable ABI: tied to one torch, refused
    (tmp_path / "_native.json").write_text(json.dumps({"torch": "2.14.1", "cxx11_abi": True}))
    assert "no stable-ABI build record" in native._load()
    # a target above the running torch: refused before loading, with the way out
    major, minor = native.version_tuple(torch.__version__)
    newer = f"{major}.{minor + 1}"
    (tmp_path / "_native.json").write_text(json.dumps({"abi": "stable", "target_torch": newer, "built_with_torch": newer + ".0"}))
    reason = native._load()
    assert f"targets torch >= {newer}" in reason and torch.__version__ in reason and "--no-build-isolation" in reason


def test_library_built_with_a_newer_torch_is_loaded(tmp_path, monkeypatch):
    # What pip's build isolation does: it compiles with the newest torch. The target decides.
    monkeypatch.delenv("IMPRESSLEARN_NO_NATIVE", raising=False)
    library = tmp_path / "_native.so"
    library.write_bytes(b"not a library")
    monkeypatch.setattr(native, "LIBRARY", library)
    monkeypatch.setattr(native, "BUILD_INFO", tmp_path / "_native.json")
    (tmp_path / "_native.json").write_text(json.dumps({"abi": "stable", "target_torch": "2.11", "built_with_torch": "9.99.0"}))
    assert native._load().startswith("loading")  # it got past the version check to the loader


@pytest.mark.parametrize(
    "text, expected", [("2.11.0", (2, 11)), ("2.15.0+cu132", (2, 15)), ("2.16.0a0+git1234abc", (2, 16)), ("10.2", (10, 2))]
)
def test_version_tuple(text, expected):
    assert native.version_tuple(text) == expected


def test_turned_off_by_environment(monkeypatch):
    monkeypatch.setenv("IMPRESSLEARN_NO_NATIVE", "1")
    assert "IMPRESSLEARN_NO_NATIVE" in native._load()


@requires_native
def test_variants():
    assert native.variant() in VARIANTS and {"generic", "lut"} <= set(VARIANTS)
    previous = native.set_variant("generic")
    try:
        assert native.variant() == "generic"
        native.set_variant("auto")
        assert native.variant() == [v for v in VARIANTS if v != "lut"][-1]  # the best this CPU runs
        with pytest.raises(RuntimeError, match="unknown kernel variant"):
            native.set_variant("sse9")
    finally:
        native.set_variant(previous)


@requires_native
def test_supports_cpu_only():
    assert native.supports(torch.device("cpu")) and not native.supports(torch.device("cuda"))
