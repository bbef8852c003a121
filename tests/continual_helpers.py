"""Small trained models on the shipped MNIST subset, built once per test session and shared.

Tests must not change what these return (they are cached): select tasks freely, but train or
add tasks only on copies.
"""

import functools

import torch

from impresslearn.continual import masks
from impresslearn.continual.backbone import BackboneConfig, supermask_model
from impresslearn.continual.training import TrainConfig
from impresslearn.data import PermutedMNIST, load_subset

TASKS = (0, 1, 2)


@functools.cache
def subset():
    return load_subset()


@functools.cache
def permuted():
    return PermutedMNIST(subset(), num_tasks=10)


def eval_batches(task, batch_size=500, **kw):
    return permuted().test(task, batch_size, **kw)


@functools.cache
def trained(kind: str = "topk"):
    """(backbone config, SupSup model) with one mask per task in TASKS, one epoch each on the subset.

    topk: the issue's density-0.1 settings; threshold: SupSup's (threshold masks, 100 outputs)."""
    torch.manual_seed(0)
    if kind == "topk":
        cfg, tr = masks.preset("topk-0.1")
    else:
        cfg, tr = masks.preset("supsup")
        tr = TrainConfig(optimizer="rmsprop", lr=1e-4, epochs=1.0, batch_size=128)
    model = supermask_model(cfg, num_tasks=len(TASKS))
    for i, t in enumerate(TASKS):
        masks.train_mask(model, i, permuted().train(t, tr.batch_size, seed=i), tr, progress=False)
    return cfg, model


def small_config(**kw) -> BackboneConfig:
    return BackboneConfig(**kw)
