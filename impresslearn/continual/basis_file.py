"""Basis files: the `K` packed masks of every layer of a network in one safetensors file.

A basis is trained once (step 1 of ImpressLearn, possibly by several processes, see
`impresslearn.continual.distributed`) and reused by every later task, so it gets a file of its own in the
checkpoint style: one int32 tensor `[K, rows, ceil(cols / 32)]` per layer (named by the layer's
qualified name) and a JSON header under the metadata key "impresslearn-basis" with the format
version, each layer's weight shape and any metadata given (backbone config, how the masks were
trained) and, from format version 2, the SHA-256 of every tensor. Saved atomically; no pickle on
load, and a file is checked whole (checksums, names, dtypes, shapes) before anything is returned;
version 1 files (no checksums) still load (docs/design.md §3.2).

    save_basis(path, basis, metadata=None)
    load_basis(path) -> (basis, metadata)       basis: dict layer name -> PackedMasks
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from ..files import (
    CheckpointError,
    atomic_write,
    check_entries,
    check_tensor,
    read_safetensors_file,
    read_verified,
    safetensors_bytes,
)
from ..format import PackedMasks, words_shape

BASIS_VERSION = 2  # 2: with checksums; 1 (read too): without
LEGACY_VERSIONS = (1,)
BASIS_KEY = "impresslearn-basis"
WHAT = "basis file"


def save_basis(path: str | os.PathLike, basis: Mapping[str, PackedMasks], metadata: dict | None = None) -> None:
    if not basis:
        raise ValueError("an empty basis")
    sizes = {p.num_masks for p in basis.values()}
    if len(sizes) != 1:
        raise ValueError(f"the layers of a basis must hold the same number of masks, got {sorted(sizes)}")
    header = {
        "format_version": BASIS_VERSION,
        "basis_size": sizes.pop(),
        "shapes": {n: list(p.shape) for n, p in basis.items()},
        "metadata": metadata or {},
    }
    atomic_write(path, safetensors_bytes({n: p.words for n, p in basis.items()}, BASIS_KEY, header))


def load_basis(path: str | os.PathLike) -> tuple[dict[str, PackedMasks], dict]:
    name = str(path)
    header, tensors = read_verified(
        read_safetensors_file(path, WHAT), name, WHAT, BASIS_KEY, (*LEGACY_VERSIONS, BASIS_VERSION), legacy=LEGACY_VERSIONS
    )
    shapes, size, metadata = header.get("shapes"), header.get("basis_size"), header.get("metadata", {})
    if not isinstance(shapes, dict) or not shapes or not all(_is_shape(s) for s in shapes.values()):
        raise CheckpointError(f"{WHAT} {name} has no valid 'shapes' in its header")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise CheckpointError(f"{WHAT} {name} has an invalid 'basis_size' ({size!r}) in its header")
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{WHAT} {name} has a 'metadata' in its header that is not a JSON object")
    check_entries(tensors, shapes, name, WHAT)
    for layer, shape in shapes.items():
        check_tensor(tensors[layer], layer, name, WHAT, dtype=torch.int32, shape=words_shape(shape, size))
    return {n: PackedMasks(tensors[n], shape) for n, shape in shapes.items()}, metadata


def _is_shape(s) -> bool:
    return isinstance(s, list) and len(s) >= 1 and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in s)
