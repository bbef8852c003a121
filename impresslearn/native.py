"""The "native" backend: C++ CPU ops compiled from csrc/ into `impresslearn/_native.so`.

The library registers the ops `torch.ops.impresslearn_native.*` (its own namespace: the Python
ops of `impresslearn.ops` own `impresslearn`); this module loads it, gives the ops their fake
(meta) implementations, and exposes them as backend primitives named and called as in
`impresslearn.reference`. Nothing here allocates a dense `[T, ...]` mask. The fused linear
primitives are left out: `impresslearn.ops` builds them from this backend's combine.

The library uses only torch's stable ABI and targets torch 2.11 (setup.py), so it loads on any
torch at or above its target, whichever torch built it. When it is missing (no compiler or no
torch at install time), targets a newer torch than the one running, or fails to load,
`UNAVAILABLE` holds the reason and the backend registry (and `impresslearn doctor`) reports it;
everything then runs on the reference. IMPRESSLEARN_NO_NATIVE=1 turns the backend off at import.

Kernel variants (AVX-512, AVX2, portable loops, byte lookup tables) are chosen per CPU when the
library loads; `variant()` / `set_variant(name)` read and switch them for tests and benchmarks.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from .primitives import PRIMITIVES

LIBRARY = Path(__file__).with_name("_native.so")
BUILD_INFO = LIBRARY.with_name("_native.json")
_REBUILD = 'reinstall to rebuild it: pip install --no-build-isolation -e . (or pip install -e ".[dev]")'


def version_tuple(version: str) -> tuple[int, int]:
    """(major, minor) of a torch version: (2, 15) from "2.15.0+cu132" or "2.15.0a0+git1234"."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"not a version: {version!r}")
    return int(match[1]), int(match[2])


def build_info() -> dict | None:
    """The build record written beside the library (None if there is none)."""
    try:
        return json.loads(BUILD_INFO.read_text())
    except (OSError, ValueError):
        return None


def _load() -> str | None:
    """Load the library; the reason it cannot be used, or None."""
    if os.environ.get("IMPRESSLEARN_NO_NATIVE", "0") not in ("", "0"):
        return "turned off by IMPRESSLEARN_NO_NATIVE"
    if not LIBRARY.exists():
        return f"the C++ extension was not built (no C++ compiler or no torch when the package was installed); {_REBUILD}"
    info = build_info()
    if info is None or info.get("abi") != "stable" or "target_torch" not in info:
        # A record from before the stable-ABI port, or none: the library may be tied to one torch.
        return f"{LIBRARY.name} has no stable-ABI build record {BUILD_INFO.name}; {_REBUILD}"
    if version_tuple(torch.__version__) < version_tuple(str(info["target_torch"])):
        # The library calls stable-ABI functions that this older torch does not have.
        return (
            f"the C++ extension targets torch >= {info['target_torch']} (built with torch "
            f"{info.get('built_with_torch')}) but torch {torch.__version__} is running; upgrade torch, "
            f"or {_REBUILD}"
        )
    try:
        torch.ops.load_library(str(LIBRARY))
    except (OSError, RuntimeError) as err:
        return f"loading {LIBRARY} failed: {err}"
    return None


UNAVAILABLE = _load()


def supports(device: torch.device) -> bool:
    """The native ops take CPU tensors."""
    return torch.device(device).type == "cpu"


def _op(name: str):
    return getattr(torch.ops.impresslearn_native, name)


# --------------------------------------------------------------------------- primitives
# Same names, signatures and results as impresslearn.reference (the ops layer checks inputs).


def combine(weight: torch.Tensor, words: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """`weight * Σ_t alpha[t] * masks[t]` from the packed words, accumulated in fp32 (fp64 for fp64)."""
    return _op("combine")(weight, words, alpha)


def combine_grad_alpha(grad: torch.Tensor, weight: torch.Tensor, words: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """`d alpha[t] = Σ grad ⊙ weight ⊙ masks[t]` (per row for per-channel alpha), in alpha's dtype."""
    return _op("combine_grad_alpha")(grad, weight, words, alpha)


def masked_weight(weight: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """`weight * masks[0]` for words holding one mask, in one pass (the product with the bit)."""
    return _op("masked_weight")(weight, words)


def popup_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """1.0 at the `k` largest entries (ties toward the lower flat index), else 0.0; radix select."""
    return _op("popup_mask")(scores, k)


def popup_pack(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The `popup_mask` as packed words `[1, rows, nw]`, written directly."""
    return _op("popup_pack")(scores, k)


def threshold_mask(scores: torch.Tensor) -> torch.Tensor:
    """1.0 where `scores >= 0`, else 0.0."""
    return _op("threshold_mask")(scores)


def popup_weight(weight: torch.Tensor, scores: torch.Tensor, k: int) -> torch.Tensor:
    """`weight * popup_mask(|scores|, k)`: the radix select on |scores|, then one pass (no float mask)."""
    return _op("popup_weight")(weight, scores, k)


def popup_weight_grad_scores(grad: torch.Tensor, weight: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """`grad * weight * sgn(scores)` in one pass: the scores' gradient of `popup_weight`."""
    return _op("popup_weight_grad_scores")(grad, weight, scores)


def threshold_weight(weight: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """`weight * (scores >= 0)` in one pass."""
    return _op("threshold_weight")(weight, scores)


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """A bool (or 0/1) tensor `[T, rows, cols]` as int32 words `[T, rows, ceil(cols / 32)]`."""
    return _op("pack_bits")(bits)


def unpack_bits(words: torch.Tensor, cols: int) -> torch.Tensor:
    """Int32 words `[T, rows, nw]` as a bool tensor `[T, rows, cols]`."""
    return _op("unpack_bits")(words, cols)


# The primitives this backend has kernels for (docs/design.md §5.1): all of them.
KERNELS = {
    "combine": combine,
    "combine_grad_alpha": combine_grad_alpha,
    "masked_weight": masked_weight,
    "popup_mask": popup_mask,
    "popup_pack": popup_pack,
    "popup_weight": popup_weight,
    "popup_weight_grad_scores": popup_weight_grad_scores,
    "threshold_mask": threshold_mask,
    "threshold_weight": threshold_weight,
    "pack_bits": pack_bits,
    "unpack_bits": unpack_bits,
}


# --------------------------------------------------------------------------- kernel variants


def variant() -> str:
    """The inner-loop variant in use: "avx512", "avx2", "generic" or "lut"."""
    return _op("variant")()


def set_variant(name: str) -> str:
    """Switch variants ("auto" restores the CPU's best); returns the previous one."""
    return _op("set_variant")(name)


# --------------------------------------------------------------------------- fake implementations


def _register_fakes() -> None:
    """The library's ops' fakes, from the primitives' declarations: the same checks and result
    shapes as the `impresslearn::` ops (docs/design.md §5.1), one per kernel registered here."""
    for name in KERNELS:
        spec = PRIMITIVES[name]

        def fake(*args, spec=spec):
            spec.check(*args)
            return spec.fake(*args)

        torch.library.register_fake(f"impresslearn_native::{name}")(fake)


if UNAVAILABLE is None:
    _register_fakes()
