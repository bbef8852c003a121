"""One continual-learning experiment on MNIST, end to end: the runner behind `impresslearn mnist`
(PermutedMNIST, RotatedMNIST and SplitMNIST; the split benchmarks have `split.SplitRunner`).

With `methods` (`--methods supsup,ssnet,exssnet,exssnet-kkt`) the run is instead the ExSSNeT
comparison of `methods.run_methods`: each method learns the new tasks in sequence, and the
steps below are skipped.

    1. SupSup: a dedicated mask for each new task, learned in sequence (accuracy matrix,
       forgetting and backward transfer measured after every task)
    2. the basis: heterogeneous (masks of K basis tasks), homogeneous (K masks of basis task 0)
       or random
    3. ImpressLearn: alphas over the basis for the same new tasks, in sequence (accuracy matrix)
    4. the incorrect-mask matrix of the new tasks' SupSup masks
    5. optionally basis-GN (basis tasks learned without their label) and GN task inference over
       the SupSup masks and over the ImpressLearn tasks
    6. storage per task of each method

Results go to a JSON file rewritten (atomically) after every step, so an interruption loses
little. Learned masks can be kept in a cache folder keyed by everything that determines them, so
that runs sharing tasks and settings (a grid over K and basis kinds) train each mask once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
from tqdm.auto import tqdm

from .. import ops
from ..continual import alpha as alpha_mod
from ..continual import backbone as bb
from ..continual import basis as basis_mod
from ..continual import inference, masks, metrics, storage
from ..continual.resume import load_task_state, task_state
from ..continual.training import TrainConfig
from ..data import MnistArrays, PermutedMNIST, RotatedMNIST, SplitMNIST, TaskStream, load_mnist, load_subset
from ..files import (
    CheckpointError,
    atomic_write,
    read_safetensors,
    read_safetensors_file,
    safetensors_bytes,
    verify_checksums,
)
from ..format import PackedMasks
from ..layers import AlphaQuant, impress_layers, per_sample_supported, supermask_layers
from ..memory import check_allocation
from ..methods.exssnet import METHODS, ExssnetConfig
from ..methods.impress import ImpressLearn
from ..methods.supsup import SupSup
from ..seeding import check_density, derive_seed
from .base import BENCHMARKS, SPLIT_BENCHMARKS, RunnerBase, machine_info, storage_record
from .config import ExperimentConfig
from .methods import run_methods
from .output import claim_run_folder
from .tables import granularity
from .units import RunFolder

# The backbones an MNIST run takes (flat 784-pixel inputs): LeNet-300-100 (the default) and the
# small ViT of models.mnist_vit.
MNIST_ARCHS = ("lenet_300_100", "vit")


@dataclasses.dataclass
class RunConfig(ExperimentConfig):
    """Everything one `impresslearn mnist` or `compare` run depends on (written to results.json as
    `config`); the shared fields are `ExperimentConfig`'s."""

    RESUME_FREE: ClassVar[tuple[str, ...]] = (*ExperimentConfig.RESUME_FREE, "cache")

    benchmark: str = "permuted-mnist"
    download: bool = False
    validation: int = 0  # >0: evaluate on the last n training images instead of the test set
    # backbone and mask training (preset, then overrides)
    arch: str | None = None  # None: lenet_300_100; "vit": models.mnist_vit
    preset: str = "topk-0.1"
    density: float | None = None
    mask: str | None = None
    init: str | None = None
    scale: bool | None = None
    outputs: int | None = None
    mask_optimizer: str | None = None
    mask_lr: float | None = None
    mask_epochs: float | None = None
    mask_iterations: int | None = None
    # tasks
    new_tasks: int = 5
    first_new_task: int = 1000  # permuted-mnist: new tasks use permutation seeds from here + 1
    angle_step: float = 10.0  # rotated-mnist: basis task t is rotated by step * t
    new_angles: list | None = None  # rotated-mnist: angles of the new tasks (default: between basis angles)
    random_rotation: bool = False  # rotated-mnist: the ImpressLearn authors' per-image random rotation
    # ImpressLearn
    impresslearn: bool = True  # False: SupSup only (the basis and alphas are skipped)
    basis: str = "heterogeneous"
    basis_size: int = 10
    per_channel: bool | list = False  # True: every layer; a list: those layers (by name) only
    hybrid: bool | str = False  # "last" (or True) / "first": that layer a SupSup mask per task
    lam: float = 0.0
    alpha_preset: str = alpha_mod.DEFAULT_ALPHA_PRESET
    alpha_optimizer: str | None = None
    alpha_lr: float | None = None
    alpha_epochs: float | None = None
    alpha_batch_size: int | None = None
    alpha_schedule: str | None = None
    alpha_bits: int | None = None  # quantised alphas: 2..8-bit codes (None: float32)
    alpha_scale: str | None = None  # their scales: one per layer (None, "layer") or per output row ("row")
    alpha_step: str | None = None  # their step: "max" (None) or "mse" (layers/quantise.py)
    # extra measurements
    incorrect_tasks: int = 10  # incorrect-mask matrix over the first n new tasks
    matrix_every: int = 1  # accuracy-matrix rows after every n-th task and the last (diagonal always)
    basis_gn: int = 0  # basis-GN on the first n basis tasks (heterogeneous)
    gn_objectives: list = dataclasses.field(default_factory=list)  # "G", "H"
    gn_methods: list = dataclasses.field(default_factory=lambda: ["oneshot"])
    gn_inputs: list = dataclasses.field(default_factory=lambda: ["batch"])  # "batch", "first", "mixed"
    gn_batches: int | None = None  # test batches (of 128) per task for GN (all by default)
    gn_on: list = dataclasses.field(default_factory=lambda: ["supsup", "impresslearn"])
    # the ExSSNeT comparison (None everywhere: the SupSup + ImpressLearn run above, as before)
    methods: list | None = None  # of supsup, ssnet, exssnet, exssnet-kkt
    weight_lr: float | None = None  # weight phase: Adam, no weight decay (default 1e-4)
    weight_epochs: float | None = None  # default: the mask phase's epochs
    weight_iterations: int | None = None  # default: the mask phase's iterations
    kkt_fraction: float | None = None  # of the mask phase's batches KKT reads (default 0.2)
    kkt_k: int | None = None  # k of KKT's k-NN (default 200)
    early_eval: list | None = None  # fractions of the mask phase after which accuracy is measured
    # running
    device: str = "cpu"
    cache: str | None = None
    eval_batch_size: int = 2000

    def check(self) -> None:
        self.check_common()
        self.check_methods()
        if self.benchmark in SPLIT_BENCHMARKS:
            raise ValueError(
                f"{SPLIT_BENCHMARKS[self.benchmark]} runs through impresslearn.experiments.split "
                "(SplitConfig, run_split); this runner takes permuted-mnist and rotated-mnist"
            )
        if self.benchmark not in BENCHMARKS:
            raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {self.benchmark!r}")
        if self.arch not in (None, *MNIST_ARCHS):
            raise ValueError(f"arch must be one of {', '.join(MNIST_ARCHS)} on MNIST, got {self.arch!r}")
        self.basis = basis_mod.BasisKind.of(self.basis, "basis")
        if self.new_tasks < 1:
            raise ValueError(f"new_tasks must be at least 1, got {self.new_tasks}")
        if self.basis_size < 1:
            raise ValueError(f"basis_size must be at least 1, got {self.basis_size}")
        if self.basis_gn and self.basis != "heterogeneous":
            raise ValueError("basis-GN needs a heterogeneous basis (each mask belongs to a task)")
        if self.basis_gn > self.basis_size:
            raise ValueError(f"basis_gn ({self.basis_gn}) cannot exceed the basis size ({self.basis_size})")
        self.gn_objectives = [inference.Objective.of(o, "a GN objective") for o in self.gn_objectives]
        self.gn_methods = [inference.GnMethod.of(m, "a GN method") for m in self.gn_methods]
        self.gn_inputs = [inference.Inputs.of(i, "GN inputs") for i in self.gn_inputs]
        if self.hybrid not in (False, True, *bb.HYBRID_LAYERS):
            raise ValueError(f"hybrid must be one of {bb.HYBRID_LAYERS} (or False), got {self.hybrid!r}")
        for where in self.gn_on:
            if where not in ("supsup", "impresslearn"):
                raise ValueError(f"GN runs on 'supsup' and 'impresslearn' tasks, got {where!r}")
        if self.gn_batches is not None and self.gn_batches < 1:
            raise ValueError(f"gn_batches must be at least 1 (or left out for all), got {self.gn_batches}")
        for name in ("validation", "incorrect_tasks", "basis_gn", "first_new_task"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be at least 1, got {self.eval_batch_size}")
        if self.matrix_every < 1:
            raise ValueError(f"matrix_every must be at least 1 (1: a row after every task), got {self.matrix_every}")
        # (without ImpressLearn there is no basis: the new tasks may start at 0, SupSup's own
        # permutation seeds 1, 2, ...)
        if (
            self.benchmark == "permuted-mnist"
            and self.impresslearn
            and not self.methods
            and self.first_new_task < self.basis_size
        ):
            raise ValueError(f"new tasks (from {self.first_new_task}) would overlap the {self.basis_size} basis tasks")
        if self.benchmark == "rotated-mnist" and self.new_angles and len(self.new_angles) != self.new_tasks:
            raise ValueError(f"{len(self.new_angles)} new angles given for {self.new_tasks} new tasks")
        if not math.isfinite(self.angle_step):
            raise ValueError(f"angle_step must be a finite number of degrees, got {self.angle_step}")
        for angle in self.new_angles or []:
            if not math.isfinite(angle):
                raise ValueError(f"new_angles must be finite numbers of degrees, got {angle}")
        alpha_mod.check_lam(self.lam)
        quant = self.alpha_quant()
        if quant is not None and quant.scale == "row" and self.per_channel is not True:
            raise ValueError("per-row alpha scales need per-channel alphas in every layer (--per-channel)")
        if not isinstance(self.per_channel, bool):
            names = set(bb.weight_shapes(bb.network(self.backbone())))
            unknown = sorted(set(self.per_channel) - names)
            if unknown or not self.per_channel:
                layers, got = ", ".join(sorted(names)), ", ".join(unknown) or "none"
                raise ValueError(f"the per-channel layers must be layers of the backbone ({layers}), got {got}")
        # The settings the presets and overrides make must be valid too (density, learning rates,
        # epochs, iterations): refused here, before any data is read, not when training starts.
        self.check_sizes()
        for what, make in (("mask training", self.mask_training), ("alpha fit", self.alpha_training)):
            try:
                make()
            except ValueError as err:
                raise ValueError(f"{what}: {err}") from None
        if self.data_root is not None and not self.download:
            raw = Path(self.data_root) / "MNIST" / "raw"
            if not any((raw / f).exists() for f in ("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz")):
                raise FileNotFoundError(
                    f"MNIST not found under {self.data_root} (expected {raw}/train-images-idx3-"
                    "ubyte, torchvision's layout); add --download to fetch it there"
                )

    def check_sizes(self) -> None:
        """Every layer keeps a weight at the density asked for, and the run's tasks fit in memory
        (docs/design.md §4.7): a run of 10**8 tasks is refused, saying what it would hold."""
        backbone = self.backbone()
        shapes = bb.weight_shapes(bb.network(backbone))
        for name, shape in shapes.items():
            try:
                check_density(backbone.density, math.prod(shape))
            except ValueError as err:
                raise ValueError(f"{err}: layer {name!r} of the {backbone.arch} backbone") from None
        tasks = self.new_tasks + (self.basis_size + self.basis_gn if self.impresslearn else 0)
        rows = -(-self.new_tasks // self.matrix_every) + 1  # accuracy-matrix rows of 8-byte entries
        check_allocation(
            tasks * storage.supsup_bytes_packed(shapes) + rows * self.new_tasks * 8,
            f"a run of {tasks} tasks (their packed masks and accuracy matrix)",
        )

    def check_methods(self) -> None:
        if self.methods is None:
            extra = [
                n
                for n in ("weight_lr", "weight_epochs", "weight_iterations", "kkt_fraction", "kkt_k", "early_eval")
                if getattr(self, n) is not None
            ]
            if extra:
                raise ValueError(f"{extra[0]} belongs to the ExSSNeT comparison; add --methods")
            if self.benchmark == "split-mnist" and self.impresslearn and self.basis != "random":  # no tasks for a basis
                raise ValueError(
                    "split-mnist has no basis tasks: ImpressLearn there takes --basis random (or use --no-impresslearn)"
                )
        if self.benchmark == "split-mnist" and self.new_tasks > 5:
            raise ValueError(f"split-mnist has 5 tasks, so new_tasks must be at most 5, got {self.new_tasks}")
        if self.methods is None:
            return
        if not self.methods:
            raise ValueError(f"methods must name at least one of {', '.join(METHODS)}")
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"methods are {', '.join(METHODS)}, got {m!r}")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods names a method twice: {','.join(self.methods)}")
        if self.backbone().mask != "topk":
            raise ValueError("the ExSSNeT comparison learns top-k masks; use --mask topk (or a top-k preset)")
        for f in self.early_eval or []:
            if not 0 < f <= 1:
                raise ValueError(f"early_eval fractions must be in (0, 1], got {f}")
        for m in self.methods:
            self.exssnet_config(m)  # refuses bad learning rates, epochs, KKT settings

    def exssnet_config(self, method: str) -> ExssnetConfig:
        tr = self.mask_training()
        weight = TrainConfig(
            optimizer="adam",
            lr=1e-4 if self.weight_lr is None else self.weight_lr,
            epochs=tr.epochs if self.weight_epochs is None else self.weight_epochs,
            iterations=tr.iterations if self.weight_iterations is None else self.weight_iterations,
            batch_size=tr.batch_size,
            weight_decay=0.0,
        )
        kkt = {k: v for k, v in (("kkt_fraction", self.kkt_fraction), ("kkt_k", self.kkt_k)) if v is not None}
        return ExssnetConfig(method=method, mask=tr, weight=weight, classes=self.backbone().classes, **kkt)

    def alpha_quant(self) -> AlphaQuant | None:
        """Quantised alphas (`alpha_bits`), or None for float32 ones."""
        if self.alpha_bits is None:
            if self.alpha_scale is not None or self.alpha_step is not None:
                raise ValueError("alpha_scale and alpha_step belong to quantised alphas; give alpha_bits too")
            return None
        return AlphaQuant(self.alpha_bits, self.alpha_scale or "layer", self.alpha_step or "max")

    def backbone(self) -> bb.BackboneConfig:
        cfg, _ = masks.preset(self.preset)
        over = dict(
            arch=self.arch,
            density=self.density,
            mask=self.mask,
            init=self.init,
            scale=self.scale,
            outputs=self.outputs,
            seed=self.seed,
        )
        if self.benchmark == "split-mnist":  # 2 classes per task, one shared head of 2 outputs
            over.update(classes=2, outputs=self.outputs or 2)
        return bb.replace(cfg, **over)

    def mask_training(self) -> TrainConfig:
        _, tr = masks.preset(self.preset)
        return bb.replace(
            tr, optimizer=self.mask_optimizer, lr=self.mask_lr, epochs=self.mask_epochs, iterations=self.mask_iterations
        )

    def alpha_training(self) -> TrainConfig:
        if self.alpha_preset not in ALPHA_PRESETS:
            raise ValueError(f"alpha preset must be one of {sorted(ALPHA_PRESETS)}, got {self.alpha_preset!r}")
        tr = TrainConfig(**ALPHA_PRESETS[self.alpha_preset])
        return bb.replace(
            tr,
            optimizer=self.alpha_optimizer,
            lr=self.alpha_lr,
            epochs=self.alpha_epochs,
            batch_size=self.alpha_batch_size,
            schedule=self.alpha_schedule,
        )


# The alpha-fitting settings `impresslearn run` offers are the algorithm layer's.
ALPHA_PRESETS = alpha_mod.ALPHA_PRESETS


# --------------------------------------------------------------------------- data and tasks


def load_arrays(cfg: RunConfig) -> MnistArrays:
    arrays = load_subset() if cfg.data_root is None else load_mnist(cfg.data_root, download=cfg.download)
    return arrays.holdout(cfg.validation) if cfg.validation else arrays


@dataclasses.dataclass
class Tasks:
    stream: TaskStream
    basis: list[int]  # stream task of each basis mask (heterogeneous), or [task] for homogeneous
    new: list[int]  # stream tasks learned as new tasks


def make_tasks(cfg: RunConfig, arrays: MnistArrays) -> Tasks:
    k, n = cfg.basis_size, cfg.new_tasks
    if cfg.benchmark == "split-mnist":
        return Tasks(SplitMNIST(arrays), [], list(range(n)))
    if cfg.benchmark == "permuted-mnist":
        if cfg.impresslearn and not cfg.methods and cfg.first_new_task < k:
            raise ValueError(f"new tasks (from {cfg.first_new_task}) would overlap the {k} basis tasks")
        stream = PermutedMNIST(arrays, num_tasks=cfg.first_new_task + n)
        return Tasks(stream, list(range(k)), list(range(cfg.first_new_task, cfg.first_new_task + n)))
    basis_angles = [cfg.angle_step * t for t in range(k)]
    new_angles = cfg.new_angles if cfg.new_angles else [cfg.angle_step * (t + 0.5) for t in range(n)]
    if len(new_angles) != n:
        raise ValueError(f"{len(new_angles)} new angles given for {n} new tasks")
    stream = RotatedMNIST(arrays, angles=basis_angles + [float(a) for a in new_angles], random_rotation=cfg.random_rotation)
    return Tasks(stream, list(range(k)), list(range(k, k + n)))


# --------------------------------------------------------------------------- mask cache

CACHE_KEY = "impresslearn-mask-cache"


class MaskCache:
    """Learned masks on disk, one safetensors file per (backbone, training, data, task, model slot)."""

    def __init__(self, folder: str | None):
        self.folder = Path(folder) if folder else None
        if self.folder:
            self.folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(**parts) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def get(self, key: str) -> dict[str, PackedMasks] | None:
        """The masks under `key`, or None if there are none, or none whole: a damaged entry (its
        checksums do not match) is a miss, and the mask is learned again."""
        path = self.folder / f"{key}.safetensors" if self.folder else None
        if path is None or not path.exists():
            return None
        try:
            tensors, meta = read_safetensors(read_safetensors_file(path, "mask cache entry"), str(path), "mask cache entry")
            if CACHE_KEY in meta:  # entries written before checksums have no header to check
                verify_checksums(tensors, meta, CACHE_KEY, json.loads(meta[CACHE_KEY]), str(path), "mask cache entry")
            shapes = json.loads((self.folder / f"{key}.json").read_text())["shapes"]
            return {n: PackedMasks(tensors[n], shapes[n]) for n in shapes}
        except (CheckpointError, OSError, ValueError, KeyError) as err:
            print(f"impresslearn: mask cache: ignoring {path.name} ({err})", file=sys.stderr)
            return None

    def put(self, key: str, task_masks: dict[str, PackedMasks], info: dict) -> None:
        if not self.folder:
            return
        meta = {"shapes": {n: list(p.shape) for n, p in task_masks.items()}, "info": info}
        atomic_write(self.folder / f"{key}.json", json.dumps(meta, default=str))
        atomic_write(
            self.folder / f"{key}.safetensors", safetensors_bytes({n: p.words for n, p in task_masks.items()}, CACHE_KEY, meta)
        )


# --------------------------------------------------------------------------- the run


class Runner(RunnerBase):
    """One MNIST experiment. With `out`, the run holds `out` (and its folder `<out>.run/`: learned
    masks and finished alpha fits) for its life; the same run started again resumes from them,
    by finished units, to the same results."""

    def __init__(self, cfg: RunConfig, out: str | None = None, command: str | None = None):
        cfg.check()
        self.cfg = cfg
        self.out, self.folder, self.units, self.resumed, self.previous = None, None, None, False, {}
        if out is not None:
            old = self.claim_output(out, cfg, command)
            self.resumed = old is not None
            self.previous = old or {}
            try:  # units of an earlier run of this --out not resumed (other settings, --restart) go
                self.folder = claim_run_folder(self.out, fresh=not self.resumed)
                self.units = RunFolder(self.folder)
            except BaseException:
                self.release_output()
                raise
            self.remove_temporaries([self.folder, self.folder / "masks", self.folder / "units"])
        try:
            self._setup(cfg, command)
        except BaseException:
            self.release_output()
            raise

    def _setup(self, cfg: RunConfig, command: str | None) -> None:
        self.device = torch.device(cfg.device)
        self.backbone = cfg.backbone()
        self.mask_train = cfg.mask_training()
        self.alpha_train = cfg.alpha_training()
        own = self.folder / "masks" if self.folder is not None and cfg.cache is None else None
        self.cache = MaskCache(cfg.cache or own)
        self.start_clock()
        arrays = load_arrays(cfg)
        self.tasks = make_tasks(cfg, arrays)
        self.results: dict = {
            "status": "running",
            "command": command,
            "config": dataclasses.asdict(cfg),
            "backbone": bb.to_dict(self.backbone),
            "mask_training": dataclasses.asdict(self.mask_train),
            "alpha_training": dataclasses.asdict(self.alpha_train),
            "data": {
                "source": arrays.source,
                "train": int(arrays.train_x.shape[0]),
                "eval": int(arrays.test_x.shape[0]),
                "eval_split": "validation" if cfg.validation else "test",
            },
            "tasks": {
                "basis": [self.tasks.stream.describe(t) for t in self.tasks.basis],
                "new": [self.tasks.stream.describe(t) for t in self.tasks.new],
            },
            "machine": machine_info(self.device),
            "resumed": self.resumed,
        }

    # ---- data
    def test_batches(self, task: int, batch_size: int | None = None, limit=None, shuffle=False):
        return self.tasks.stream.test(
            task, batch_size or self.cfg.eval_batch_size, device=self.device, shuffle=shuffle, seed=self.cfg.seed, limit=limit
        )

    # ---- SupSup masks
    def learn_masks(self, stream_tasks: Sequence[int], label: str, matrix: bool) -> tuple[torch.nn.Module, dict]:
        """A SupSup model whose task i is a mask learned on stream task `stream_tasks[i]` (from the
        cache when present), with the accuracy matrix measured after every task if `matrix`."""
        n = len(stream_tasks)
        model = bb.supermask_model(self.backbone, num_tasks=n).to(self.device)
        learner = SupSup(model, self.mask_train)
        acc = metrics.AccuracyMatrix(n) if matrix else None
        diag, cached = [], 0
        for i, t in enumerate(stream_tasks):
            key = self.mask_key(i, t)
            found = self.cache.get(key)
            if found is not None:
                for name, layer in supermask_layers(model):
                    layer.load_mask(i, found[name])
                cached += 1
            else:
                batches = self.tasks.stream.train(t, self.mask_train.batch_size, seed=self.data_seed(i, t), device=self.device)
                learner.learn(i, batches, progress=self.cfg.progress, desc=f"{label} {i + 1}/{n}")
                self.cache.put(key, masks.task_masks(model, [i]), {"task": self.tasks.stream.describe(t), "slot": i})
            if acc is not None:
                acc.measure_row(
                    i, lambda j: metrics.accuracy(model, self.test_batches(stream_tasks[j]), task=j), tasks=self.matrix_row(i, n)
                )
                diag.append(acc.R[i][i])
            else:
                diag.append(metrics.accuracy(model, self.test_batches(t), task=i))
            self.log(f"{label} mask {i + 1}/{n} ({self.tasks.stream.describe(t)}): {diag[-1]:.4f}")
        info = {"task_acc": diag, "mean_acc": sum(diag) / n, "masks_from_cache": cached}
        if acc is not None:
            info["acc_matrix"] = acc.to_dict()
        return model, info

    def matrix_row(self, i: int, n: int) -> list[int]:
        """The tasks the accuracy matrix measures after learning task i of n: all learned so far
        after every `matrix_every`-th task and the last, else only task i (the diagonal): the full
        matrix costs n²/2 evaluations, too many at hundreds of tasks."""
        every = self.cfg.matrix_every
        return list(range(i + 1)) if (i + 1) % every == 0 or i == n - 1 else [i]

    def mask_key(self, slot: int, task: int) -> str:
        # the model slot fixes the score initialisation seed; the data seed follows slot and task
        return MaskCache.key(
            backbone=bb.to_dict(self.backbone),
            train=dataclasses.asdict(self.mask_train),
            stream=self.tasks.stream.name,
            task=self.tasks.stream.describe(task),
            slot=slot,
            data=self.results["data"]["source"],
            data_seed=self.data_seed(slot, task),
        )

    def build_basis(self) -> dict[str, PackedMasks]:
        cfg, k = self.cfg, self.cfg.basis_size
        if cfg.basis == "random":
            return basis_mod.random_basis(self.backbone, k, seed=derive_seed(cfg.seed, "basis"))
        if cfg.basis == "heterogeneous":
            model, info = self.learn_masks(self.tasks.basis, "basis", matrix=False)
            self.results["supsup"]["basis_task_acc"] = info["task_acc"]
        else:  # homogeneous: K masks of basis task 0, each from its own slot (score seed) and data order
            model, info = self.learn_masks([self.tasks.basis[0]] * k, "homogeneous basis", matrix=False)
            self.results["supsup"]["homogeneous_mask_acc"] = info["task_acc"]
        self.basis_model = model
        return masks.task_masks(model)

    # ---- ImpressLearn
    def learn_alphas(self, basis) -> torch.nn.Module:
        cfg, n = self.cfg, len(self.tasks.new)
        model = bb.impress_model(self.backbone, basis, per_channel=cfg.per_channel, num_tasks=n, hybrid=cfg.hybrid).to(
            self.device
        )
        learner = ImpressLearn(model, self.alpha_train, lam=cfg.lam, quant=cfg.alpha_quant())
        acc = metrics.AccuracyMatrix(n)
        fits, smallest = [], []
        for i, t in enumerate(self.tasks.new):
            key = f"alpha-{i:04d}"
            done = self.units.done(key, shared=False) if self.units is not None else None
            if done is not None:  # fitted by an earlier start of this run
                tensors, info = done
                load_task_state(model, i, tensors)
                learner.finish(i)
                fits.append(info)
            else:
                batches = self.alpha_batches(t, seed=self.data_seed(10_000 + i, t))
                rec = learner.learn(i, batches, progress=cfg.progress, desc=f"alpha {i + 1}/{n}", finish=False)
                fits.append({**rec["alpha_phase"], "seconds": round(rec["seconds"], 1)})
                if self.units is not None:  # saved as it trained (a unit), then finished
                    self.units.finish(key, False, task_state(model, i), fits[-1])
                learner.finish(i)
            smallest.append(learner.task_bytes(i)["smallest"])  # as stored: coded codes, a hybrid's coded mask
            acc.measure_row(
                i, lambda j: metrics.accuracy(model, self.test_batches(self.tasks.new[j]), task=j), tasks=self.matrix_row(i, n)
            )
            self.log(f"ImpressLearn task {i + 1}/{n} ({self.tasks.stream.describe(t)}): {acc.R[i][i]:.4f}")
            diag = [acc.R[j][j] for j in range(i + 1)]
            self.results["impresslearn"].update(
                new_task_acc=diag, mean_acc=sum(diag) / len(diag), fits=fits, smallest_bytes_per_task=smallest
            )
            self.results["storage"]["impresslearn_smallest"] = sum(smallest) / len(smallest)
            self.save()
        self.results["impresslearn"]["acc_matrix"] = acc.to_dict()
        self.results["impresslearn"]["favoured_masks"] = [alpha_mod.favoured_masks(model, i) for i in range(n)]
        return model

    def alpha_batches(self, task: int, seed: int):
        return self.tasks.stream.train(task, self.alpha_train.batch_size, seed=seed, device=self.device)

    def run_basis_gn(self, basis) -> list:
        out = []
        for b in range(self.cfg.basis_gn):
            model = bb.impress_model(self.backbone, basis, per_channel=self.cfg.per_channel).to(self.device)
            t = self.tasks.basis[b]
            res = alpha_mod.basis_gn(
                model,
                0,
                self.alpha_batches(t, seed=self.data_seed(20_000 + b, t)),
                self.alpha_train,
                b,
                lam=self.cfg.lam,
                progress=self.cfg.progress,
            )
            res["acc"] = metrics.accuracy(model, self.test_batches(t), task=0)
            out.append(res)
            self.log(f"basis-GN basis task {b}: favoured {res['favoured']} (found={res['found']}), acc {res['acc']:.4f}")
        return out

    # ---- task inference
    def run_gn(self, model: torch.nn.Module, label: str) -> list:
        cfg, out = self.cfg, []
        # What holding every task for inference costs: the packed bases (and alphas) of the model
        # against SupSup's stacked float masks, one float per weight and mask.
        layers = impress_layers(model)
        memory = {
            "packed_bytes": sum(m.basis.nbytes + m.alphas.numel() * m.alphas.element_size() for _, m in layers),
            "dense_float_masks_bytes": sum(m.basis.num_masks * m.weight.numel() * 4 for _, m in layers),
        }
        self.results.setdefault("task_inference_memory", {})[label] = memory
        if "G" in cfg.gn_objectives and self.backbone.outputs <= self.backbone.classes:
            self.log("GN objective G skipped: it needs superfluous outputs (--outputs 100, or --preset supsup)")
        for objective in cfg.gn_objectives:
            if objective == "G" and self.backbone.outputs <= self.backbone.classes:
                continue
            # Mixed batches need a task per sample in every task-aware module (design.md §2.6).
            per_sample = per_sample_supported(model)
            if "oneshot" in cfg.gn_methods:  # why one-shot finds the task or not (design.md §2.6)
                diag = inference.diagnose_superposition(
                    model,
                    lambda t: self.test_batches(t, 128, limit=cfg.gn_batches, shuffle=True),
                    self.tasks.new,
                    objective=objective,
                    classes=self.backbone.classes,
                )
                self.results.setdefault("task_inference_diagnosis", {}).setdefault(label, []).append(diag)
                self.log(
                    f"GN over {label} tasks, {objective}: the superposition classifies "
                    f"{diag['superposition_acc']:.4f}, output std {diag['superposition_output_std']:.3f} "
                    f"against the tasks' {diag['task_output_std']:.3f}; the true task's gradient is the most "
                    f"negative for {diag['true_task_most_negative']:.4f} of batches, the most positive for "
                    f"{diag['true_task_most_positive']:.4f}"
                )
            for method in cfg.gn_methods:
                for inp in cfg.gn_inputs:
                    if inp == "mixed" and method == "binary":
                        self.log(
                            "GN binary search skipped for mixed batches: it halves the candidates of a whole "
                            "batch (per sample: oneshot or exhaustive)"
                        )
                        continue
                    if inp == "mixed" and not per_sample:
                        self.log(
                            "GN on mixed batches skipped: per-sample inference needs a task per sample, which "
                            "some of this model's modules cannot take"
                        )
                        continue
                    start = time.time()
                    batches = lambda t: self.test_batches(t, 128, limit=cfg.gn_batches, shuffle=True)  # noqa: E731
                    total = len(batches(self.tasks.new[0])) * len(self.tasks.new)
                    with tqdm(
                        total=total,
                        desc=f"GN {label} {objective} {method} {inp}",
                        leave=False,
                        disable=None if cfg.progress is None else not cfg.progress,
                        mininterval=1.0,
                    ) as bar:
                        res = inference.task_inference(
                            model,
                            batches,
                            self.tasks.new,
                            objective=objective,
                            method=method,
                            classes=self.backbone.classes,
                            inputs=inp,
                            progress=lambda: bar.update(1),
                        )
                    res["seconds"] = round(time.time() - start, 1)
                    out.append(res)
                    unit = f"{res['samples']} mixed samples" if inp == "mixed" else f"{res['batches']} batches"
                    self.log(
                        f"GN over {label} tasks, {objective} {method} from {inp}: task found for "
                        f"{res['task_acc']:.4f} of {unit}, accuracy {res['acc']:.4f}"
                    )
                    self.results["task_inference"][label] = out
                    self.save()
        return out

    # ---- storage
    def storage(self, supsup_model) -> dict:
        cfg = self.cfg
        shapes = bb.weight_shapes(bb.network(self.backbone))
        density = self.backbone.density
        if self.backbone.mask == "threshold":  # learned density: measure it from the stored masks
            kept = sum(int(ops.unpack_masks(p).sum()) for p in masks.task_masks(supsup_model).values())
            density = kept / (storage.weight_count(shapes) * len(self.tasks.new))
            # threshold masks have no density setting: say so where the backbone is recorded
            self.results["backbone"].update(density=None, measured_density=density)
        max_tasks = storage.BENCHMARK_MAX_TASKS[cfg.benchmark]
        hybrid_layer = bb.hybrid_layer_name(bb.network(self.backbone), cfg.hybrid)
        imp = storage.impress_bytes(
            shapes,
            cfg.basis_size,
            per_channel=cfg.per_channel,
            max_tasks=max_tasks,
            hybrid_layer=hybrid_layer,
            quant=cfg.alpha_quant(),
        )
        # the learned masks in their smallest exact form (coded for cold storage, §2.8), per task
        learner = SupSup(supsup_model, self.mask_train)
        coded = [learner.task_bytes(i)["smallest"] for i in range(len(self.tasks.new))]
        return storage_record(
            storage.supsup_bytes_packed(shapes),
            storage.supsup_bytes_indices(shapes, density),
            imp,
            max_tasks,
            supsup_coded=sum(coded) / len(coded),
            supsup_coded_per_task=coded,
            supsup_density=density,
            impresslearn_alpha_bytes=imp.alpha_bytes,
            impresslearn_hybrid_mask_bytes=imp.mask_bytes,
        )

    # ---- everything
    def run(self) -> dict:
        try:
            return self._run()
        finally:
            self.release_output()

    def _run(self) -> dict:
        cfg = self.cfg
        self.save()  # the results file is this run's from now on: a restart after a kill resumes it
        if cfg.methods:
            self.log(
                f"{cfg.benchmark}: {len(self.tasks.new)} tasks, methods {', '.join(cfg.methods)}; "
                f"backend {ops.backend_for(self.device)}"
            )
            run_methods(self)
            self.results["status"] = "done"
            self.save()
            return self.results
        method = (
            f"basis {cfg.basis} K={cfg.basis_size}, {granularity(cfg.per_channel)}{bb.hybrid_label(cfg.hybrid)}"
            if cfg.impresslearn
            else "SupSup only"
        )
        self.log(f"{cfg.benchmark}: {len(self.tasks.new)} new tasks, {method}; backend {ops.backend_for(self.device)}")
        self.results["supsup"] = {}
        self.results["impresslearn"] = {
            "basis": cfg.basis,
            "basis_size": cfg.basis_size,
            "per_channel": cfg.per_channel,
            "hybrid": cfg.hybrid,
            "lam": cfg.lam,
        }
        self.results["task_inference"] = {}
        supsup, info = self.learn_masks(self.tasks.new, "SupSup", matrix=True)
        self.results["supsup"].update(info)
        self.results["storage"] = self.storage(supsup)
        self.save()

        self.measure_incorrect_masks(supsup, self.tasks.new[: cfg.incorrect_tasks], self.test_batches)
        self.save()

        if cfg.gn_objectives and "supsup" in cfg.gn_on:
            self.run_gn(inference.superposition_model(self.backbone, supsup), "supsup")

        if cfg.impresslearn:
            basis = self.build_basis()
            self.save()
            impress = self.learn_alphas(basis)
            if cfg.basis_gn:
                self.results["basis_gn"] = self.run_basis_gn(basis)
                self.save()
            if cfg.gn_objectives and "impresslearn" in cfg.gn_on:
                # a hybrid model's mask layer takes no mixture: its superposition holds the tasks'
                # masks of that layer as a basis with one-hot alphas
                self.run_gn(inference.superposition_model(self.backbone, impress) if cfg.hybrid else impress, "impresslearn")
        else:
            self.results["impresslearn"].update(new_task_acc=[], mean_acc=None, skipped=True)
        self.results["status"] = "done"
        self.save()
        return self.results


def run_experiment(cfg: RunConfig, out: str | None = None, command: str | None = None) -> dict:
    return Runner(cfg, out, command).run()
