"""The native backend's loading: CI demands it, and a missing or mismatched build is reported,
never loaded."""

import json
import os

import pytest
import torch

import impresslearn
from impresslearn import native
from native_cases import VARIANTS, requires_native


@pytest.mark.skipif(os.environ.get("IMPRESSLEARN_REQUIRE_NATIVE", "0") in ("", "0"),
                    reason="set IMPRESSLEARN_REQUIRE_NATIVE=1 where the native ops must have been built (CI)")
def test_native_backend_was_built():
    assert "native" in impresslearn.available_backends(), impresslearn.backends.why_unavailable("native")


def test_missing_library_is_reported(tmp_path, monkeypatch):
    monkeypatch.delenv("IMPRESSLEARN_NO_NATIVE", raising=False)
    monkeypatch.setattr(native, "LIBRARY", tmp_path / "_native.so")
    assert "was not built" in native._load()


def test_library_for_another_torch_is_not_loaded(tmp_path, monkeypatch):
    monkeypatch.delenv("IMPRESSLEARN_NO_NATIVE", raising=False)
    library = tmp_path / "_native.so"
    library.write_bytes(b"not a library: loading it would fail loudly")
    monkeypatch.setattr(native, "LIBRARY", library)
    monkeypatch.setattr(native, "BUILD_INFO", tmp_path / "_native.json")
    assert "no readable build record" in native._load()
    (tmp_path / "_native.json").write_text(json.dumps({"torch": "1.0.0", "cxx11_abi": True}))
    reason = native._load()
    assert "built for torch" in reason and "1.0.0" in reason and "--no-build-isolation" in reason


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
