"""A run's units (docs/design.md §4.6): how every runner resumes.

A run keeps its folder `<out>.run/` (claimed by `output.claim_run_folder`). A unit is a piece of
work that ends in tensors and a record (a mask, a task's alphas): when it finishes it is written
to `units/<key>.safetensors` (the tensors, the record as its metadata, checksummed), and a unit
in progress may keep `units/<key>.progress.safetensors` (the training state `fit` resumes from).
A run started again with the same configuration takes every finished unit as it is and continues
the one in progress: the MNIST runner (its alpha fits) and the split runner (its masks and alphas,
under several processes too) resume this one way.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from ..continual import distributed as dd
from ..continual.resume import FileCheckpoint, parse_state, state_bytes
from ..files import atomic_write
from .output import RUN_MARKER


class SharedCheckpoint(FileCheckpoint):
    """A checkpoint that all processes of a data-parallel unit share: rank 0 reads and writes the
    file, and what it reads reaches every rank by broadcast (no shared file system needed)."""

    def __init__(self, path, d: dd.Dist):
        super().__init__(path)
        self.d = d

    def load(self) -> bytes | None:
        return dd.broadcast_bytes(super().load() if self.d.is_main else None, self.d)

    def save(self, data: bytes) -> None:
        if self.d.is_main:
            super().save(data)

    def clear(self) -> None:
        if self.d.is_main:
            super().clear()


class RunFolder:
    """`<out>.run/`: config.json, units/<key>.safetensors (finished units) and
    units/<key>.progress.safetensors (the unit in progress)."""

    def __init__(self, path: Path, d: dd.Dist | None = None):
        self.path, self.d = Path(path), d or dd.Dist()

    def checkpoint(self, key: str, shared: bool, progress: bool = False) -> FileCheckpoint:
        p = self.path / "units" / f"{key}{'.progress' if progress else ''}.safetensors"
        return SharedCheckpoint(p, self.d) if shared else FileCheckpoint(p)

    def done(self, key: str, shared: bool) -> tuple[dict, dict] | None:
        data = self.checkpoint(key, shared).load()
        if data is None:
            return None
        tensors, _, info = parse_state(data, key)
        return tensors, info

    def finish(self, key: str, shared: bool, tensors: dict, info: dict) -> None:
        self.checkpoint(key, shared).save(state_bytes(tensors, position=info))
        self.checkpoint(key, shared, progress=True).clear()

    def prepare(self, config: dict, restart: bool, free: Sequence[str] = ()) -> bool:
        """Check (or write) the run's config (`free`: the fields that may differ); True if an
        earlier run is being continued."""
        d, cfg_file = self.d, self.path / "config.json"
        if restart:  # the main process emptied its folder when it claimed it (claim_run_folder)
            dd.barrier(d)
            if not d.is_main and self.path.exists() and not (self.path / RUN_MARKER).exists():
                shutil.rmtree(self.path, ignore_errors=True)  # a folder of this machine's own
            dd.barrier(d)
        verdict = None
        if d.is_main:
            if cfg_file.exists():
                old = json.loads(cfg_file.read_text())
                diff = sorted(k for k in set(old) | set(config) if k not in free and old.get(k) != config.get(k))
                verdict = ("error", diff) if diff else ("resume", [])
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                atomic_write(cfg_file, json.dumps(config, indent=1))
                verdict = ("new", [])
        verdict = dd.all_gather_objects(verdict, d)[0]
        if verdict[0] == "error":
            raise RuntimeError(
                f"{self.path} holds a run with a different configuration (differs in {verdict[1]}); "
                "restart it with --restart, or choose another --out"
            )
        (self.path / "units").mkdir(parents=True, exist_ok=True)
        return verdict[0] == "resume"


__all__ = ["RunFolder", "SharedCheckpoint"]
