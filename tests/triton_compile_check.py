"""Compile the Triton kernels exactly as the launchers launch them, for a GPU target, without a GPU.

The interpreter runs kernels as Python and misses what only the compiler checks (types of
returns, shifts and literals, dot shapes, register spills). This script swaps Triton's launch
for a recorder, drives every launcher on small CPU tensors (the outputs are garbage and never
read), then compiles each distinct (kernel, signature, constexprs) to a cubin with ptxas.

    python tests/triton_compile_check.py             # the CI set, sm_90
    python tests/triton_compile_check.py --all --arch 80 --usage   # every dtype/path, registers

Run it without TRITON_INTERPRET (tests/test_triton_compile.py starts it in a clean process).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
    raise SystemExit("run without TRITON_INTERPRET: the kernels must be defined for the compiler")

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

_TYPES = {
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.float32: "fp32",
    torch.float64: "fp64",
    torch.int32: "i32",
    torch.int64: "i64",
    torch.bool: "i1",
}
_OPTIONS = ("num_warps", "num_stages")
recorded: dict[tuple, tuple] = {}


def _record(self, *args, grid, warmup, **kwargs):
    """Stand-in for JITFunction.run: remember what would have been compiled."""
    signature, constexprs = {}, {}
    for name, value in zip(self.arg_names, args):
        signature[name] = "*" + _TYPES[value.dtype] if isinstance(value, torch.Tensor) else "i32"
    for name, value in kwargs.items():
        if name not in _OPTIONS:
            signature[name] = "constexpr"
            constexprs[name] = value
    options = {k: v for k, v in kwargs.items() if k in _OPTIONS}
    key = (self.fn.__name__, tuple(sorted(signature.items())), repr(sorted(constexprs.items())), repr(options))
    recorded.setdefault(key, (self, signature, constexprs, options))


def drive(everything: bool) -> None:
    """Call every launcher on small CPU tensors over the paths (and, with `everything`, dtypes)."""
    import importlib

    from impresslearn import pack_masks
    from impresslearn.kernels import combine as _  # noqa: F401  (the package stays "unavailable" here)

    comb = importlib.import_module("impresslearn.kernels.combine")
    mm = importlib.import_module("impresslearn.kernels.impress_linear")
    pop = importlib.import_module("impresslearn.kernels.popup")

    g = torch.Generator().manual_seed(0)
    all_float = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
    dtypes = all_float if everything else [torch.bfloat16, torch.float64]
    for dtype in dtypes:
        w = torch.randn(13, 40, generator=g).to(dtype)
        words = pack_masks(torch.rand(9, 13, 40, generator=g) < 0.5).words
        for alpha in (torch.rand(9), torch.rand(9, 13)):
            comb.combine(w, words, alpha, lut_per_channel_min_cols=1)
            comb.combine(w, words, alpha, lut_min_masks=10**9)
            comb.combine_grad_alpha(w, w, words, alpha)
        pop.popup_mask(w, 17)
        pop.popup_pack(w, 17)
    for dtype in all_float[:3] if everything else [torch.float16]:
        w = torch.randn(13, 40, generator=g).to(dtype)
        words = pack_masks(torch.rand(9, 13, 40, generator=g) < 0.5).words
        x = torch.randn(3, 40, generator=g).to(dtype)
        grad = torch.randn(3, 13, generator=g).to(dtype)
        for alpha, split in ((torch.rand(9), None), (torch.rand(9, 13), 2)):
            mm.impress_linear(x, w, words, alpha, w[:, 0].contiguous(), split=split)
            mm.impress_linear_grad_input(grad, w, words, alpha, split=split)


def resource_usage(cubin: bytes) -> str:
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([str(tool), "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
    return " ".join(next((line.split()[:2] for line in out.splitlines() if "REG:" in line), ["?"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability, e.g. 80 or 90")
    parser.add_argument("--all", action="store_true", help="every dtype, not only the riskiest paths")
    parser.add_argument("--usage", action="store_true", help="print registers and stack (spills) per kernel")
    args = parser.parse_args(argv)

    JITFunction.run = _record
    drive(args.all)
    target = GPUTarget("cuda", args.arch, 32)
    failures = 0
    for fn, signature, constexprs, options in recorded.values():
        signature = {name: signature[name] for name in fn.arg_names}
        label = f"{fn.fn.__name__} {constexprs} {options}"
        try:
            compiled = triton.compile(
                ASTSource(fn=fn, signature=signature, constexprs=constexprs), target=target, options=options
            )
        except Exception as err:  # report every failing kernel, not just the first
            failures += 1
            print(f"FAIL {label}\n{err}", flush=True)
            continue
        usage = resource_usage(compiled.asm["cubin"]) if args.usage else ""
        print(f"ok   {label} {usage}", flush=True)
    print(f"{len(recorded)} kernels compiled for sm_{args.arch}, {failures} failed")
    return 1 if failures or not recorded else 0


if __name__ == "__main__":
    sys.exit(main())
