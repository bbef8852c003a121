"""Basis files: the `K` packed masks of every layer of a network in one safetensors file.

A basis is trained once (step 1 of ImpressLearn, possibly by several processes, see
`impresslearn.continual.distributed`) and reused by every later task, so it gets a file of its own in the
checkpoint style: one int32 tensor `[K, rows, ceil(cols / 32)]` per layer (named by the layer's
qualified name) and a JSON header under the metadata key "impresslearn-basis" with the format
version, each layer's weight shape and any metadata given (backbone config, how the masks were
trained). Saved atomically; no pickle on load.

    save_basis(path, basis, metadata=None)
    load_basis(path) -> (basis, metadata)       basis: dict layer name -> PackedMasks
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..files import atomic_write, read_header, read_safetensors, safetensors_bytes
from ..format import PackedMasks

BASIS_VERSION = 1
BASIS_KEY = "impresslearn-basis"


def save_basis(path: str | os.PathLike, basis: Mapping[str, PackedMasks], metadata: dict | None = None) -> None:
    if not basis:
        raise ValueError("an empty basis")
    sizes = {p.num_masks for p in basis.values()}
    if len(sizes) != 1:
        raise ValueError(f"the layers of a basis must hold the same number of masks, got {sorted(sizes)}")
    header = {"format_version": BASIS_VERSION, "basis_size": sizes.pop(),
              "shapes": {n: list(p.shape) for n, p in basis.items()}, "metadata": metadata or {}}
    atomic_write(path, safetensors_bytes({n: p.words for n, p in basis.items()}, BASIS_KEY, header))


def load_basis(path: str | os.PathLike) -> tuple[dict[str, PackedMasks], dict]:
    tensors, meta = read_safetensors(Path(path).read_bytes(), str(path), "basis file")
    header = read_header(meta, BASIS_KEY, BASIS_VERSION, str(path), "basis file")
    basis = {n: PackedMasks(tensors[n], shape) for n, shape in header["shapes"].items()}
    return basis, header["metadata"]
