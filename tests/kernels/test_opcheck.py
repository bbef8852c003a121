"""Every registered op through `torch.library.opcheck` (schema, fake tensors, autograd
registration), on every backend, driven by the primitive table (docs/design.md §5.1): each
primitive's custom op `ops._<primitive>` has cases here, and so does each op the native library
registers for its kernels. A primitive added to the table without cases fails
`test_every_primitive_has_opcheck_cases`."""

import pytest
import torch
from cases import Flavour, backend_grid, only, packed_inputs

import impresslearn
from impresslearn import format, ops
from impresslearn.primitives import PRIMITIVES


def _f64(device, shape, t, per_channel, seed=0):
    """(weight, words, alpha) in float64 with weight and alpha requiring grad."""
    weight, _, words, alpha = packed_inputs(shape, t, dtype=torch.float64, per_channel=per_channel, seed=seed, device=device)
    return weight.requires_grad_(), words, alpha.double().requires_grad_()


def _f32(device, shape, t):
    weight, _, words, alpha = packed_inputs(shape, t, device=device)
    return weight.requires_grad_(), words, alpha.requires_grad_()


def _scores(device, dtype=torch.float64):
    return torch.randn(7, 9, generator=torch.Generator().manual_seed(0), dtype=dtype).to(device)


def _weight_scores_grad(device, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    return tuple(torch.randn(7, 9, generator=g, dtype=dtype).to(device) for _ in range(3))


def _bits():
    return torch.rand(3, 5, 40, generator=torch.Generator().manual_seed(0)) < 0.5


def _combine(device):
    w, words, a = _f64(device, (5, 37), 3, False)
    pw, pwords, pa = _f64(device, (5, 37), 2, True, seed=1)
    return {"per_layer": (w, words, a), "per_channel": (pw, pwords, pa)}


def _combine_grad_alpha(device):
    w, words, a = _f64(device, (5, 37), 3, False)
    pw, pwords, pa = _f64(device, (5, 37), 2, True, seed=1)
    grad = torch.randn(5, 37, dtype=torch.float64).to(device)
    return {"per_layer": (grad, w.detach(), words, a.detach()), "per_channel": (grad, pw.detach(), pwords, pa.detach())}


def _impress_linear(device):
    w, words, a = _f64(device, (5, 37), 3, False)
    x = torch.randn(4, 37, dtype=torch.float64).to(device).requires_grad_()
    # fp32 with 2 per-layer masks: the fused Triton kernels (fp64 always takes combine + GEMM there)
    w32, words32, a32 = _f32(device, (5, 37), 2)
    x32 = torch.randn(3, 37).to(device).requires_grad_()
    return {
        "bias": (x, w, words, a, torch.randn(5, dtype=torch.float64).to(device)),
        "no_bias": (x, w, words, a, None),
        "float32": (x32, w32, words32, a32, None),
    }


def _impress_linear_grad_input(device):
    w, words, a = _f64(device, (5, 37), 3, False)
    g = torch.randn(4, 5, dtype=torch.float64).to(device).requires_grad_()
    w32, words32, a32 = _f32(device, (5, 37), 2)
    g32 = torch.randn(3, 5).to(device).requires_grad_()
    return {"float64": (g, w, words, a), "float32": (g32, w32.detach(), words32, a32.detach())}


def _impress_conv2d(device):
    cw, cwords, ca = _f64(device, (6, 2, 3, 3), 4, True)
    lw, lwords, la = _f64(device, (4, 2, 3, 3), 2, False)
    xc = torch.randn(2, 2, 7, 7, dtype=torch.float64).to(device).requires_grad_()
    xl = torch.randn(2, 2, 5, 5, dtype=torch.float64).to(device).requires_grad_()
    return {
        "stride2": (xc, cw, cwords, ca, None, [2, 2], [1, 1], [1, 1], 1),
        "pad1": (xl, lw, lwords, la, None, [1, 1], [1, 1], [1, 1], 1),
    }


def _popup_weight(device):
    w, s, _ = _weight_scores_grad(device)
    return {"k19": (w.requires_grad_(), s.requires_grad_(), 19)}


def _popup_weight_grad_scores(device):
    w, s, g = _weight_scores_grad(device)
    return {"float64": (g.requires_grad_(), w.requires_grad_(), s.requires_grad_())}


def _threshold_weight(device):
    w, s, _ = _weight_scores_grad(device)
    return {"float64": (w.requires_grad_(), s.requires_grad_())}


def _task_linear(device, rows: bool):
    """every_task_linear / task_row_linear: per-layer and per-channel alphas in float64 (the
    composition on Triton), one mask per task, and float32 through Triton's fused kernel."""
    w, words, _ = _f64(device, (5, 37), 3, False)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 37, dtype=torch.float64, generator=gen).to(device).requires_grad_()
    per_layer = torch.randn(2, 3, dtype=torch.float64, generator=gen).to(device).requires_grad_()
    per_channel = torch.randn(4, 3, 5, dtype=torch.float64, generator=gen).to(device).requires_grad_()
    w32, words32, _ = _f32(device, (5, 37), 2)
    x32 = torch.randn(3, 37, generator=gen).to(device).requires_grad_()
    a32 = torch.randn(3, 2, generator=gen).to(device).requires_grad_()
    cases = {
        "per_layer": (x, w, words, per_layer),
        "per_channel": (x, w, words, per_channel),
        "masks": (x, w, words, None),
        "float32": (x32, w32, words32, a32),
    }
    if not rows:
        return cases
    task = {"per_layer": [1, 0, 1, 1], "per_channel": [3, 0, 2, 0], "masks": [2, 2, 0, 1], "float32": [2, 0, 2]}
    return {k: (*v, torch.tensor(task[k], device=device)) for k, v in cases.items()}


# op name (ops._<name>) -> its cases' inputs on a device. The primitives' ops, and impress_conv2d,
# the one op that is not a primitive (a convolution over combine).
CASES = {
    "combine": _combine,
    "combine_grad_alpha": _combine_grad_alpha,
    "impress_linear": _impress_linear,
    "impress_linear_grad_input": _impress_linear_grad_input,
    "impress_conv2d": _impress_conv2d,
    "every_task_linear": lambda d: _task_linear(d, rows=False),
    "task_row_linear": lambda d: _task_linear(d, rows=True),
    "masked_weight": lambda d: {"float64": _f64(d, (5, 37), 1, False)[:2]},
    "popup_mask": lambda d: {"k19": (_scores(d).requires_grad_(), 19)},
    "popup_pack": lambda d: {"k19": (_scores(d), 19)},
    "popup_weight": _popup_weight,
    "popup_weight_grad_scores": _popup_weight_grad_scores,
    "threshold_mask": lambda d: {"float64": (_scores(d).requires_grad_(),)},
    "threshold_weight": _threshold_weight,
    "pack_bits": lambda d: {"bits": (_bits().to(d),)},
    "unpack_bits": lambda d: {"words": (format.pack_bits(_bits()).to(d), 40)},
}
# The packing ops run where the format is packed: the reference and the native library.
BACKENDS_OF = {"pack_bits": ("reference", "native"), "unpack_bits": ("reference", "native")}
ALL = [(op, case) for op, build in CASES.items() for case in build("cpu")]


def test_every_primitive_has_opcheck_cases():
    assert set(PRIMITIVES) <= set(CASES), sorted(set(PRIMITIVES) - set(CASES))
    for name in CASES:
        assert callable(getattr(ops, f"_{name}", None)), f"ops has no registered op _{name}"


@pytest.mark.parametrize(
    "flavour, op, case",
    [
        p
        for op, case in ALL
        for p in backend_grid(
            [(op, case)], backends=BACKENDS_OF.get(op, ("reference", "native", "triton")), ids=lambda o, c: f"{o}-{c}"
        )
    ],
)
def test_opcheck(flavour: Flavour, op, case):
    """The registration (schema, fake tensors, autograd) with each backend's primitives."""
    args = CASES[op](flavour.device)[case]
    with impresslearn.backend(flavour.backend):
        registered = getattr(ops, f"_{op}")  # a primitive's PrimitiveOp holds its custom op as .op
        torch.library.opcheck(getattr(registered, "op", registered), args)


@only("native")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_opcheck_native_library_ops(dtype):
    """The native library's own ops (torch.ops.impresslearn_native.<primitive>), one per kernel it
    registers, with no gradient (the op layer adds autograd)."""
    from impresslearn import native

    def plain(value):
        return value.detach().to(dtype) if isinstance(value, torch.Tensor) and value.is_floating_point() else value

    for name in native.KERNELS:
        for args in CASES[name]("cpu").values():
            torch.library.opcheck(getattr(torch.ops.impresslearn_native, name).default, tuple(plain(a) for a in args))
