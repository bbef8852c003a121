"""Seeds: how every frozen random number of the library is made, the same on every machine.

    derive_seed(seed, name)    a stable per-purpose seed (a layer's weight, a data order, a basis)
    init_backbone(shape, ...)  the frozen weight of one layer, rebuilt from (init, seed, density)

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

INITS = ("kaiming_normal", "signed_constant")


def derive_seed(seed: int, name: str) -> int:
    """A per-layer seed from the model seed and the layer's qualified name (stable across runs)."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63 - 1)


def init_backbone(shape: Sequence[int], *, init: str = "kaiming_normal", seed: int = 0,
                  density: float | None = None) -> Tensor:
    """The frozen random weight of one layer, on the CPU in float32, the same on every machine.

    kaiming_normal: N(0, gain^2 / fan_in) with the ReLU gain sqrt(2); signed_constant:
    sign(N(0, 1)) * gain / sqrt(fan_in) (SupSup's). With `density` the fan is multiplied by it
    (std grows by 1/sqrt(density)), so a mask keeping that fraction preserves the scale.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    shape = tuple(int(s) for s in shape)
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
    if density is not None:
        check_density(density)
        fan_in = fan_in * density
    std = math.sqrt(2.0) / math.sqrt(fan_in)
    gen = torch.Generator().manual_seed(int(seed))
    w = torch.randn(shape, generator=gen)
    if init == "signed_constant":
        return torch.where(w >= 0, std, -std)
    return w * std


def check_density(density) -> None:
    if isinstance(density, bool) or not isinstance(density, numbers.Real) or not 0.0 < float(density) <= 1.0:
        raise ValueError(f"density must lie in (0, 1], got {density!r}")


