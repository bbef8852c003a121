"""The KSM experiment (`impresslearn adapt`): one small network pretrained on MNIST digits 0-4,
then adapted in turn to digits 5-9, PermutedMNIST, RotatedMNIST (90°) and inverted MNIST by each
method of `methods.ksm.METHODS` (docs/design.md §2.10). The network is `models.mnist_convnet`
(the default, `arch="convnet"`) or the small ViT `models.mnist_vit` (`arch="vit"`: its patch
embedding, attention projections and MLPs masked, LayerNorm and tokens kept frozen as pretrained).

    AdaptConfig         the settings (network, sizes, steps, learning rates, the KSM mask's form)
    adapt_network(cfg)  the plain network pretrained (its classifier: `HEADS[arch]`)
    adapt_model(cfg, method, pretrained, n)
                        a copy of the pretrained network ready for `n` tasks by `method`
    AdaptRunner(cfg, out, command).run()
                        pretrains once, then per method: a model for every task, each new task
                        trained, reduced to what is stored and timed, the accuracy matrix
                        measured after every task; one key per method in the results file,
                        written after each method (a rerun of the same command skips the
                        methods already there)

Every results record keeps, per method, `task_acc` (the final row), `acc_matrix`, `bwt`,
`forgetting`, `bytes_per_task` (and its parts), `train_s_per_task`, and `backbone_unchanged`
(the body's weights compared bit for bit with the pretrained ones after the last task).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import ClassVar

import torch
import torch.nn as nn

from .. import models
from ..continual.metrics import AccuracyMatrix, accuracy
from ..continual.training import TrainConfig, fit
from ..data import ADAPT_TASKS, AdaptationTasks, load_mnist, load_subset
from ..kernel_masks import REAL_FORMS, RELAXATIONS, KernelMaskConfig
from ..methods import ksm
from .base import RunnerBase, machine_info
from .config import ExperimentConfig

# What the paper's text available to us did not fix (docs/results.md, KSM): written into every results file.
RECONSTRUCTED = {
    "real_part": "A_s = scale * R (--real linear; 'logistic' is scale * sigmoid(R)): the paper's Eq. 5 was not readable",
    "scale": "the real part's factor, 1.0 by default (--scale)",
    "temperature": "softmax temperature annealed geometrically from --temperature to --temperature-end per task",
    "binary_part": "M_b = softmax([sigmoid(R), 1 - sigmoid(R)] / T)[0] while training, 1[R > 0] when stored",
    "init": "R starts at +1 (every kernel kept: the pretrained network), --init",
    "linear_layers": "one mask value per weight of a linear layer (a 1x1 kernel), --linear row for one per row",
    "head": "every method learns a new float32 head per task (counted in bytes_per_task)",
}


# The networks `impresslearn adapt` pretrains, and the path of each one's classifier (the part
# every method learns anew per task).
ADAPT_ARCHS = ("convnet", "vit")
HEADS = {"convnet": "head", "vit": "heads.head"}


@dataclasses.dataclass
class AdaptConfig(ExperimentConfig):
    """The KSM experiment's settings; the shared fields are `ExperimentConfig`'s (progress bars
    off by default). A rerun may add or drop methods: each is a key of its own."""

    RESUME_FREE: ClassVar[tuple[str, ...]] = (*ExperimentConfig.RESUME_FREE, "methods")

    arch: str | None = None  # None: "convnet" (models.mnist_convnet); "vit": models.mnist_vit
    methods: tuple[str, ...] = ksm.METHODS
    tasks: tuple[str, ...] = ADAPT_TASKS  # the first is the pretraining task
    width: tuple[int, int, int] = (16, 32, 64)
    pretrain_iterations: int = 1500
    iterations: int = 500  # per adapted task and method
    batch_size: int = 64
    pretrain_lr: float = 1e-3
    finetune_lr: float = 1e-3
    head_lr: float = 1e-2
    piggyback_lr: float = 1e-4  # Piggyback's Adam learning rate for its real scores
    mask_lr: float = 5e-2  # KSM's and kernel_binary's R
    real: str = "linear"
    scale: float = 1.0
    relax: str = "softmax"
    temperature: float = 1.0
    temperature_end: float = 0.01
    init: float = 1.0
    linear: str = "weight"
    eval_samples: int = 2000  # test images per task (the first of the test set)
    progress: bool | None = False

    def __post_init__(self):
        self.methods, self.tasks, self.width = tuple(self.methods), tuple(self.tasks), tuple(self.width)

    def check(self) -> None:
        self.check_common()
        if self.arch is not None and self.arch not in ADAPT_ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ADAPT_ARCHS)}, got {self.arch!r}")
        unknown = [m for m in self.methods if m not in ksm.METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods must be some of {', '.join(ksm.METHODS)}, got {', '.join(self.methods) or 'none'}")
        if len(self.tasks) < 2 or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(
                f"tasks must be two or more different tasks of {', '.join(ADAPT_TASKS)}, got {', '.join(self.tasks) or 'none'}"
            )
        if any(t not in ADAPT_TASKS for t in self.tasks):
            raise ValueError(f"tasks must be some of {', '.join(ADAPT_TASKS)}, got {', '.join(self.tasks)}")
        for name in ("pretrain_iterations", "iterations", "batch_size", "eval_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("pretrain_lr", "finetune_lr", "head_lr", "piggyback_lr", "mask_lr", "temperature", "temperature_end"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{name} must be a finite positive number, got {getattr(self, name)}")
        if self.real not in REAL_FORMS or self.relax not in RELAXATIONS:
            raise ValueError(f"real must be one of {REAL_FORMS} and relax one of {RELAXATIONS}")
        KernelMaskConfig(self.real, self.scale, self.relax, self.temperature, self.init, self.linear)

    def kernel(self) -> KernelMaskConfig:
        return KernelMaskConfig(self.real, self.scale, self.relax, self.temperature, self.init, self.linear)

    def ksm_config(self, method: str, lr: float) -> ksm.KsmConfig:
        return ksm.KsmConfig(
            method=method,
            lr=lr,
            head_lr=self.head_lr,
            iterations=self.iterations,
            batch_size=self.batch_size,
            temperature=self.temperature,
            temperature_end=self.temperature_end,
        )


def adapt_network(cfg: AdaptConfig) -> nn.Module:
    """The plain network `cfg` pretrains (initialised from the global random state)."""
    if cfg.arch == "vit":
        return models.mnist_vit(10)
    return models.mnist_convnet(10, cfg.width)


def adapt_model(cfg: AdaptConfig, method: str, pretrained: nn.Module, num_tasks: int) -> nn.Module:
    """A copy of `pretrained` (an `adapt_network(cfg)`) ready for `num_tasks` tasks by `method`:
    `ksm.build_model` with the network's classifier as the per-task head."""
    return ksm.build_model(method, pretrained, num_tasks, kernel=cfg.kernel(), head=HEADS[cfg.arch or "convnet"])


class AdaptRunner(RunnerBase):
    def __init__(self, cfg: AdaptConfig, out: str | None = None, command: str | None = None):
        cfg.check()
        self.cfg = cfg
        self.start_clock()
        self.out = None
        config = cfg.record()
        old = self.claim_output(out, cfg, command) if out is not None else None
        self.results = old or {
            "command": command,
            "config": config,
            "status": "running",
            "machine": machine_info(torch.device("cpu")),
            "reconstructed": RECONSTRUCTED,
        }
        self.results["status"] = "running"
        if out is not None:
            self.remove_temporaries()
        arrays = load_mnist(cfg.data_root) if cfg.data_root else load_subset()
        self.results["data"] = arrays.source
        self.stream = AdaptationTasks(arrays, cfg.tasks)

    # ---- pieces

    def test(self, task: int):
        return self.stream.test(task, samples=self.cfg.eval_samples)

    def pretrain(self) -> nn.Module:
        torch.manual_seed(self.cfg.seed)
        net = adapt_network(self.cfg)
        t0 = time.time()
        tc = TrainConfig(
            optimizer="adam",
            lr=self.cfg.pretrain_lr,
            epochs=1e9,
            iterations=self.cfg.pretrain_iterations,
            batch_size=self.cfg.batch_size,
        )
        fit(
            net,
            list(net.parameters()),
            self.stream.train(0, self.cfg.batch_size, self.data_seed("pretrain", 0)),
            tc,
            desc="pretrain",
            progress=self.cfg.progress,
        )
        net.eval()
        acc = accuracy(net, self.test(0))
        self.results["pretrain"] = {
            "task": self.cfg.tasks[0],
            "acc": acc,
            "train_s": round(time.time() - t0, 2),
            "iterations": self.cfg.pretrain_iterations,
            "parameters": sum(p.numel() for p in net.parameters()),
        }
        self.log(f"pretrained on {self.stream.describe(0)}: accuracy {acc:.4f} in {time.time() - t0:.0f}s")
        return net

    def run_method(self, method: str, pretrained: nn.Module) -> dict:
        cfg, n = self.cfg, self.stream.num_tasks
        torch.manual_seed(cfg.seed)  # the new heads' initialisation
        model = adapt_model(cfg, method, pretrained, n)
        before = ksm.backbone_tensors(model)
        R = AccuracyMatrix(n)
        evaluate = lambda j: accuracy(model, self.test(j), task=j)  # noqa: E731
        R.measure_row(0, evaluate)
        train_s, eval_s, losses = [], [], []
        lr = {"finetune": cfg.finetune_lr, "head": cfg.head_lr, "piggyback": cfg.piggyback_lr}.get(method, cfg.mask_lr)
        learner = ksm.KSM(model, cfg.ksm_config(method, lr))
        for t in range(1, n):
            batches = self.stream.train(t, cfg.batch_size, self.data_seed(method, t))
            t0 = time.time()
            out = learner.learn(t, batches, desc=f"{method} {cfg.tasks[t]}", progress=cfg.progress)["train_phase"]
            train_s.append(round(time.time() - t0, 2))
            losses.append(out["loss"])
            t0 = time.time()
            R.measure_row(t, evaluate)
            eval_s.append(round(time.time() - t0, 2))
            self.log(
                f"{method}: {cfg.tasks[t]} accuracy {R.R[t][t]:.4f} (train {train_s[-1]:.1f}s); "
                f"row {[round(v, 4) for v in R.R[t][: t + 1]]}"
            )
        after = ksm.backbone_tensors(model)
        unchanged = all(torch.equal(before[k], after[k]) for k in before)
        m = R.to_dict()
        storage = ksm.bytes_per_task(model, method)
        rec = {
            "task_acc": R.final,
            "acc_matrix": m["matrix"],
            "bwt": m["backward_transfer"],
            "forgetting": m["forgetting"],
            "average_accuracy": m["average_accuracy"],
            "new_task_acc": [R.R[t][t] for t in range(1, n)],
            "bytes_per_task": storage["total"],
            "storage": storage,
            # each new task in its smallest exact form: its bits coded for cold storage (§2.8)
            "smallest_bytes_per_task": [learner.task_bytes(t)["smallest"] for t in range(1, n)],
            "train_s_per_task": train_s,
            "mean_train_s_per_task": sum(train_s) / len(train_s),
            "eval_s_per_task": eval_s,
            "final_loss": losses,
            "iterations": cfg.iterations,
            "lr": lr,
            "backbone_unchanged": unchanged,
        }
        if method == "ksm" or method == "kernel_binary":
            rec["kernel_mask"] = _jsonable(
                dataclasses.asdict(dataclasses.replace(cfg.kernel(), real="none" if method == "kernel_binary" else cfg.real))
            )
            rec["temperature"] = [cfg.temperature, cfg.temperature_end]
        return rec

    # ---- the run

    def run(self) -> dict:
        try:
            pretrained = self.pretrain()
            self.save()
            for method in self.cfg.methods:
                if method in self.results and isinstance(self.results[method], dict):
                    self.log(f"{method}: kept from the earlier run")
                    continue
                self.results[method] = self.run_method(method, pretrained)
                self.results["methods_done"] = [m for m in ksm.METHODS if m in self.results]
                self.save()
            self.results["status"] = "done"
            self.save()
            return self.results
        finally:
            self.release_output()


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def run_adapt(cfg: AdaptConfig, out: str | None = None, command: str | None = None) -> dict:
    return AdaptRunner(cfg, out, command).run()
