"""SplitCIFAR-100 and SplitImageNet experiments with ResNets: the runner behind
`impresslearn split --benchmark split-cifar100|split-imagenet` (one process or several, resumable).

    1. the basis: K edge-popup masks (heterogeneous: one per basis task; homogeneous: K masks of
       basis task 0, each from its own score seed and data order), or K random masks
    2. SupSup: a mask for each new task (for comparison; `--no-supsup` skips it)
    3. ImpressLearn: alphas (per layer or per channel) over the basis, and per-task non-affine
       BatchNorm statistics, for each new task in turn; final accuracy re-measured at the end
    4. the incorrect-mask matrix of the first new tasks' SupSup masks, and storage per task

After a mask or a task's alphas are trained, the task's BatchNorm statistics are re-estimated
with the final parameters over `--bn-recalibrate` training batches (0 keeps SupSup's running
averages, which mix the statistics of every intermediate mask; see continual/batchnorm.py).

Settings default to the paper's (Table 3): ResNet-18 (SupSup's CIFAR variant) with Adam lr 0.02,
λ 0.005, batch 64 on SplitCIFAR-100; torchvision's ResNet-50 with Adam lr 0.0025, λ 0.005,
batch 96 on SplitImageNet. Masks train with the same optimizer and lr unless told otherwise.

Several processes (`torchrun`, see `impresslearn.continual.distributed`): the basis masks are shared
out, mask i trained alone by rank i mod world_size (`--basis-parallel masks`, the default;
the masks are bit-identical to a single process's) or each trained by all ranks together; the
SupSup masks and the alphas train data-parallel (DDP), with BatchNorm statistics of the global
batch. Only rank 0 writes results.

Nothing is lost on interruption: everything lives in `<out>.run/` (for `--out results.json`,
`results.run/`): each finished unit (a mask, a task's alphas) as a file, the unit in progress
as a checkpoint of its parameters, BatchNorm statistics, optimizer state and position in the
data, saved every `--checkpoint-every` steps. The same command restarted continues from there
(its configuration must match; `--restart` starts afresh). The results end in `--out`, the
basis in `<out>.run/basis.safetensors` and the ImpressLearn model (every new task) in
`<out>.run/impress.safetensors` (`impresslearn.load_checkpoint`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn as nn

from ..checkpoint import save_checkpoint
from ..continual import backbone as bb
from ..continual import basis as basis_mod
from ..continual import batchnorm, metrics, storage
from ..continual import distributed as dd
from ..continual.alpha import check_lam
from ..continual.basis_file import save_basis
from ..continual.masks import task_masks
from ..continual.resume import load_task_state, task_state
from ..continual.training import TrainConfig, fit
from ..data.split import SplitStream, split_cifar100, split_imagenet
from ..format import PackedMasks
from ..layers import impress_layers, supermask_layers
from ..methods.impress import ImpressLearn
from ..methods.supsup import SupSup
from ..seeding import derive_seed
from .base import SPLIT_BENCHMARKS, RunnerBase, machine_info, storage_record
from .config import ExperimentConfig
from .output import claim_run_folder, run_folder
from .units import RunFolder

# The paper's settings (Table 3) and each benchmark's shape.
PAPER_SETTINGS = {
    "split-cifar100": dict(arch="resnet18", lr=0.02, lam=0.005, batch_size=64, num_tasks=20, classes=5),
    "split-imagenet": dict(arch="resnet50", lr=0.0025, lam=0.005, batch_size=96, num_tasks=100, classes=10),
}
SYNTHETIC_DEFAULTS = {"split-cifar100": (20, 10), "split-imagenet": (10, 5)}  # images per class: train, test

RECALIBRATION_PASS = 1_000_000  # the data pass (order, augmentation) BatchNorm statistics are re-estimated on


# Fields a restarted run may change without changing what it computes.
@dataclasses.dataclass
class SplitConfig(ExperimentConfig):
    """Everything a split-benchmark run depends on (written to results.json as `config`); the
    shared fields are `ExperimentConfig`'s (data_root: CIFAR-100's folder, or ImageNet's)."""

    RESUME_FREE: ClassVar[tuple[str, ...]] = (
        *ExperimentConfig.RESUME_FREE,
        "workers",
        "checkpoint_every",
        "device",
        "eval_batch_size",
    )

    benchmark: str = "split-cifar100"
    download: bool = False
    synthetic: bool = False  # the generated stand-in of the same shapes
    synthetic_train: int | None = None  # its images per class (default 20 / 10)
    synthetic_test: int | None = None  # (default 10 / 5)
    image_size: int = 224  # split-imagenet crops (smaller for smoke runs)
    # backbone and masks
    arch: str | None = None  # resnet18 (CIFAR) / resnet50; default per benchmark
    width: int = 64  # resnet18's first-stage channels
    density: float = 0.1
    mask: str = "topk"
    init: str = "kaiming_normal"
    scale: bool = False
    # tasks
    basis: str = "heterogeneous"
    basis_size: int = 10
    new_tasks: int = 5  # 0: build the basis only
    first_new_task: int | None = None  # default: right after the basis tasks
    # training (None: the paper's)
    optimizer: str = "adam"
    lr: float | None = None
    lam: float | None = None
    batch_size: int | None = None
    mask_lr: float | None = None
    mask_epochs: float = 1.0
    mask_iterations: int | None = None
    alpha_lr: float | None = None
    alpha_epochs: float = 1.0
    alpha_iterations: int | None = None
    per_channel: bool = False
    supsup: bool = True
    incorrect_tasks: int = 5
    # running
    device: str | None = None  # default: this process's GPU if CUDA is present, else cpu
    workers: int = 0  # DataLoader worker processes per process
    eval_batch_size: int = 250
    eval_batches: int | None = None  # at most this many test batches per task
    checkpoint_every: int = 100  # steps between checkpoints of the unit in progress
    basis_parallel: str = "masks"  # several processes: "masks" (share out) or "data" (DDP)
    sync_bn: bool = True  # data-parallel: BatchNorm over the global batch
    bn_recalibrate: int = 50  # training batches re-estimating a task's BatchNorm statistics

    def setting(self, name: str):
        value = getattr(self, name, None)
        return PAPER_SETTINGS[self.benchmark][name] if value is None else value

    @property
    def num_tasks(self) -> int:
        return PAPER_SETTINGS[self.benchmark]["num_tasks"]

    def task_lists(self) -> tuple[list[int], list[int]]:
        """(stream tasks of the basis masks, stream tasks learned as new tasks)."""
        k = self.basis_size
        basis_tasks = {"heterogeneous": list(range(k)), "homogeneous": [0], "random": []}[self.basis]
        first = self.first_new_task if self.first_new_task is not None else len(basis_tasks)
        return basis_tasks, list(range(first, first + self.new_tasks))

    def check(self) -> None:
        if self.benchmark not in SPLIT_BENCHMARKS:
            raise ValueError(f"benchmark must be one of {tuple(SPLIT_BENCHMARKS)}, got {self.benchmark!r}")
        self.basis = basis_mod.BasisKind.of(self.basis, "basis")
        if self.basis_size < 1 or self.new_tasks < 0:
            raise ValueError(f"need basis_size >= 1 and new_tasks >= 0, got {self.basis_size}, {self.new_tasks}")
        if not self.synthetic and self.data_root is None:
            raise ValueError(f"{self.benchmark} needs --data-root, or --synthetic for the generated stand-in")
        if self.basis_parallel not in ("masks", "data"):
            raise ValueError(f"basis_parallel must be 'masks' or 'data', got {self.basis_parallel!r}")
        if self.optimizer not in ("adam", "rmsprop", "sgd"):
            raise ValueError(f"optimizer must be adam, rmsprop or sgd, got {self.optimizer!r}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        basis_tasks, new = self.task_lists()
        used = basis_tasks + new
        if used and max(used) >= self.num_tasks:
            raise ValueError(
                f"{self.benchmark} has {self.num_tasks} tasks; basis tasks {basis_tasks} and new tasks "
                f"{new[:1]}..{new[-1:]} do not fit"
            )
        if set(basis_tasks) & set(new):
            raise ValueError(f"new tasks {new} overlap the basis tasks {basis_tasks}")
        for name in ("workers", "incorrect_tasks", "bn_recalibrate"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("eval_batch_size", "width", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.eval_batches is not None and self.eval_batches < 1:
            raise ValueError(f"eval_batches must be at least 1 (or left out for all), got {self.eval_batches}")
        if self.mask not in ("topk", "threshold"):
            raise ValueError(f"mask must be 'topk' or 'threshold', got {self.mask!r}")
        # What the settings build must be valid too (density, learning rates, epochs, iterations,
        # batch size): refused here, before any data is read.
        self.backbone()
        check_lam(self.setting("lam"))
        for what, make in (("mask training", self.mask_training), ("alpha fit", self.alpha_training)):
            try:
                make()
            except ValueError as err:
                raise ValueError(f"{what}: {err}") from None
        if not self.synthetic and self.data_root is not None and not self.download and not Path(self.data_root).is_dir():
            raise FileNotFoundError(f"--data-root {self.data_root} is not a folder")

    def backbone(self) -> bb.BackboneConfig:
        classes = PAPER_SETTINGS[self.benchmark]["classes"]
        return bb.BackboneConfig(
            arch=self.setting("arch"),
            outputs=classes,
            classes=classes,
            density=self.density,
            mask=self.mask,
            init=self.init,
            scale=self.scale,
            seed=self.seed,
            width=self.width,
        )

    def mask_training(self) -> TrainConfig:
        return TrainConfig(
            optimizer=self.optimizer,
            lr=self.mask_lr or self.setting("lr"),
            epochs=self.mask_epochs,
            iterations=self.mask_iterations,
            batch_size=self.setting("batch_size"),
        )

    def alpha_training(self) -> TrainConfig:
        return TrainConfig(
            optimizer=self.optimizer,
            lr=self.alpha_lr or self.setting("lr"),
            epochs=self.alpha_epochs,
            iterations=self.alpha_iterations,
            batch_size=self.setting("batch_size"),
        )


def make_stream(cfg: SplitConfig) -> SplitStream:
    train, test = SYNTHETIC_DEFAULTS[cfg.benchmark]
    kw = dict(
        synthetic=cfg.synthetic,
        synthetic_train=cfg.synthetic_train or train,
        synthetic_test=cfg.synthetic_test or test,
        seed=cfg.seed,
    )
    if cfg.benchmark == "split-cifar100":
        return split_cifar100(cfg.data_root, download=cfg.download, **kw)
    return split_imagenet(cfg.data_root, image_size=cfg.image_size, **kw)


# --------------------------------------------------------------------------- run folder


# --------------------------------------------------------------------------- the runner

BN_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")


def _bn_only(tensors: dict) -> dict:
    return {k: v for k, v in tensors.items() if k.endswith(BN_SUFFIXES)}


class SplitRunner(RunnerBase):
    def __init__(self, cfg: SplitConfig, out: str = "results.json", command: str | None = None, d: dd.Dist | None = None):
        cfg.check()
        self.cfg = cfg
        self.d = d or dd.Dist()
        # Before any work: --out usable, held by this run (rank 0 holds the lock for all), and
        # what is there already is this run's to resume or nothing a run may not replace.
        self.claim_output(out, cfg, command, lock=self.d.is_main)
        if self.d.is_main:
            try:  # refused if it is not this --out's run folder; emptied on --restart
                run = claim_run_folder(self.out, fresh=cfg.restart)
            except BaseException:
                self.release_output()
                raise
            self.remove_temporaries([run, run / "units"])
        try:
            self._setup(cfg, command)
        except BaseException:
            self.release_output()
            raise

    def _setup(self, cfg: SplitConfig, command: str | None) -> None:
        self.device = torch.device(cfg.device) if cfg.device else self.d.device
        self.progress = cfg.progress if self.d.is_main else False  # one set of progress bars
        self.folder = RunFolder(run_folder(self.out), self.d)
        self.start_clock()
        self.stream = make_stream(cfg)
        self.backbone = cfg.backbone()
        self.mask_train, self.alpha_train = cfg.mask_training(), cfg.alpha_training()
        self.basis_tasks, self.new_tasks = cfg.task_lists()
        with torch.device("meta"):  # shapes only: no weights allocated or initialised
            self.plain = bb.network(self.backbone)
        self.shapes = bb.weight_shapes(self.plain)
        config = cfg.record()
        resumed = self.folder.prepare(config, cfg.restart, cfg.RESUME_FREE)
        self.loaded_units = 0
        self.results: dict = {
            "status": "running",
            "command": command,
            "config": config,
            "backbone": bb.to_dict(self.backbone),
            "mask_training": dataclasses.asdict(self.mask_train),
            "alpha_training": dataclasses.asdict(self.alpha_train),
            "lam": cfg.setting("lam"),
            "data": {"source": self.stream.source, "classes_per_task": self.stream.classes_per_task},
            "tasks": {
                "basis": [self.stream.describe(t) for t in self.basis_tasks],
                "new": [self.stream.describe(t) for t in self.new_tasks],
            },
            "machine": machine_info(self.device),
            "distributed": self.d.describe() | {"rank": None},
            "resumed": resumed,
            "run_folder": str(self.folder.path),
            "supsup": {},
            "impresslearn": {
                "basis": cfg.basis,
                "basis_size": cfg.basis_size,
                "per_channel": cfg.per_channel,
                "lam": cfg.setting("lam"),
            },
        }

    # ---- bookkeeping (RunnerBase: save, log, data_seed)
    @property
    def writes(self) -> bool:
        return self.d.is_main  # only rank 0 writes results and logs

    def before_save(self) -> None:
        self.results["units_from_checkpoints"] = self.loaded_units

    def test_batches(self, task: int):
        return self.stream.test(
            task, self.cfg.eval_batch_size, device=self.device, limit=self.cfg.eval_batches, workers=self.cfg.workers
        )

    def train_batches(self, task: int, batch_size: int, seed: int, parallel: bool):
        rank, world = (self.d.rank, self.d.world_size) if parallel else (0, 1)
        return self.stream.train(
            task, batch_size, seed=seed, device=self.device, rank=rank, world_size=world, workers=self.cfg.workers
        )

    def recalibrate(self, model: nn.Module, task: int, batches) -> None:
        """Per-task BatchNorm statistics re-estimated with the final parameters (`--bn-recalibrate`
        training batches of a pass of their own)."""
        batchnorm.recalibrate(model, task, batches.epoch_iter(RECALIBRATION_PASS), self.cfg.bn_recalibrate)

    # ---- one mask (a basis mask or a SupSup mask of a new task)
    def mask_unit(
        self, key: str, task: int, score_seed: Callable[[nn.Module], int], data_seed: int, parallel: bool
    ) -> tuple[dict[str, PackedMasks], dict, dict]:
        """Train (or load) one mask on stream task `task`: (masks per layer, BatchNorm stats, info).
        `parallel`: all ranks train it together (DDP); else this rank alone."""
        shared = parallel or not self.d.active
        found = self.folder.done(key, shared)
        if found is not None:
            tensors, info = found
            self.loaded_units += 1
            masks = {n: PackedMasks(tensors[f"{n}.mask"], s) for n, s in self.shapes.items()}
            return masks, _bn_only(tensors), info
        start = time.time()
        model = bb.supermask_model(self.backbone, num_tasks=1)
        for _, m in supermask_layers(model):  # the scores of slot `score_seed`, in a one-task model
            m._truncate_tasks(0)
            m.add_task(seed=score_seed(m))
        model.to(self.device)
        if parallel and self.cfg.sync_bn:
            dd.sync_batchnorm(model, self.d)
        (phase,) = SupSup(model, self.mask_train).phases(0)  # what a SupSup task trains (methods/supsup.py)
        params = phase.params
        batches = self.train_batches(task, self.mask_train.batch_size, data_seed, parallel)
        ckpt = self.folder.checkpoint(key, shared, progress=True)
        with dd.data_parallel(model, params, self.d if parallel else dd.Dist()) as net:
            trained = fit(
                net,
                params,
                batches,
                self.mask_train,
                state=task_state(model, 0),
                checkpoint=ckpt,
                every=self.cfg.checkpoint_every,
                desc=key,
                progress=self.progress,
            )
        self.recalibrate(model, 0, batches)
        bn = _bn_only(task_state(model, 0))
        if parallel and not self.cfg.sync_bn:
            dd.average_(list(bn.values()), self.d)
        acc = metrics.accuracy(model, self.test_batches(task), task=0)
        masks = task_masks(model, [0])
        info = {"acc": acc, "task": task, **trained, "seconds": round(time.time() - start, 1)}
        self.folder.finish(key, shared, {**{f"{n}.mask": p.words for n, p in masks.items()}, **bn}, info)
        return masks, bn, info

    # ---- stage 1: the basis
    def build_basis(self) -> dict[str, PackedMasks]:
        cfg, k = self.cfg, self.cfg.basis_size
        if cfg.basis == "random":
            return basis_mod.random_basis(self.backbone, k, seed=derive_seed(cfg.seed, "basis"))
        share_out = self.d.active and cfg.basis_parallel == "masks"
        mine = dd.owned(k, self.d) if share_out else list(range(k))
        parts, infos = {}, {}
        for i in mine:
            task = self.basis_tasks[i] if cfg.basis == "heterogeneous" else self.basis_tasks[0]
            parts[i], _, infos[i] = self.mask_unit(
                f"basis-{i:04d}",
                task,
                lambda m, i=i: m.score_seed(i),
                self.data_seed("basis", i),
                parallel=self.d.active and not share_out,
            )
            self.log(f"basis mask {i + 1}/{k} (task {task}): accuracy {infos[i]['acc']:.4f}")
        if share_out:
            basis = dd.gather_masks(parts, k, self.shapes, self.d)
            infos = {i: v for part in dd.all_gather_objects(infos, self.d) for i, v in part.items()}
        else:
            basis = basis_mod.concat([parts[i] for i in range(k)])
        key = "basis_task_acc" if cfg.basis == "heterogeneous" else "homogeneous_mask_acc"
        self.results["supsup"][key] = [infos[i]["acc"] for i in range(k)]
        self.results["basis_training"] = [infos[i] for i in range(k)]
        return basis

    # ---- stage 2: SupSup masks of the new tasks
    def learn_supsup(self) -> list[tuple[dict, dict]]:
        kept, accs = [], []
        for j, task in enumerate(self.new_tasks):
            masks, bn, info = self.mask_unit(
                f"supsup-{j:04d}",
                task,
                lambda m, j=j: derive_seed(m.seed, f"scores/new/{j}"),
                self.data_seed("supsup", j),
                parallel=self.d.active,
            )
            accs.append(info["acc"])
            if j < self.cfg.incorrect_tasks:
                kept.append((masks, bn))
            self.results["supsup"].update(task_acc=accs, mean_acc=sum(accs) / len(accs))
            self.log(f"SupSup mask {j + 1}/{len(self.new_tasks)} (task {task}): accuracy {info['acc']:.4f}")
            self.save()
        return kept

    # ---- stage 3: ImpressLearn alphas of the new tasks
    def learn_alphas(self, basis: dict[str, PackedMasks]) -> nn.Module:
        cfg, n = self.cfg, len(self.new_tasks)
        model = bb.impress_model(self.backbone, basis, per_channel=cfg.per_channel, num_tasks=n).to(self.device)
        if self.d.active and cfg.sync_bn:
            dd.sync_batchnorm(model, self.d)
        learner = ImpressLearn(model, self.alpha_train, lam=cfg.setting("lam"))
        diag, fits = [], []
        for j, task in enumerate(self.new_tasks):
            key = f"alpha-{j:04d}"
            found = self.folder.done(key, shared=True)
            if found is not None:
                load_task_state(model, j, found[0])
                info = found[1]
                self.loaded_units += 1
            else:
                start = time.time()
                (phase,) = learner.phases(j)  # its alphas, with eq. 2's penalty (methods/impress.py)
                params = phase.params
                batches = self.train_batches(task, self.alpha_train.batch_size, self.data_seed("alpha", j), True)
                ckpt = self.folder.checkpoint(key, True, progress=True)
                with dd.data_parallel(model, params, self.d) as net:
                    trained = fit(
                        net,
                        params,
                        batches,
                        phase.config,
                        penalty=phase.penalty,
                        state=task_state(model, j),
                        checkpoint=ckpt,
                        every=cfg.checkpoint_every,
                        desc=f"alpha {j + 1}/{n}",
                        progress=self.progress,
                    )
                self.recalibrate(model, j, batches)
                if self.d.active and not cfg.sync_bn:
                    dd.average_(list(_bn_only(task_state(model, j)).values()), self.d)
                acc = metrics.accuracy(model, self.test_batches(task), task=j)
                info = {"acc": acc, "task": task, **trained, "seconds": round(time.time() - start, 1)}
                self.folder.finish(key, True, task_state(model, j), info)
            learner.finish(j)  # its alphas kept as a buffer row, out of every optimizer's reach
            diag.append(info["acc"])
            fits.append(info)
            self.results["impresslearn"].update(new_task_acc=diag, mean_acc=sum(diag) / len(diag), fits=fits)
            self.log(f"ImpressLearn task {j + 1}/{n} (task {task}): accuracy {info['acc']:.4f}")
            self.save()
        final = [metrics.accuracy(model, self.test_batches(t), task=j) for j, t in enumerate(self.new_tasks)]
        self.results["impresslearn"].update(
            final_acc=final,
            forgetting=sum(a - b for a, b in zip(diag, final)) / n,
            alpha={name: [m.task_alpha(j).detach().cpu().tolist() for j in range(n)] for name, m in impress_layers(model)},
        )
        return model

    # ---- stage 4: measurements
    def incorrect_masks(self, kept: list[tuple[dict, dict]]) -> None:
        """M[i][j]: SupSup mask i (with its BatchNorm statistics) on new task j's test data, through
        an Impress model whose basis is the masks and whose task i has alpha one-hot at i."""
        m = len(kept)
        model = None
        if m >= 2:
            masks = basis_mod.concat([k[0] for k in kept])
            model = bb.impress_model(self.backbone, masks, num_tasks=m).to(self.device)
            for i, (_, bn) in enumerate(kept):
                onehot = {
                    f"{name}.alpha": torch.nn.functional.one_hot(torch.tensor(i), m).float() for name, _ in impress_layers(model)
                }
                load_task_state(model, i, {**bn, **onehot})
        self.measure_incorrect_masks(model, self.new_tasks[:m], self.test_batches)

    def storage(self) -> dict:
        bn = storage.batchnorm_bytes(self.plain)
        k, max_tasks = self.cfg.basis_size, self.cfg.num_tasks
        imp = storage.impress_bytes(self.shapes, k, per_channel=self.cfg.per_channel, max_tasks=max_tasks, state_bytes=bn)
        packed = storage.supsup_bytes_packed(self.shapes) + bn
        index16 = storage.supsup_bytes_indices(self.shapes, self.backbone.density) + bn
        return storage_record(packed, index16, imp, max_tasks, batchnorm_bytes=bn)

    def run(self) -> dict:
        try:
            return self._run()
        finally:
            self.release_output()

    def _run(self) -> dict:
        cfg = self.cfg
        self.log(
            f"{cfg.benchmark} ({self.stream.source}): {self.backbone.arch}, basis {cfg.basis} K={cfg.basis_size}, "
            f"{len(self.new_tasks)} new tasks, {self.d.world_size} process(es) on {self.device}"
            + (", resuming" if self.results["resumed"] else "")
        )
        self.results["storage"] = self.storage()
        basis = self.build_basis()
        if self.d.is_main:
            save_basis(
                self.folder.path / "basis.safetensors",
                basis,
                metadata={
                    "backbone": bb.to_dict(self.backbone),
                    "basis": cfg.basis,
                    "benchmark": cfg.benchmark,
                    "tasks": self.basis_tasks,
                    "seed": cfg.seed,
                },
            )
        self.save()
        kept = self.learn_supsup() if cfg.supsup and self.new_tasks else []
        if self.new_tasks:
            model = self.learn_alphas(basis)
            if self.d.is_main:
                save_checkpoint(
                    self.folder.path / "impress.safetensors",
                    model,
                    metadata={"config": self.results["config"], "new_tasks": self.new_tasks},
                )
        self.incorrect_masks(kept)
        self.results["status"] = "done"
        self.save()
        return self.results


def run_split(cfg: SplitConfig, out: str = "results.json", command: str | None = None, d: dd.Dist | None = None) -> dict:
    return SplitRunner(cfg, out, command, d).run()
