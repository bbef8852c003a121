"""A run's results file: checked before any work, held by one run at a time, never replaced by
a run it does not belong to.

    check_out(path)                 refuse an unusable `--out` at once (empty, a folder, unwritable)
    RunLock(path)                   an exclusive lock on `<out>.lock` for the run's whole life (flock:
                                    released by the kernel when the process ends, even by SIGKILL);
                                    a second run on the same `--out` is refused with who holds it
    existing_results(path, config)  what is at `--out` already: nothing, this run's results (same
                                    settings: resume), or something this run must not overwrite
    claim_run_folder(path, fresh)   `<out>.run/`, the run's units: created with a marker naming
                                    `<out>`, removed only by a run of that same `<out>`

`OutputError` is the refusal: one sentence a user can act on.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from ..files import NAME_BYTES, atomic_write, read_text_file


class OutputError(ValueError):
    """`--out` cannot be used by this run (a sentence saying why and what to do)."""


def check_out(out: str | os.PathLike | None) -> Path:
    """`out` as a Path, or OutputError before any work if no results file can be written there."""
    if out is None or str(out).strip() == "":
        raise OutputError("--out is empty: give the results file a name, e.g. --out results.json")
    path = Path(out)
    if path.is_dir():
        raise OutputError(f"--out {path} is a folder; give a file name inside it, e.g. {path / 'results.json'}")
    if len(os.fsencode(path.name)) > NAME_BYTES - len(".lock"):  # <out>.lock and <out>.run sit beside it
        raise OutputError(
            f"--out {path.name[:40]}... is a name of {len(os.fsencode(path.name))} bytes; beside it go "
            f"<name>.lock and <name>.run, so it may have at most {NAME_BYTES - len('.lock')}"
        )
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    while not probe.exists():  # the first folder that exists must let us create the rest
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"--out {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"--out {path}: cannot write in {probe} (permission denied)")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"--out {path} exists and is not writable")
    return path


def lock_path(out: Path) -> Path:
    return out.with_name(out.name + ".lock")


class RunLock:
    """Holds `<out>.lock` exclusively while the run lives. The file names the holder (pid, host,
    command, start time) so that a refused run can say who has it."""

    def __init__(self, out: Path, command: str | None = None):
        self.path = lock_path(out)
        self.command = command or " ".join(sys.argv)
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise OutputError(
                    f"{self.path.name[: -len('.lock')]} is in use by another run ({holder}); wait for "
                    "it to finish, or choose another --out"
                ) from None
            # The holder before us removes the file when it lets go: locked a file no longer at
            # the path, we would hold nothing. Then open the path again.
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        os.ftruncate(fd, 0)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        # Empty the file before unlocking: a run that takes the lock next finds no stale holder.
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 65536).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "a process that is starting"
    return f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}: {info.get('command')}"


def existing_results(out: Path, config: dict, free: tuple[str, ...] = (), restart: bool = False) -> dict | None:
    """The results already at `out` if they are this run's (the same `config`, except the
    `free` fields), None if there is nothing there (or, with `restart`, results of any settings,
    which the run then replaces); OutputError for anything else."""
    if not out.exists():
        return None
    try:
        old = json.loads(read_text_file(out))  # a regular file of a results file's size, else refused
    except (OSError, UnicodeDecodeError, ValueError):
        raise OutputError(
            f"--out {out} holds something that is not a results file; move it away, or choose another --out"
        ) from None
    if not isinstance(old, dict) or not isinstance(old.get("config"), dict) or "status" not in old:
        raise OutputError(
            f"--out {out} holds a JSON file that is not an impresslearn results file; move it away, or choose another --out"
        )
    if restart:
        return None
    diff = sorted(k for k in set(old["config"]) | set(config) if k not in free and old["config"].get(k) != config.get(k))
    if diff:
        raise OutputError(
            f"--out {out} holds the results of a run with other settings (differs in "
            f"{', '.join(diff)}); add --restart to replace them, or choose another --out"
        )
    return old


RUN_MARKER = ".impresslearn-run"  # in a run folder: the results file it belongs to


def run_folder(out: Path) -> Path:
    """The folder a run keeps its finished units in: the results file's name with ".run"
    appended, so that two results files (`exp.json`, `exp.csv`) never share one and no results
    file is its own folder."""
    return out.with_name(out.name + ".run")


def claim_run_folder(out: Path, fresh: bool) -> Path:
    """Make `run_folder(out)` this run's, before any work: a folder there that is not a run folder
    of `out` (no marker, another file's, a link, a file) is refused in a sentence and never
    touched; with `fresh` (a new run, or --restart) what an earlier run of `out` left there is
    removed. The marker is written on creation, so only a run of `out` ever removes the folder."""
    folder = run_folder(out)
    marker = folder / RUN_MARKER
    owner = str(out.resolve())
    if folder.is_symlink() or folder.exists():
        ours = (
            folder.is_dir()
            and not folder.is_symlink()
            and marker.is_file()
            and not marker.is_symlink()
            and marker.read_text(errors="replace").strip() == owner
        )
        if not ours:
            raise OutputError(
                f"{folder} exists and is not the run folder of {out} (a run keeps its units there); "
                "move it away, or choose another --out"
            )
        if fresh:
            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        atomic_write(marker, owner + "\n")
    return folder
