"""impresslearn: continual learning with bit-packed binary masks over a frozen random backbone."""

from . import ops
from .backends import available_backends, backend
from .checkpoint import load_checkpoint, save_checkpoint
from .format import PackedMasks
from .layers import (
    ConvertError,
    ImpressConv2d,
    ImpressLinear,
    SupermaskConv2d,
    SupermaskLinear,
    TaskBatchNorm2d,
    add_task,
    convert,
    finish_task,
    set_task,
    task_parameters,
)
from .ops import pack_masks

__version__ = "0.1.0"

__all__ = [
    "PackedMasks",
    "pack_masks",
    "ops",
    "backend",
    "available_backends",
    "SupermaskLinear",
    "SupermaskConv2d",
    "ImpressLinear",
    "ImpressConv2d",
    "TaskBatchNorm2d",
    "convert",
    "ConvertError",
    "set_task",
    "add_task",
    "finish_task",
    "task_parameters",
    "save_checkpoint",
    "load_checkpoint",
]
