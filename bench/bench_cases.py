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
    torch_sort, torch_topk, torch_kthvalue   top-k selections (dense.select_*; sort is SupSup's)

CPU methods run on CPU tensors; with CUDA, the GPU's methods (triton, and "-cuda" copies of the
reference, dense and torch ones) too. Without CUDA Triton runs in its interpreter, on CPU tensors:
far too slow to time, so the suites run it only in quick mode.

Quick mode (IMPRESSLEARN_BENCH_QUICK=1, or `pytest bench --quick`): tiny shapes, to show in CI
that every case and method still runs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

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
    words = torch.randint(-2**31, 2**31, (t, rows, num_words(cols)), generator=g, dtype=torch.int64).to(torch.int32)
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
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class StepCase:
    """One ImpressLearn training step (forward, cross-entropy, backward, RMSprop) of LeNet-300-100."""

    masks: int
    batch: int

    @property
    def id(self) -> str:
        return f"lenet300-100-T{self.masks}-batch{self.batch}"


def cases(primitive: str, quick: bool = QUICK) -> list:
    """The cases of a primitive (combine, grad_alpha, impress_linear, impress_linear_backward, popup, lenet_step)."""
    if primitive in ("combine", "grad_alpha"):
        shape, counts = (QUICK_SHAPE, QUICK_MASK_COUNTS) if quick else (LAYER, MASK_COUNTS)
        return [CombineCase(shape, t) for t in counts]
    if primitive in ("impress_linear", "impress_linear_backward"):
        if quick:
            return [LinearCase(*QUICK_LINEAR, 9, b) for b in (1, 70)]
        return [LinearCase(*LINEAR_SHAPES[n], t, b) for n in ("lenet.fc1", "resnet50.fc") for t in (8, 75)
                for b in (1, 16, 128)]
    if primitive == "popup":
        sizes = QUICK_POPUP_SHAPES if quick else {k: POPUP_SHAPES[k] for k in ("2.4M", "25M")}
        return [PopupCase(name, shape) for name, shape in sizes.items()]
    if primitive == "lenet_step":
        return [StepCase(3, 8)] if quick else [StepCase(100, 128)]
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


def native_variants() -> list[str]:
    """The native combine's inner loops this CPU runs."""
    import impresslearn

    if "native" not in impresslearn.available_backends():
        return []
    from impresslearn import native

    out = []
    for name in ("generic", "lut", "avx2", "avx512"):
        try:
            previous = native.set_variant(name)
        except RuntimeError:  # not on this CPU
            continue
        native.set_variant(previous)
        out.append(name)
    return out


_BASELINES = {
    "combine": ["dense_supsup", "dense_matvec"],
    "grad_alpha": ["dense_supsup", "dense_matvec"],
    "impress_linear": ["floor", "dense_supsup", "dense_matvec"],
    "impress_linear_backward": ["floor", "dense_supsup", "dense_matvec"],
    "popup": ["torch_sort", "torch_topk", "torch_kthvalue"],
    "lenet_step": ["dense_supsup", "dense_matvec"],
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
    return (x.to(device), weight.to(device), random_packed(case.masks, (case.rows, case.cols), device=device),
            alpha.to(device))


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
        select = {"torch_sort": dense.select_sort, "torch_topk": dense.select_topk,
                  "torch_kthvalue": dense.select_kthvalue}[method.name]
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


SETUPS = {"combine": setup_combine, "grad_alpha": setup_grad_alpha, "impress_linear": setup_impress_linear,
          "impress_linear_backward": setup_impress_linear_backward, "popup": setup_popup,
          "lenet_step": setup_lenet_step}


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


def params(primitive: str, quick: bool = QUICK, variants: bool = True) -> list[Param]:
    return [Param(primitive, c, m) for c in cases(primitive, quick) for m in methods(primitive, variants)]
