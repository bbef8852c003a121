"""One benchmark case in a child process of its own, under an address-space limit.

The memory benchmarks (bench_memory.py, bench_task_memory.py) run every case this way, so that a
case too big for the machine fails inside its limit instead of pushing the machine into swap,
and so that each case's peak resident set is its own (wait4's ru_maxrss).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile


def run_child(cmd: list[str], limit: int, env: dict) -> tuple[dict | None, int, str, float]:
    """Run `cmd + ["--as-limit", limit]`; returns (the last JSON line it printed, or None; its exit
    code; its stderr; its peak resident set in MiB). The child limits itself before importing
    anything: a preexec_fn would make ru_maxrss count the forked copy of this process."""
    with tempfile.TemporaryFile("w+") as so, tempfile.TemporaryFile("w+") as se:
        proc = subprocess.Popen(cmd + ["--as-limit", str(limit)], stdout=so, stderr=se, env=env, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own peak RSS comes with it
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        so.seek(0)
        se.seek(0)
        out_text, err_text = so.read(), se.read()
    line = next((ln for ln in reversed(out_text.splitlines()) if ln.startswith("{")), None)
    return (json.loads(line) if line is not None else None), code, err_text, usage.ru_maxrss / 1024


def failure(code: int, err_text: str) -> dict:
    """What a case that printed no result came to: out of memory (killed, or an allocation error)
    or failed, with the last line of its stderr."""
    tail = err_text.strip().splitlines()[-1:] or [f"exit code {code}"]
    oom = code < 0 or "MemoryError" in err_text or "alloc" in err_text.lower()
    return {"status": "out of memory" if oom else "failed", "error": tail[0][:300], "exit_code": code}
