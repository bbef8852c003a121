"""What the native backend tests share: the skip marker, the kernel variants this CPU runs, and
shapes that reach the native kernels' internal boundaries (on top of cases.SHAPES)."""

from __future__ import annotations

import contextlib

import pytest

import impresslearn

requires_native = pytest.mark.skipif(
    "native" not in impresslearn.available_backends(),
    reason=f"native backend unavailable: {impresslearn.backends.why_unavailable('native')}",
)


def runnable_variants() -> list[str]:
    """The kernel variants (avx512, avx2, generic, lut) this CPU can run."""
    if "native" not in impresslearn.available_backends():
        return []
    from impresslearn import native

    out = []
    for name in ("generic", "lut", "avx2", "avx512"):
        try:
            previous = native.set_variant(name)
        except RuntimeError:  # this CPU lacks the instructions
            continue
        native.set_variant(previous)
        out.append(name)
    return out


VARIANTS = runnable_variants()


@contextlib.contextmanager
def variant(name: str):
    from impresslearn import native

    previous = native.set_variant(name)
    try:
        yield
    finally:
        native.set_variant(previous)


# 10 words per row (an 8-word SIMD block and a remainder), 66 words (two segments of one row),
# and enough rows that the parallel loops split.
EXTRA_SHAPES = [(5, 300), (3, 2085), (40, 7, 3, 3)]
