"""Layer 4's modules over the ops (docs/design.md §4.3-§4.5): the task-state model, the mask
layers, per-task normalisation and heads, masked attention, and `convert()` for any model.

    tasks.py      TaskAware, BackboneLayer, TaskStateLayer; set_task / add_task / finish_task /
                  task_parameters over a whole model; TaskRows / SampleMixture (a task per sample)
    per_sample.py what the mask layers run under a task per sample and a per-sample mixture
    masked.py     SupermaskLinear / Conv2d / Conv, ImpressLinear / Conv2d / Conv, random_basis
    norms.py      TaskBatchNorm1d / 2d / 3d, FrozenBatchNorm
    heads.py      TaskHeads
    attention.py  TaskMultiheadAttention
    superpose.py  impress_over(model): an ImpressLearn model over a SupSup model's finished masks
    convert.py    convert(model, ...), convert_with(model, factory, ...)
"""

from .attention import TaskMultiheadAttention
from .convert import ConvertError, convert, convert_with
from .heads import TaskHeads
from .masked import (
    MASK_MODES,
    ImpressConv,
    ImpressConv2d,
    ImpressLayer,
    ImpressLinear,
    MaskMode,
    SupermaskConv,
    SupermaskConv2d,
    SupermaskLayer,
    SupermaskLinear,
    impress_layers,
    random_basis,
    supermask_layers,
)
from .norms import FrozenBatchNorm, TaskBatchNorm, TaskBatchNorm1d, TaskBatchNorm2d, TaskBatchNorm3d
from .quantise import AlphaQuant, ScaleGroup, coded_bytes, codes, dequantise, quantised_bytes
from .superpose import impress_over
from .tasks import (
    BackboneLayer,
    SampleMixture,
    TaskAware,
    TaskRows,
    TaskStateLayer,
    add_task,
    finish_task,
    per_sample_refusals,
    per_sample_supported,
    set_submodule,
    set_task,
    task_modules,
    task_parameters,
)

__all__ = [
    "TaskAware",
    "BackboneLayer",
    "TaskStateLayer",
    "SupermaskLayer",
    "SupermaskLinear",
    "SupermaskConv2d",
    "SupermaskConv",
    "ImpressLayer",
    "ImpressLinear",
    "ImpressConv2d",
    "ImpressConv",
    "TaskBatchNorm",
    "TaskBatchNorm1d",
    "TaskBatchNorm2d",
    "TaskBatchNorm3d",
    "FrozenBatchNorm",
    "TaskHeads",
    "TaskMultiheadAttention",
    "MASK_MODES",
    "MaskMode",
    "AlphaQuant",
    "ScaleGroup",
    "quantised_bytes",
    "coded_bytes",
    "codes",
    "dequantise",
    "ConvertError",
    "convert",
    "convert_with",
    "set_task",
    "add_task",
    "finish_task",
    "task_parameters",
    "task_modules",
    "impress_over",
    "supermask_layers",
    "impress_layers",
    "random_basis",
    "set_submodule",
    "TaskRows",
    "SampleMixture",
    "per_sample_supported",
    "per_sample_refusals",
]
