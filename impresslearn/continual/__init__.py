"""Continual-learning algorithms (docs/design.md §6, layer 5): plain functions over the layers.

backbone    BackboneConfig, the SupSup / ImpressLearn models built on one frozen backbone
training    TrainConfig and the shared fitting loop (Adam, RMSprop, SGD, full-batch L-BFGS)
masks       edge-popup / SupSup mask training, presets
basis       heterogeneous, homogeneous and random bases
alpha       ImpressLearn alpha fitting (per layer, per channel, eq. 2 penalty, hybrid), basis-GN
inference   GN task inference (one-shot, binary; H and G) over SupSup and ImpressLearn tasks
serving     serve(model, requests): a stream of requests, each with a task or none, in mixed batches
metrics     accuracy, accuracy matrix, forgetting, backward transfer, incorrect-mask matrix
storage     bytes per task of each method; the paper's Table 2
ksm         KSM, Piggyback, fine-tuning and head-only adaptation of a pretrained network
exssnet     ExSSNeT, SSNeT and KKT: weight training restricted to weights no earlier mask holds
"""

from .backbone import BackboneConfig, impress_model, supermask_model
from .training import TrainConfig

__all__ = ["BackboneConfig", "TrainConfig", "supermask_model", "impress_model"]
