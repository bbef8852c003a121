"""Avalanche adapter (layer 6, beside the experiments): impresslearn's methods as Avalanche
strategies, for users of `avalanche-lib` (`pip install -e ".[avalanche]"`).

    MaskModule, TaskInference   any convert()ed model as a MultiTaskModule; task_labels=None
                                infers the task (module.py)
    TaskTrainingPlugin, Phase   an experience trains only its task's scores or alphas, then
                                freezes them (plugin.py)
    SupSup, ImpressLearn        strategies on SupervisedTemplate; MaskStrategy, their base;
                                evaluation_plugin(): accuracy, forgetting, BWT, accuracy matrix
                                (strategies.py)
    ExSSNeT, SSNeT              a mask phase, then the weights no earlier mask holds (SSNeT: all
                                of the mask's) trained under it; ExSSNeTTraining (exssnet.py)
    superposition(net)          an Impress model over a SupSup model's masks (layers.impress_over)
    permuted_mnist, split_mnist Avalanche's MNIST streams, task-incremental, read from local
                                files, optionally fewer samples per experience (benchmarks.py)
"""

try:
    import avalanche  # noqa: F401
except ImportError as e:  # one sentence, and the way out
    raise ImportError('impresslearn.avalanche needs avalanche-lib: pip install -e ".[avalanche]"') from e

from ..layers import impress_over as superposition
from .benchmarks import permuted_mnist, split_mnist
from .exssnet import WEIGHT_TRAINING, ExSSNeT, ExSSNeTTraining, SSNeT
from .module import MaskModule, TaskInference
from .plugin import Phase, TaskTrainingPlugin
from .strategies import ALPHA_TRAINING, MASK_TRAINING, ImpressLearn, MaskStrategy, SupSup, evaluation_plugin

__all__ = [
    "ALPHA_TRAINING",
    "MASK_TRAINING",
    "WEIGHT_TRAINING",
    "ExSSNeT",
    "ExSSNeTTraining",
    "ImpressLearn",
    "MaskModule",
    "MaskStrategy",
    "Phase",
    "SSNeT",
    "SupSup",
    "TaskInference",
    "TaskTrainingPlugin",
    "evaluation_plugin",
    "permuted_mnist",
    "split_mnist",
    "superposition",
]
