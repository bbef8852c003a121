"""What every benchmark shares: the cases (shapes, mask counts, sizes), their inputs, made directly
as random packed words (never through dense masks), the methods compared on them, and the call
each method times.

Used by the pytest-benchmark suites (bench/test_<primitive>.py, with bench/conftest.py), by
bench_native.py (peak memory per case), by the Triton scripts run_triton.py drives
(bench_*_triton.py: shapes and inputs) and by bench_memory.py (random bases).

Methods, on the same inputs of a case:

    reference, native, triton   the backend, through impresslearn.ops under backend(name)
    native-<variant>            the native combine with one inner loop forced (avx512, avx2, generic, lut)
    triton-<path>               a Triton path forced: combine's lut / shift_add, impress_linear's
                                fused / combine_gemm
    <method>-pack               popup_pack (packed words) instead of popup_mask
    dense_supsup, dense_matvec  impresslearn.dense: stacked float masks, SupSup's broadcast or one
                                matrix-vector product (their alpha gradients: the same arithmetic)
    floor                       F.linear with a precomputed W_eff (what a fused linear must approach)
    bank                        every task's dense effective weight built beforehand (the task bank the
                                library used before every_task_linear / task_row_linear), then GEMMs
    torch_sort, torch_topk, torch_kthvalue   top-k selections (dense.select_*; sort is SupSup's)

CPU methods run on CPU tensors; with CUDA, the GPU's methods (triton, and "-cuda" copies of the
reference, dense and torch ones) too. Without CUDA Triton runs in its interpreter, on CPU tensors:
far too slow to time, so the suites run it only in quick mode.

Selections of the suites (params): by default a case or two per primitive, the library's kernel
(native on the CPU, Triton on a GPU) against the dense baselines, a few minutes on 2 cores; the
full grid (`pytest bench --full-grid`) every case and method above. Quick mode
(IMPRESSLEARN_BENCH_QUICK=1, or `pytest bench --quick`): tiny shapes, every method, to show in CI
that every case and method still runs.

Each result is checked (check) against a float64 result, within what rounding in the benchmark's
dtype allows (Exact: the rule is written there), and each case group is summarised as one line,
the kernel's speed-up over the best dense baseline (speedup).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

QUICK = os.environ.get("IMPRESSLEARN_BENCH_QUICK", "0") not in ("", "0")
CUDA = torch.cuda.is_available()

DENSITY = 0.1  # popup and LeNet masks, as in the edge-popup papers

# The layer of the CPU comparisons: a ResNet 3x3 conv of the last stage (2.4 M weights).
LAYER = (512, 512, 3, 3)
MASK_COUNTS = (1, 8, 32, 75, 250)
# The Triton scripts' combine layers: ResNet-50's, from the stem to the classifier.
RESNET50_SHAPES = {
    "conv1": (64, 3, 7, 7),
    "layer1.conv2": (64, 64, 3, 3),
    "layer1.conv3": (256, 64, 1, 1),
    "layer3.conv2": (256, 256, 3, 3),
    "layer4.conv2": (512, 512, 3, 3),
    "layer4.conv3": (2048, 512, 1, 1),
    "fc": (1000, 2048),
}
RESNET50_MASK_COUNTS = (1, 8, 32, 75, 256)
LINEAR_SHAPES = {"lenet.fc1": (300, 784), "resnet50.fc": (1000, 2048), "square4096": (4096, 4096)}
LINEAR_BATCHES = (1, 16, 128, 1024)
POPUP_SHAPES = {"1M": (1000, 1000), "2.4M": LAYER, "25M": (5000, 5000)}

# Tiny cases, odd sizes: the quick mode and the scripts' --smoke runs.
QUICK_SHAPE = (13, 3, 3, 3)
QUICK_MASK_COUNTS = (1, 9)
QUICK_LINEAR = (13, 40)
QUICK_POPUP_SHAPES = {"tiny": (37, 29)}


# --------------------------------------------------------------------------- inputs


def random_packed(t: int, shape, seed: int = 0, device="cpu"):
    """T random masks (each bit 1 with probability 1/2) made directly as packed words, padding bits 0."""
    from impresslearn import PackedMasks
    from impresslearn.format import num_words, rows_cols

    rows, cols = rows_cols(shape)
    g = torch.Generator().manual_seed(seed)
    words = torch.randint(-(2**31), 2**31, (t, rows, num_words(cols)), generator=g, dtype=torch.int64).to(torch.int32)
    if cols % 32:
        words[..., -1] &= (1 << (cols % 32)) - 1
    return PackedMasks(words, tuple(shape)).to(device)


def random_basis(net: nn.Module, masks: int) -> dict:
    """A random basis of `masks` packed masks for every Linear / Conv2d of `net`, by name."""
    layers = [(n, m) for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return {n: random_packed(masks, tuple(m.weight.shape), seed=i) for i, (n, m) in enumerate(layers)}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- cases


def _dims(shape) -> str:
    return "x".join(map(str, shape))


@dataclass(frozen=True)
class CombineCase:
    """combine / combine_grad_alpha of one weight with T masks."""

    shape: tuple
    masks: int
    per_channel: bool = False

    @property
    def id(self) -> str:
        return f"{_dims(self.shape)}-T{self.masks}" + ("-per_channel" if self.per_channel else "")

    @property
    def label(self) -> str:
        return f"{_dims(self.shape)} T={self.masks}" + (" per-channel alpha" if self.per_channel else "")


@dataclass(frozen=True)
class LinearCase:
    """impress_linear of a [rows, cols] weight with T masks on a batch of inputs."""

    rows: int
    cols: int
    masks: int
    batch: int

    @property
    def id(self) -> str:
        return f"{self.rows}x{self.cols}-T{self.masks}-batch{self.batch}"

    @property
    def label(self) -> str:
        return f"{self.rows}x{self.cols} T={self.masks} batch {self.batch}"


@dataclass(frozen=True)
class PopupCase:
    """The top-`density` mask of |scores| of a named size."""

    size: str
    shape: tuple
    density: float = DENSITY

    @property
    def id(self) -> str:
        return f"{self.size}-density{self.density:g}"

    @property
    def label(self) -> str:
        return f"{self.size} scores ({_dims(self.shape)}) density {self.density:g}"

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class TaskCase:
    """every_task_linear / task_row_linear of a [rows, cols] weight among `tasks` SupSup tasks (a
    mask each), on a batch (task_row_linear: each row of a random task)."""

    rows: int
    cols: int
    tasks: int
    batch: int

    @property
    def id(self) -> str:
        return f"{self.rows}x{self.cols}-S{self.tasks}-batch{self.batch}"

    @property
    def label(self) -> str:
        return f"{self.rows}x{self.cols} among {self.tasks} tasks, batch {self.batch}"


@dataclass(frozen=True)
class StepCase:
    """One ImpressLearn training step (forward, cross-entropy, backward, RMSprop) of LeNet-300-100."""

    masks: int
    batch: int

    @property
    def id(self) -> str:
        return f"lenet300-100-T{self.masks}-batch{self.batch}"

    @property
    def label(self) -> str:
        return f"LeNet-300-100 T={self.masks} batch {self.batch}"


def cases(primitive: str, quick: bool = QUICK) -> list:
    """The cases of a primitive (combine, grad_alpha, impress_linear, impress_linear_backward, popup, lenet_step)."""
    if primitive in ("combine", "grad_alpha"):
        shape, counts = (QUICK_SHAPE, QUICK_MASK_COUNTS) if quick else (LAYER, MASK_COUNTS)
        return [CombineCase(shape, t) for t in counts]
    if primitive in ("impress_linear", "impress_linear_backward"):
        if quick:
            return [LinearCase(*QUICK_LINEAR, 9, b) for b in (1, 70)]
        return [LinearCase(*LINEAR_SHAPES[n], t, b) for n in ("lenet.fc1", "resnet50.fc") for t in (8, 75) for b in (1, 16, 128)]
    if primitive == "popup":
        sizes = QUICK_POPUP_SHAPES if quick else {k: POPUP_SHAPES[k] for k in ("2.4M", "25M")}
        return [PopupCase(name, shape) for name, shape in sizes.items()]
    if primitive == "lenet_step":
        return [StepCase(3, 8)] if quick else [StepCase(100, 128)]
    if primitive in ("every_task_linear", "task_row_linear"):
        if quick:
            return [TaskCase(*QUICK_LINEAR, 3, 5)]
        return [TaskCase(300, 784, 20, 128), TaskCase(300, 784, 250, 16), TaskCase(1000, 2048, 20, 16)]
    raise ValueError(f"unknown primitive {primitive!r}")


def find_case(primitive: str, case_id: str, quick: bool = QUICK):
    for case in cases(primitive, quick):
        if case.id == case_id:
            return case
    raise KeyError(f"no {primitive} case {case_id!r} (quick={quick})")


# --------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class Method:
    name: str  # e.g. "native", "native-avx2", "triton-lut", "dense_supsup", "torch_topk"
    device: str = "cpu"

    @property
    def id(self) -> str:
        """The name, with "-cuda" for a CPU method run on the GPU (Triton runs only there, or interpreted)."""
        return self.name if self.device == "cpu" or self.backend == "triton" else f"{self.name}-{self.device}"

    @property
    def backend(self) -> str | None:
        """The impresslearn backend the method runs on (None for the dense and torch baselines)."""
        head = self.name.split("-")[0]
        return head if head in ("reference", "native", "triton") else None

    @property
    def variant(self) -> str | None:
        parts = self.name.split("-", 1)
        return parts[1] if self.backend and len(parts) == 2 else None

    @property
    def interpreted(self) -> bool:
        return self.backend == "triton" and self.device == "cpu"


TESTS = Path(__file__).resolve().parents[1] / "tests"


def native_variants() -> list[str]:
    """The native combine's inner loops this CPU runs: tests/cases.py's runnable_variants, the one
    discovery the kernel tests and the benchmarks share."""
    if str(TESTS) not in sys.path:
        sys.path.append(str(TESTS))  # last: nothing there shadows a module of bench/ or an installed one
    from cases import runnable_variants

    return runnable_variants()


_BASELINES = {
    "combine": ["dense_supsup", "dense_matvec"],
    "grad_alpha": ["dense_supsup", "dense_matvec"],
    "impress_linear": ["floor", "dense_supsup", "dense_matvec"],
    "impress_linear_backward": ["floor", "dense_supsup", "dense_matvec"],
    "popup": ["torch_sort", "torch_topk", "torch_kthvalue"],
    "lenet_step": ["dense_supsup", "dense_matvec"],
    "every_task_linear": ["bank"],
    "task_row_linear": ["bank"],
}
_TRITON_PATHS = {"combine": ["lut", "shift_add"], "impress_linear": ["fused", "combine_gemm"]}


def methods(primitive: str, variants: bool = True) -> list[Method]:
    """Every method of a primitive on this machine: the available backends (with their variants
    when `variants`), the baselines on the CPU, and on the GPU when there is one."""
    import impresslearn

    available = impresslearn.available_backends()
    on_cpu = ["reference"] + (["native"] if "native" in available else [])
    if primitive == "combine" and variants and "native" in available:
        on_cpu += [f"native-{v}" for v in native_variants()]
    if primitive == "popup":
        on_cpu += [f"{b}-pack" for b in on_cpu]
    baselines = _BASELINES[primitive]
    out = [Method(m) for m in on_cpu + baselines]
    if "triton" in available:
        tri = ["triton"] + [f"triton-{p}" for p in _TRITON_PATHS.get(primitive, []) if variants]
        if primitive == "popup":
            tri.append("triton-pack")
        device = "cuda" if CUDA else "cpu"  # without CUDA: interpreted
        out += [Method(m, device) for m in tri]
    if CUDA:
        out += [Method(m, "cuda") for m in ["reference"] + baselines]
    return out


# --------------------------------------------------------------------------- the calls


def _on(backend: str | None, fn: Callable) -> Callable:
    if backend is None:
        return fn
    import impresslearn

    def run():
        with impresslearn.backend(backend):
            return fn()

    return run


def _native_variant(name: str, fn: Callable) -> Callable:
    from impresslearn import native

    def run():
        previous = native.set_variant(name)
        try:
            return fn()
        finally:
            native.set_variant(previous)

    return run


def _synced(fn: Callable, device: str) -> Callable:
    """On a GPU, a call is timed until its kernels finish."""
    if device != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


TRITON_COMBINE_PATHS = {"lut": dict(lut_min_masks=1, lut_per_channel_min_cols=1), "shift_add": dict(lut_min_masks=1 << 30)}
TRITON_LINEAR_PATHS = {"fused": dict(fused_max_batch=1 << 30), "combine_gemm": dict(fused_max_batch=0)}


def combine_inputs(case: CombineCase, device="cpu"):
    """(weight, packed, alpha, grad) of a combine case."""
    g = _gen(1)
    weight = torch.randn(case.shape, generator=g)
    alpha_shape = (case.masks, case.shape[0]) if case.per_channel else (case.masks,)
    alpha = torch.randn(alpha_shape, generator=g) / case.masks
    grad = torch.randn(case.shape, generator=g)
    return weight.to(device), random_packed(case.masks, case.shape, device=device), alpha.to(device), grad.to(device)


def setup_combine(case: CombineCase, method: Method, grad_alpha: bool = False) -> Callable:
    """The call of `method` on the case's inputs: combine, or its alpha gradient."""
    from impresslearn import dense, ops

    weight, packed, alpha, grad = combine_inputs(case, method.device)
    if method.backend is None:  # a dense baseline: the masks as a float stack only
        stacked = dense.stack_masks(packed)
        del packed
        if grad_alpha:
            fn = dense.combine_dense_grad_alpha if method.name == "dense_supsup" else dense.combine_matvec_grad_alpha
            return _synced(lambda: fn(grad, weight, stacked, alpha), method.device)
        fn = dense.combine_dense if method.name == "dense_supsup" else dense.combine_matvec
        return _synced(lambda: fn(weight, stacked, alpha), method.device)
    if grad_alpha:
        call = lambda: ops._combine_grad_alpha(grad, weight, packed.words, alpha)  # noqa: E731
    elif method.backend == "triton" and method.variant:
        from impresslearn import kernels

        path = TRITON_COMBINE_PATHS[method.variant]
        return _synced(lambda: kernels.combine(weight, packed.words, alpha, **path), method.device)
    else:
        call = lambda: ops.combine(weight, packed, alpha)  # noqa: E731
    if method.backend == "native" and method.variant:
        call = _native_variant(method.variant, call)
    return _synced(_on(method.backend, call), method.device)


def setup_grad_alpha(case: CombineCase, method: Method) -> Callable:
    return setup_combine(case, method, grad_alpha=True)


def linear_inputs(case: LinearCase, device="cpu"):
    """(x, weight, packed, alpha) of a linear case (per-layer alpha)."""
    g = _gen(2)
    weight = torch.randn(case.rows, case.cols, generator=g)
    alpha = torch.rand(case.masks, generator=g) / case.masks
    x = torch.randn(case.batch, case.cols, generator=g)
    return (x.to(device), weight.to(device), random_packed(case.masks, (case.rows, case.cols), device=device), alpha.to(device))


def setup_impress_linear(case: LinearCase, method: Method, backward: bool = False) -> Callable:
    """The forward (or, with `backward`, forward and the gradients of x and alpha) of `method`."""
    from impresslearn import dense, ops

    x, weight, packed, alpha = linear_inputs(case, method.device)
    if backward:
        x, alpha = x.requires_grad_(), alpha.requires_grad_()

    def grads(out, wrt):
        return torch.autograd.grad(out, wrt, torch.ones_like(out))

    if method.name == "floor":
        with torch.no_grad():
            w_eff = ops.combine(weight, packed, alpha)
        if backward:
            w_eff.requires_grad_()
            return _synced(lambda: grads(F.linear(x, w_eff), (x, w_eff)), method.device)
        return _synced(lambda: F.linear(x, w_eff), method.device)
    if method.backend is None:
        stacked = dense.stack_masks(packed)
        del packed
        combine = dense.combine_dense if method.name == "dense_supsup" else dense.combine_matvec
        if backward:
            return _synced(lambda: grads(F.linear(x, combine(weight, stacked, alpha)), (x, alpha)), method.device)
        return _synced(lambda: F.linear(x, combine(weight, stacked, alpha)), method.device)
    if method.backend == "triton" and method.variant:  # forward only: a path of the kernel forced
        from impresslearn import kernels

        path = TRITON_LINEAR_PATHS[method.variant]
        return _synced(lambda: kernels.impress_linear(x, weight, packed.words, alpha, None, **path), method.device)
    if backward:
        call = lambda: grads(ops.impress_linear(x, weight, packed, alpha), (x, alpha))  # noqa: E731
    else:
        call = lambda: ops.impress_linear(x, weight, packed, alpha)  # noqa: E731
    return _synced(_on(method.backend, call), method.device)


def setup_impress_linear_backward(case: LinearCase, method: Method) -> Callable:
    return setup_impress_linear(case, method, backward=True)


def task_inputs(case: TaskCase, device="cpu"):
    """(x, weight, packed masks (one per task), the task of each row)."""
    g = _gen(3)
    weight = torch.randn(case.rows, case.cols, generator=g)
    x = torch.randn(case.batch, case.cols, generator=g)
    task = torch.randint(0, case.tasks, (case.batch,), generator=g)
    packed = random_packed(case.tasks, (case.rows, case.cols), device=device)
    return x.to(device), weight.to(device), packed, task.to(device)


def _setup_tasks(case: TaskCase, method: Method, rows: bool) -> Callable:
    from impresslearn import ops

    x, weight, packed, task = task_inputs(case, method.device)
    if method.name == "bank":  # every task's weight built beforehand, outside the timed call
        bank = torch.stack([ops.masked_weight(weight, packed[s]) for s in range(case.tasks)])
        if not rows:
            return _synced(lambda: torch.matmul(x, bank.transpose(1, 2)), method.device)

        def grouped():
            out = x.new_empty(case.batch, case.rows)
            for s in torch.unique(task).tolist():
                pick = task == s
                out[pick] = x[pick] @ bank[s].T
            return out

        return _synced(grouped, method.device)
    if rows:
        call = lambda: ops.task_row_linear(x, weight, packed, None, task)  # noqa: E731
    else:
        call = lambda: ops.every_task_linear(x, weight, packed, None)  # noqa: E731
    return _synced(_on(method.backend, call), method.device)


def setup_every_task_linear(case: TaskCase, method: Method) -> Callable:
    return _setup_tasks(case, method, rows=False)


def setup_task_row_linear(case: TaskCase, method: Method) -> Callable:
    return _setup_tasks(case, method, rows=True)


def popup_inputs(case: PopupCase, device="cpu"):
    """(|scores|, k) of a popup case."""
    from impresslearn import ops

    scores = torch.randn(case.shape, generator=_gen(3)).abs()
    return scores.to(device), ops.popup_k(case.numel, case.density)


def pack_of(mask: torch.Tensor) -> torch.Tensor:
    """The packed words of a popup mask."""
    from impresslearn.format import pack_bits, rows_cols

    return pack_bits(mask.reshape(1, *rows_cols(mask.shape)) != 0)


def setup_popup(case: PopupCase, method: Method) -> Callable:
    from impresslearn import dense, ops

    scores, k = popup_inputs(case, method.device)
    if method.backend is None:
        select = {"torch_sort": dense.select_sort, "torch_topk": dense.select_topk, "torch_kthvalue": dense.select_kthvalue}[
            method.name
        ]
        return _synced(lambda: select(scores, k), method.device)
    op = ops.popup_pack if method.variant == "pack" else ops.popup_mask
    return _synced(_on(method.backend, lambda: op(scores, case.density)), method.device)


def setup_lenet_step(case: StepCase, method: Method) -> Callable:
    import impresslearn
    from impresslearn import dense, models

    net = models.lenet_300_100()
    model = impresslearn.convert(net, "impress", basis=random_basis(net, case.masks), density=DENSITY, seed=0)
    if method.backend is None:
        dense.densify(model, combine=dense.combine_dense if method.name == "dense_supsup" else dense.combine_matvec)
    model.to(method.device)
    g = _gen(4)
    x = torch.randn(case.batch, 1, 28, 28, generator=g).to(method.device)
    y = torch.randint(0, 10, (case.batch,), generator=g).to(method.device)
    opt = torch.optim.RMSprop([p for p in model.parameters() if p.requires_grad], lr=0.002)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    return _synced(_on(method.backend, step), method.device)


SETUPS = {
    "combine": setup_combine,
    "grad_alpha": setup_grad_alpha,
    "impress_linear": setup_impress_linear,
    "impress_linear_backward": setup_impress_linear_backward,
    "popup": setup_popup,
    "lenet_step": setup_lenet_step,
    "every_task_linear": setup_every_task_linear,
    "task_row_linear": setup_task_row_linear,
}


def setup(primitive: str, case, method: Method) -> Callable:
    """The call that times `method` on `case` (inputs built now, on the method's device)."""
    return SETUPS[primitive](case, method)


@dataclass
class Param:
    """One (case, method) of a primitive, as the suites parametrize it."""

    primitive: str
    case: object
    method: Method
    extra: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.case.id}-{self.method.id}"

    @property
    def group(self) -> str:
        """Methods side by side: one table per primitive, case and device kind."""
        where = "cuda" if self.method.device == "cuda" else "cpu"
        return f"{self.primitive}[{self.case.id}] {where}"


# The default selection of the suites: what a user comparing the library with the dense
# alternatives needs first, timed in a few minutes on 2 cores. The sizes of the CPU tables in
# docs/native.md (T = 75 masks on ResNet's last 3x3 conv, LeNet's training step), the classifier
# layers, and a small T beside the large one.
DEFAULT_CASES = {
    "combine": ("512x512x3x3-T8", "512x512x3x3-T75"),
    "grad_alpha": ("512x512x3x3-T8", "512x512x3x3-T75"),
    "impress_linear": ("300x784-T75-batch128", "1000x2048-T75-batch1"),
    "impress_linear_backward": ("300x784-T75-batch128", "1000x2048-T75-batch1"),
    "popup": ("2.4M-density0.1",),
    "lenet_step": ("lenet300-100-T100-batch128",),
    "every_task_linear": ("300x784-S20-batch128",),
    "task_row_linear": ("300x784-S20-batch128", "300x784-S250-batch16"),
}


def kernel(device: str = "cpu") -> str:
    """The library's kernel on a device: the method the summaries compare with the dense baselines."""
    import impresslearn

    own = "triton" if device == "cuda" else "native"
    return own if own in impresslearn.available_backends() else "reference"


def dense_baselines(primitive: str) -> list[str]:
    """The dense (and torch) alternatives of a primitive: its baselines without the floor, which is
    a bound (F.linear on a W_eff made beforehand), not an alternative."""
    return [b for b in _BASELINES[primitive] if b != "floor"]


def in_default(primitive: str, method: Method) -> bool:
    """Whether the default selection times `method`: the kernel of its device (popup: both its
    outputs, mask and packed words) and the baselines; no reference, kernel variants or
    interpreted Triton (the full grid has them)."""
    own = kernel(method.device)
    mine = {own, f"{own}-pack"} if primitive == "popup" else {own}
    return method.name in mine or method.name in _BASELINES[primitive]


def params(primitive: str, quick: bool = QUICK, variants: bool = True, full: bool = False) -> list[Param]:
    """The (case, method) pairs a suite times: every one in quick mode (tiny cases) and with
    `full` (the full grid), else the default selection."""
    every = [Param(primitive, c, m) for c in cases(primitive, quick) for m in methods(primitive, variants)]
    if quick or full:
        return every
    return [p for p in every if p.case.id in DEFAULT_CASES[primitive] and in_default(primitive, p.method)]


# --------------------------------------------------------------------------- checking results

# How far a timed result may be from the float64 result (Exact.check). Two terms, as in the
# kernel tests' assert_within_torch_error (tests/cases.py):
#
#   |out - exact| <= REFERENCE_FACTOR * max|ref - exact| + ROUNDING_FACTOR * u * sqrt(K) * scale
#
# elementwise, where `ref` is the reference backend's result in the same dtype (what that dtype
# costs the reference: a method may be twice as far off), u the dtype's unit roundoff
# (torch.finfo(dtype).eps / 2: 6e-8 for float32), K the length of the reduction behind one
# element (T masks for combine, every weight of the layer for its alpha gradient, cols + T for a
# linear output) and `scale` the size of its partial sums: the root-sum-of-squares of the terms
# summed (what partial sums of terms of both signs grow to) or |exact| (what they grow to when
# the terms share a sign), whichever is larger. Under the random-rounding model of floating-point
# sums, a sum of K terms accumulates an error of about u * sqrt(K) * scale, in whatever order it
# adds them (blocked and pairwise orders do better). So the bound follows the dtype and the
# length of the sum instead of being one relative tolerance for every case: the alpha gradient
# of a 2.4 M-weight layer, terms of both signs that cancel to a few hundredths of their
# root-sum-of-squares, is off its float64 value by a few 1e-4 of itself in float32 (the
# reference, a matrix-vector product at T = 1), well within u * sqrt(K) * scale. Measured on
# every CPU method and case of the default selection, T = 1 and T = 250: at most 0.3 of the
# bound. Integer-valued results (popup's masks) must be exact.
REFERENCE_FACTOR = 2.0
ROUNDING_FACTOR = 2.0

CHUNK = 16  # masks unpacked at a time by the float64 oracles (16 x 2.4 M x 8 bytes = 300 MB)


@dataclass
class Exact:
    """One result of a case: its float64 value, the reference backend's result in the benchmark's
    dtype, and what bounds rounding errors there (see the rule above)."""

    exact: torch.Tensor  # float64
    sum_squares: torch.Tensor  # per element: the sum of the squares of the terms summed for it (float64)
    ref: torch.Tensor  # the reference backend's, in the dtype the methods compute in
    length: int  # K: the terms summed for one element

    def allowed(self, dtype: torch.dtype) -> torch.Tensor:
        """The largest error each element may have (in float64)."""
        u = torch.finfo(dtype).eps / 2
        ref_error = (self.ref.cpu().double() - self.exact).abs().max().item()
        scale = torch.maximum(self.sum_squares.sqrt(), self.exact.abs())
        return REFERENCE_FACTOR * ref_error + ROUNDING_FACTOR * u * math.sqrt(self.length) * scale

    def check(self, out: torch.Tensor, what: str = "result") -> None:
        assert out.shape == self.exact.shape, f"{what}: shape {tuple(out.shape)}, expected {tuple(self.exact.shape)}"
        assert out.dtype == self.ref.dtype, f"{what}: dtype {out.dtype}, expected {self.ref.dtype}"
        error = (out.cpu().double() - self.exact).abs()
        allowed = self.allowed(out.dtype)
        bad = ~(error <= allowed)  # NaN is bad too
        if bool(bad.any()):
            i = int((error - allowed).nan_to_num(math.inf).argmax())
            raise AssertionError(
                f"{what}: {int(bad.sum())} of {out.numel()} elements beyond rounding, e.g. element {i}: "
                f"error {error.flatten()[i].item():.3g} > allowed {allowed.flatten()[i].item():.3g} "
                f"(K = {self.length}, exact {self.exact.flatten()[i].item():.6g})"
            )


def _mask_chunks(words: torch.Tensor, cols: int):
    """(first mask, float64 masks [c, rows, cols]) for CHUNK masks at a time."""
    from impresslearn.format import unpack_bits

    for t0 in range(0, words.shape[0], CHUNK):
        yield t0, unpack_bits(words[t0 : t0 + CHUNK].cpu(), cols).double()


def _sum_masks(m: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Σ_t alpha_t m_t for float64 masks [c, rows, cols] and alpha [c] or [c, rows] (a matrix product)."""
    c, rows, cols = m.shape
    if alpha.dim() == 1:
        return (alpha @ m.reshape(c, -1)).reshape(rows, cols)
    return (alpha.unsqueeze(-1) * m).sum(0)


def _per_mask(m: torch.Tensor, x: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """Σ m_t ⊙ x per mask [c] (per mask and row [c, rows] for per-channel alpha)."""
    c, rows, cols = m.shape
    return (m * x).sum(2) if per_channel else m.reshape(c, -1) @ x.reshape(-1)


def combine_exact(weight, words, alpha) -> tuple[torch.Tensor, torch.Tensor]:
    """(W ⊙ Σ_t alpha_t M_t, W² ⊙ Σ_t alpha_t² M_t) in float64: the value and its terms' sum of squares."""
    from impresslearn.format import rows_cols

    rows, cols = rows_cols(weight.shape)
    a = alpha.cpu().double()
    coef, coef_sq = torch.zeros(rows, cols, dtype=torch.float64), torch.zeros(rows, cols, dtype=torch.float64)
    for t0, m in _mask_chunks(words, cols):
        at = a[t0 : t0 + m.shape[0]]
        coef += _sum_masks(m, at)
        coef_sq += _sum_masks(m, at * at)
    w = weight.cpu().double().reshape(rows, cols)
    return (w * coef).reshape(weight.shape), (w * w * coef_sq).reshape(weight.shape)


def grad_alpha_exact(grad, weight, words, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ G ⊙ W ⊙ M_t, Σ (G ⊙ W)² ⊙ M_t) in float64, per mask (and row, for per-channel alpha)."""
    from impresslearn.format import rows_cols

    rows, cols = rows_cols(weight.shape)
    gw = grad.cpu().double().reshape(rows, cols) * weight.cpu().double().reshape(rows, cols)
    parts = [(_per_mask(m, gw, per_channel), _per_mask(m, gw * gw, per_channel)) for _, m in _mask_chunks(words, cols)]
    return torch.cat([v for v, _ in parts]), torch.cat([s for _, s in parts])


def expected(primitive: str, case):
    """What a case's results are checked against (check): a list of Exact per output of the call;
    popup: the reference's mask; lenet_step: None (its loss is checked to be finite)."""
    if primitive == "lenet_step":
        return None
    ref = setup(primitive, case, Method("reference"))()
    if primitive == "popup":
        return ref
    if primitive in ("combine", "grad_alpha"):
        weight, packed, alpha, grad = combine_inputs(case)
        if primitive == "combine":
            return [Exact(*combine_exact(weight, packed.words, alpha), ref, length=case.masks)]
        value, squares = grad_alpha_exact(grad, weight, packed.words, case.per_channel)
        return [Exact(value, squares, ref, length=weight[0].numel() if case.per_channel else weight.numel())]
    if primitive in ("every_task_linear", "task_row_linear"):
        # y = x W_sᵀ with W_s = W ⊙ M_s: terms x_j W_ij, K = cols
        x, weight, packed, task = task_inputs(case)
        x = x.double()
        ws = [combine_exact(weight, packed.words[s : s + 1], torch.ones(1))[0] for s in range(case.tasks)]
        if primitive == "every_task_linear":
            value = torch.stack([x @ w.T for w in ws])
            squares = torch.stack([(x * x) @ (w * w).T for w in ws])
        else:
            value = torch.stack([x[i] @ ws[t].T for i, t in enumerate(task.tolist())])
            squares = torch.stack([(x[i] * x[i]) @ (ws[t] * ws[t]).T for i, t in enumerate(task.tolist())])
        return [Exact(value, squares, ref, length=case.cols)]
    x, weight, packed, alpha = linear_inputs(case)
    w_eff, _ = combine_exact(weight, packed.words, alpha)
    x = x.double()
    if primitive == "impress_linear":
        # y = x W_effᵀ: terms x_j W_ij, each W_ij a sum of T.
        return [Exact(x @ w_eff.T, (x * x) @ (w_eff * w_eff).T, ref, length=case.cols + case.masks)]
    # The gradients of sum(y): grad_x = 1 W_eff (terms W_ij over the rows); grad_alpha_t = Σ M_t ⊙ W ⊙ G
    # with G = 1ᵀ x (each G_ij a sum over the batch).
    ones = torch.ones(case.batch, case.rows, dtype=torch.float64)
    grad_w = ones.T @ x
    value, squares = grad_alpha_exact(grad_w, weight, packed.words, per_channel=False)
    return [
        Exact(ones @ w_eff, ones @ (w_eff * w_eff), ref[0], length=case.rows + case.masks),
        Exact(value, squares, ref[1], length=case.rows * case.cols + case.batch),
    ]


def check(param: Param, out, expect) -> None:
    """Assert that `out`, the result of `param`'s call, is right: within rounding of the float64
    result (Exact), popup's mask a top-k selection (the backends: the reference's own), the
    training step's loss finite."""
    primitive, case, method = param.primitive, param.case, param.method
    if primitive == "lenet_step":
        assert out.dim() == 0 and bool(torch.isfinite(out)), out
    elif primitive == "popup":
        _check_popup(case, method, out, expect)
    elif primitive == "impress_linear_backward":
        grad_x, grad_other = out
        expect[0].check(grad_x, "grad_x")
        if method.name != "floor":  # the floor's second gradient is that of W_eff
            expect[1].check(grad_other, "grad_alpha")
    else:
        expect[0].check(out, primitive)


def _check_popup(case: PopupCase, method: Method, out, ref: torch.Tensor) -> None:
    if method.variant == "pack":
        assert torch.equal(out.words.cpu(), pack_of(ref))
        return
    assert out.shape == case.shape
    if method.backend is not None:
        assert torch.equal(out.cpu(), ref)
        return
    # The torch selections: the top k, ties at the cut in their own order (kthvalue keeps them all).
    scores, k = popup_inputs(case)
    kept, dropped = scores[out.cpu() == 1], scores[out.cpu() == 0]
    assert (kept.numel() == k or method.name == "torch_kthvalue") and kept.numel() >= k
    assert dropped.numel() == 0 or kept.min() >= dropped.max()


# --------------------------------------------------------------------------- summaries


def _times(ratio: float) -> str:
    return f"{ratio:.1f}x" if ratio < 100 else f"{ratio:.0f}x"


def speedup(primitive: str, case, device: str, times: dict[str, float], failed=()) -> dict | None:
    """One case group in a line: the library's kernel against the fastest dense baseline, as a
    speed-up ratio (ratios, not times, compare across machines and loads). `times`: seconds of
    the fastest call of each method (by name) whose results passed their check: on a shared
    machine other work only adds time to a call, so the fastest is the least disturbed (medians
    there can differ tenfold from one run to the next). `failed`: the names of the methods whose
    check failed. None when the kernel was not run or no baseline was timed."""
    own = kernel(device)
    where = " (cuda)" if device == "cuda" else ""
    head = f"{primitive} {case.label}{where}: {own}"
    base = {m: t for m, t in times.items() if m in dense_baselines(primitive)}
    row = {"primitive": primitive, "case": case.id, "device": device, "kernel": own}
    if own in failed:
        return {**row, "line": f"{head} failed its check (no ratio)"}
    if own not in times or not base:
        return None
    best = min(base, key=base.get)
    ratio = base[best] / times[own]
    if _times(ratio) == _times(1 / ratio) == "1.0x":  # within 5 %: "1.0x slower" would say nothing
        faster = "about as fast as"
    else:
        faster = f"{_times(ratio)} faster than" if ratio >= 1 else f"{_times(1 / ratio)} slower than"
    line = f"{head} {faster} the best dense baseline ({best})"
    if "floor" in times:
        row["floor_ratio"] = times[own] / times["floor"]
        line += f", {_times(row['floor_ratio'])} the time of the floor (F.linear with W_eff made beforehand)"
    return {**row, "baseline": best, "speedup": ratio, "line": line}
