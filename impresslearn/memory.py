"""Size guards: a request refused in one sentence, saying what it would allocate, before it
allocates (docs/design.md §4.7).

    physical_memory()                 this machine's memory in bytes (None where it cannot be read)
    check_allocation(nbytes, what)    ValueError when `what` would need more than that
    format_bytes(n)                   "3.2 GiB"
"""

from __future__ import annotations

import os


def physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        return None


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_allocation(nbytes: int, what: str) -> None:
    """Refuse `what` (a phrase: "1000000 tasks of layer fc1") when its `nbytes` exceed the
    machine's memory: it could never be held, and trying would first make the machine swap or the
    process be killed."""
    total = physical_memory()
    if total is not None and nbytes > total:
        raise ValueError(
            f"{what} would allocate {format_bytes(nbytes)}, more than this machine's {format_bytes(total)} of memory"
        )
