"""File I/O every writer and reader of the library shares: atomic writes, and safetensors files
with a versioned JSON header under a metadata key of their own.

Checkpoints, basis files, training states and results files all go through here, so they are
written the same way (beside the target, flushed, then renamed over it: a reader never sees half
a file) and refused the same way (`CheckpointError`, a sentence naming the file).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save


class CheckpointError(ValueError):
    """A file that is not one this version can read, or one that does not fit the model."""


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    path = os.fspath(path)
    if isinstance(data, str):
        data = data.encode()
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def safetensors_bytes(tensors: Mapping[str, torch.Tensor], key: str, header: dict) -> bytes:
    """Tensors (detached, on the CPU, contiguous) and `header` as JSON under metadata `key`."""
    blob = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    return st_save(blob, metadata={key: json.dumps(header)})


def read_safetensors(data: bytes, name: str = "data", what: str = "safetensors file") -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and the string metadata of safetensors bytes; CheckpointError if damaged."""
    try:
        tensors = st_load(data)
        # The safetensors layout: an 8-byte little-endian header length, then the JSON header.
        header_len = int.from_bytes(data[:8], "little")
        return tensors, json.loads(data[8:8 + header_len]).get("__metadata__", {})
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise CheckpointError(f"{name} is not a readable {what} (truncated or corrupt?): {err}") from err


def read_header(meta: Mapping[str, str], key: str, version: int, name: str, what: str,
                field: str = "format_version") -> dict:
    """The JSON header under `key` of a file's metadata, after checking it holds `version`."""
    if key not in meta:
        raise CheckpointError(f"{name} is a safetensors file but not an impresslearn {what}")
    header = json.loads(meta[key])
    if header.get(field) != version:
        raise CheckpointError(f"{name} has {what} format version {header.get(field)}; "
                              f"this impresslearn reads version {version}")
    return header
