"""Which kernel backends exist on this machine, and the `backend(...)` context that forces one.

A backend is a module with a `KERNELS` table of the primitives it implements (declared in
`impresslearn.primitives`, called as in `impresslearn.reference`) and a `supports(device) -> bool`;
a primitive it leaves out runs only as its declaration allows. The op layer (`impresslearn.ops`)
is the only place that picks one for a call; this module only knows what exists and what was
asked for.

    "reference"  pure PyTorch, always present (impresslearn.reference)
    "native"     compiled C++ CPU ops from csrc/ (impresslearn.native), when the build succeeded
    "triton"     Triton kernels from kernels/ (impresslearn.kernels): CUDA tensors, or CPU
                 tensors when TRITON_INTERPRET=1 was set before Triton was imported
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import types
from collections.abc import Iterator

import torch

NAMES = ("reference", "native", "triton")
_MODULES = {
    "reference": "impresslearn.reference",
    "native": "impresslearn.native",
    "triton": "impresslearn.kernels",
}

_requested: contextvars.ContextVar[str] = contextvars.ContextVar("impresslearn_backend", default="auto")
_loaded: dict[str, types.ModuleType | None] = {}
_load_errors: dict[str, str] = {}


def _load(name: str) -> types.ModuleType | None:
    """Import a backend module once; None (with the reason kept) if it cannot run here."""
    if name not in _loaded:
        try:
            module = importlib.import_module(_MODULES[name])
            reason = getattr(module, "UNAVAILABLE", None)
        except ImportError as err:  # not built, or its dependency is missing
            module, reason = None, f"{type(err).__name__}: {err}"
        if reason:
            module = None
            _load_errors[name] = reason
        _loaded[name] = module
    return _loaded[name]


def loaded(name: str) -> types.ModuleType | None:
    """The module of backend `name`, or None where it cannot run here (imported once)."""
    return _load(name)


def available_backends() -> list[str]:
    """The backends this machine can run, best-known first after "reference"."""
    return [name for name in NAMES if _load(name) is not None]


def why_unavailable(name: str) -> str | None:
    """Why a backend is missing here (None if it is available)."""
    if name not in NAMES:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(NAMES)}")
    return None if _load(name) is not None else _load_errors.get(name, "not available")


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    """Force a backend inside the block: `with impresslearn.backend("reference"): ...`.

    `"auto"` (the default outside any block) picks the fastest backend for each call's device.
    """
    if name != "auto":
        if name not in NAMES:
            raise ValueError(f"unknown backend {name!r}; choose 'auto' or one of {', '.join(NAMES)}")
        if _load(name) is None:
            raise RuntimeError(f"backend {name!r} is not available here: {why_unavailable(name)}")
    token = _requested.set(name)
    try:
        yield
    finally:
        _requested.reset(token)


def requested() -> str:
    """The backend asked for by the innermost `backend(...)` block, or "auto"."""
    return _requested.get()


def module(name: str) -> types.ModuleType:
    """The module of an available backend."""
    mod = _load(name)
    if mod is None:
        raise RuntimeError(f"backend {name!r} is not available here: {why_unavailable(name)}")
    return mod


_NAME_OF = {path: name for name, path in _MODULES.items()}
# Preference of "auto" per device type: compiled code first, the reference last (looked up on
# every op call, so a constant).
_AUTO_ORDER = {"cuda": ("triton", "reference"), "cpu": ("native", "reference")}


def name_of(mod: types.ModuleType) -> str:
    """The backend name of a backend module."""
    return _NAME_OF[mod.__name__]


def auto_order(device: torch.device) -> tuple[str, ...]:
    """Preference of "auto" for a device: compiled code first, the reference last."""
    return _AUTO_ORDER.get(device.type, ("reference",))
