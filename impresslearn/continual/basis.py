"""ImpressLearn bases: `K` binary masks per layer (a dict layer name -> PackedMasks).

heterogeneous   one mask from each of K different tasks (`from_masks` of K task masks)
homogeneous     K masks trained on one task with different seeds: score initialisation
                and data order differ, the backbone is the same (`homogeneous_basis`)
random          K uniformly random masks keeping exactly the density's count (`random_basis`)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from ..choices import Choice
from ..format import PackedMasks
from ..layers import random_basis as random_layer_basis
from ..seeding import derive_seed
from .backbone import BackboneConfig, network, supermask_model, weight_shapes
from .masks import task_masks, train_mask
from .training import TrainConfig


class BasisKind(Choice):
    HETEROGENEOUS = "heterogeneous"
    HOMOGENEOUS = "homogeneous"
    RANDOM = "random"


BASIS_KINDS = BasisKind.names()

Basis = dict[str, PackedMasks]


def basis_size(basis: Mapping[str, PackedMasks]) -> int:
    sizes = {p.num_masks for p in basis.values()}
    if len(sizes) != 1:
        raise ValueError(f"the layers of a basis must hold the same number of masks, got {sorted(sizes)}")
    return sizes.pop()


def concat(parts: Sequence[Mapping[str, PackedMasks]]) -> Basis:
    """Masks of several bases (or single task masks) stacked per layer, in order."""
    if not parts:
        raise ValueError("nothing to concatenate")
    names = list(parts[0])
    for p in parts:
        if list(p) != names:
            raise ValueError(f"bases cover different layers: {names} and {list(p)}")
    return {n: PackedMasks.cat([p[n] for p in parts]) for n in names}


def select(basis: Mapping[str, PackedMasks], indices: Sequence[int]) -> Basis:
    """A basis made of the masks at `indices` (e.g. the first K of a larger one)."""
    idx = list(indices)
    return {n: PackedMasks(p.words[idx], p.shape) for n, p in basis.items()}


def random_basis(cfg: BackboneConfig, size: int, density: float | None = None, seed: int = 0) -> Basis:
    """`size` uniformly random masks per layer at `density` (the backbone's by default)."""
    d = cfg.density if density is None else density
    return {
        name: random_layer_basis(shape, size, d, seed=derive_seed(seed, f"random-basis/{name}"))
        for name, shape in weight_shapes(network(cfg)).items()
    }


def homogeneous_basis(
    cfg: BackboneConfig, size: int, batches: Callable[[int], Iterable], train: TrainConfig, *, progress: bool | None = None
) -> Basis:
    """`size` masks all learned on one task: mask t starts from its own score seed and draws
    its batches from `batches(t)` (a data order of its own). Same backbone for all."""
    model = supermask_model(cfg, num_tasks=size)  # task t's scores start from a seed of their own
    for t in range(size):
        train_mask(model, t, batches(t), train, desc=f"homogeneous mask {t + 1}/{size}", progress=progress)
    return task_masks(model)
