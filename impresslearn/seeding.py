"""Seeds: how every frozen random number of the library is made, the same on every machine.

    derive_seed(seed, name)    a stable per-purpose seed (a layer's weight, a data order, a basis)
    init_backbone(shape, ...)  the frozen weight of one layer, rebuilt from (init, seed, density)
    check_seed(seed)           a seed is a whole number in [0, 2**63)
    check_density(d, numel)    a density lies in (0, 1] and, given a layer's size, keeps a weight

A checkpoint stores these seeds instead of the weights; data streams and bases derive theirs
from the run's seed with `derive_seed`, so a resumed or data-parallel run draws the same numbers.
"""

from __future__ import annotations

import math
import numbers
import zlib
from collections.abc import Sequence

import torch
from torch import Tensor

from .choices import Choice


class Init(Choice):
    """How a seeded backbone is drawn (docs/design.md §2.1)."""

    KAIMING_NORMAL = "kaiming_normal"
    SIGNED_CONSTANT = "signed_constant"


INITS = Init.names()


def derive_seed(seed: int, name: str) -> int:
    """A per-layer seed from the model seed and the layer's qualified name (stable across runs)."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63 - 1)


def init_backbone(shape: Sequence[int], *, init: str = "kaiming_normal", seed: int = 0, density: float | None = None) -> Tensor:
    """The frozen random weight of one layer, on the CPU in float32, the same on every machine.

    kaiming_normal: N(0, gain^2 / fan_in) with the ReLU gain sqrt(2); signed_constant:
    sign(N(0, 1)) * gain / sqrt(fan_in) (SupSup's). With `density` the fan is multiplied by it
    (std grows by 1/sqrt(density)), so a mask keeping that fraction preserves the scale.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    shape = tuple(int(s) for s in shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"a layer's weight needs every dimension at least 1, got the shape {shape}")
    check_seed(seed)
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
    if density is not None:
        # a density that keeps no weight would scale the weights without bound (1e-300: to inf)
        check_density(density, math.prod(shape))
        fan_in = fan_in * density
    std = math.sqrt(2.0) / math.sqrt(fan_in)
    gen = torch.Generator().manual_seed(int(seed))
    w = torch.randn(shape, generator=gen)
    if init == "signed_constant":
        return torch.where(w >= 0, std, -std)
    return w * std


SEED_LIMIT = 2**63  # seeds are int64 wherever torch or numpy take them


def check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must be a whole number in [0, 2**63), got {seed!r}")


def kept_count(numel: int, density: float) -> int:
    """Weights a top-k mask of `density` keeps among `numel`: `numel - floor((1 - density) * numel)`
    (docs/design.md §2.2)."""
    return numel - math.floor((1.0 - float(density)) * numel)


def check_density(density, numel: int | None = None) -> None:
    """`density` lies in (0, 1]; with `numel` (a layer's weight count), it keeps at least one weight."""
    if isinstance(density, bool) or not isinstance(density, numbers.Real) or not 0.0 < float(density) <= 1.0:
        raise ValueError(f"density must lie in (0, 1], got {density!r}")
    if numel is not None and kept_count(numel, density) < 1:
        raise ValueError(
            f"density {float(density):g} keeps no weight of a layer of {numel} weights (a top-k "
            f"keeps numel - floor((1 - density) * numel)); 1/numel = {1 / numel:.3g} keeps one"
        )
