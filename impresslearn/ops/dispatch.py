"""The one place that picks a backend (docs/design.md §5.2), and how an op is declared.

select(device)                   the backend module an op on `device` runs on here and now
primitive(device, name)          the function that runs primitive `name` there
primitive_op()                   the decorator that makes a primitive's op (PrimitiveOp: the custom op, and
                                 an eager path around its dispatcher) from its declaration
backend_for(device), primitive_backends(device)   what an op would run, for people
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable

import torch
from torch import Tensor

from .. import backends, reference
from ..primitives import PRIMITIVES, MissingKernel, resolve


def select(device: torch.device) -> types.ModuleType:
    """The backend `impresslearn.backend(...)` forces, or under "auto" the first of the device's
    order that runs there (the reference last)."""
    name = backends.requested()
    if name == "auto":
        for candidate in backends.auto_order(device):
            mod = backends.loaded(candidate)
            if mod is not None and mod.supports(device):
                return mod
        return reference
    mod = backends.module(name)
    if not mod.supports(device):
        raise RuntimeError(
            f"backend {name!r} cannot run on {device.type} tensors"
            + (" (set TRITON_INTERPRET=1 before importing triton to run it on the CPU)" if name == "triton" else "")
        )
    return mod


def primitive(device: torch.device, name: str):
    """The function that runs primitive `name` on `device`: the chosen backend's kernel, or what
    the primitive declares for a backend without one (composed from its other kernels, or the
    portable reference code); `MissingKernel` otherwise, never a silent reference run.

    Results are made contiguous: the fake implementations promise contiguous outputs, and
    torch.compile checks the real strides against them (an einsum may return a transposed view)."""
    fn = _function(select(device), name)
    return lambda *args: fn(*args).contiguous()


def _function(mod: types.ModuleType, name: str) -> Callable:
    """The backend's kernel of `name` (one dictionary lookup on every op call), else what the
    declaration allows."""
    fn = mod.KERNELS.get(name)
    return fn if fn is not None else resolve(mod.KERNELS, name, reference.KERNELS, backends.name_of(mod)).fn


def has_kernel(device: torch.device, name: str) -> bool:
    """Whether the backend an op on `device` runs on has its own kernel of `name`."""
    return name in select(device).KERNELS


# Under torch.func's transforms (vmap, grad) an autograd.Function needs a vmap rule and the
# setup_context form; the custom op is the path that composes with them.
_functorch_active = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)


class PrimitiveOp:
    """A primitive's op: `op` is the torch.library custom op `impresslearn::<name>` (what
    torch.compile, torch.export and `torch.library.opcheck` see); a call in eager mode runs the
    same `run` (the declared check, then the backend's kernel) without the custom-op dispatcher,
    through a `torch.autograd.Function` made from the same backward when a gradient is needed
    (docs/design.md §5.2: the custom-op machinery was most of a small call's cost)."""

    def __init__(self, name: str, op, run: Callable):
        self.name, self.op, self.run = name, op, run
        self._function = None
        functools.update_wrapper(self, run)

    def register_autograd(self, backward: Callable, *, setup_context: Callable | None = None) -> None:
        """The op's gradient, for the custom op and the eager path alike."""
        self.op.register_autograd(backward, setup_context=setup_context)
        run = self.run

        # the classic form (ctx in forward): half the cost of a call of the setup_context form
        def forward(ctx, *args):
            out = run(*args)
            if setup_context is not None:
                setup_context(ctx, args, out)
            return out

        def backward_(ctx, *grads):
            return backward(ctx, *grads)

        # named for the op, so that a grad_fn says which path made it (`<name>_eagerBackward`)
        methods = {"forward": staticmethod(forward), "backward": staticmethod(backward_)}
        Function = type(f"{self.name}_eager", (torch.autograd.Function,), methods)
        self._function = Function.apply

    def __call__(self, *args):
        # The custom op runs while something is compiled or exported, under a torch.func
        # transform, and for fake, meta and subclass tensors (they need its fake implementation).
        if torch.compiler.is_compiling() or _functorch_active():
            return self.op(*args)
        needs_grad = False
        for a in args:  # one pass: plain tensors only, and whether any needs a gradient
            if isinstance(a, Tensor):
                if type(a) is not Tensor or a.is_meta:
                    return self.op(*args)
                needs_grad = needs_grad or a.requires_grad
        if needs_grad and torch.is_grad_enabled():
            # no gradient registered: the custom op says so in its own words on backward
            return self._function(*args) if self._function is not None else self.op(*args)
        return self.run(*args)


def primitive_op() -> Callable[[Callable], PrimitiveOp]:
    """Make `_<name>(...)` (a typed signature, no body) the op of the primitive `<name>` as
    `impresslearn.primitives` declares it: a `PrimitiveOp` over the custom op
    `impresslearn::<name>`. Both run the declared `check(*args)`, then the primitive on the
    backend of the inputs' device with contiguous tensors; the custom op's fake runs the same
    `check` and returns the declared `fake(*args)`, so the op, its fake and the native library's
    fakes refuse the same inputs in the same words."""

    def make(signature: Callable) -> PrimitiveOp:
        name = signature.__name__.lstrip("_")
        if name not in PRIMITIVES:
            raise KeyError(f"{name!r} is not a declared primitive (impresslearn.primitives)")
        spec = PRIMITIVES[name]

        check = spec.check

        @functools.wraps(signature)
        def run(*args):
            check(*args)
            # every primitive's first argument is a tensor, and the check put all on one device
            fn = _function(select(args[0].device), name)
            return fn(*[a.contiguous() if isinstance(a, Tensor) else a for a in args]).contiguous()

        op = torch.library.custom_op(f"impresslearn::{name}", mutates_args=())(run)

        @op.register_fake
        def _(*args):
            spec.check(*args)
            return spec.fake(*args)

        return PrimitiveOp(name, op, run)

    return make


def backend_for(device: torch.device | str) -> str:
    """The name of the backend an op on `device` would use here and now."""
    return backends.name_of(select(torch.device(device)))


def primitive_backends(device: torch.device | str) -> dict[str, str]:
    """For each primitive, what an op on `device` runs here and now: the backend's name where it
    has the kernel, "<backend>, composed from <primitives>" or "reference" (a portable primitive,
    or the reference backend itself), "missing" where the backend has neither."""
    mod = select(torch.device(device))
    name = backends.name_of(mod)
    out = {}
    for prim, spec in PRIMITIVES.items():
        try:
            how = resolve(mod.KERNELS, prim, reference.KERNELS, name).how
        except MissingKernel:
            out[prim] = "missing"
            continue
        out[prim] = {
            "kernel": name,
            "portable": "reference",
            "composed": f"{name}, composed from {', '.join(spec.composed_from)}",
        }[how]
    return out
