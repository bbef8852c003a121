"""What every launcher in this folder shares: interpreted or compiled, dtypes, device guards, sizes.

Triton decides at `@triton.jit` time whether a kernel is compiled for a GPU or run by its
interpreter (`TRITON_INTERPRET=1` set before the kernels were defined); `INTERPRETED` records
which one this process got, from a probe kernel defined the same way as the real ones.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl


@triton.jit
def _probe():  # never launched: its type says whether @triton.jit interprets here
    pass


INTERPRETED = type(_probe).__name__ == "InterpretedFunction"
_ROUND_BF16_BY_HAND = tl.constexpr(INTERPRETED)


@triton.jit
def _loop_probe(out_ptr, n):
    """out[0] = n, counted by a loop over a runtime bound (what every kernel here does)."""
    count = 0
    for _ in range(0, n):
        count += 1
    tl.store(out_ptr, count)


def _loops_run() -> bool:
    out = torch.zeros(1, dtype=torch.int32)
    try:
        _loop_probe[(1,)](out, 3)
    except Exception:  # noqa: BLE001 - the interpreter wraps the TypeError in its own error
        return False
    return int(out[0]) == 3


def _read_scalars_by_element() -> None:
    """Triton 3.6's interpreter holds a kernel's int argument as a one-element array and reads it
    back for `range(...)` with `int(array)`, which numpy >= 2.4 refuses ("only 0-dimensional arrays
    can be converted to Python scalars", triton-lang/triton#9171, fixed in later releases): every
    loop over a runtime bound fails. Read the element instead. Only the interpreter is touched
    (compiled kernels never see this), and only where the probe loop fails."""
    from triton.runtime import interpreter

    patch_tensor = interpreter._patch_lang_tensor

    def patched(tensor, scope):
        patch_tensor(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.item()))

    interpreter._patch_lang_tensor = patched


if INTERPRETED and not _loops_run():
    _read_scalars_by_element()
    if not _loops_run():
        raise ImportError(
            f"Triton's interpreter cannot run a loop over a kernel argument here (triton {triton.__version__}); upgrade triton"
        )


@triton.jit
def cast(x, dtype: tl.constexpr):
    """`x.to(dtype)`, rounding to nearest even. The interpreter truncates fp32 to bf16 (a GPU
    rounds), so there the rounding is done by hand first: then both give the same bits."""
    if _ROUND_BF16_BY_HAND and dtype == tl.bfloat16:
        bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        x = bits.to(tl.float32, bitcast=True)
    return x.to(dtype)


# Offsets inside the kernels are int32.
MAX_NUMEL = 2**31 - 1

_TL_DTYPES = {
    torch.float16: tl.float16,
    torch.bfloat16: tl.bfloat16,
    torch.float32: tl.float32,
    torch.float64: tl.float64,
}


def tl_dtype(dtype: torch.dtype):
    return _TL_DTYPES[dtype]


def acc_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """fp32 accumulation, fp64 when any input is fp64 (the reference's rule)."""
    return torch.float64 if torch.float64 in dtypes else torch.float32


def supports(device) -> bool:
    """CUDA tensors when compiled; CPU tensors when interpreted."""
    kind = torch.device(device).type
    return kind == "cpu" if INTERPRETED else kind == "cuda"


def device_guard(tensor: torch.Tensor):
    """Launch on the tensor's GPU (Triton launches on the current CUDA device)."""
    if tensor.is_cuda:
        return torch.cuda.device(tensor.device)
    return contextlib.nullcontext()


def check_tensors(*tensors: torch.Tensor) -> None:
    """The launchers index contiguous tensors with int32 offsets (the op layer passes such tensors)."""
    for t in tensors:
        if not t.is_contiguous():
            raise ValueError("the Triton kernels take contiguous tensors")
        if t.numel() > MAX_NUMEL:
            raise ValueError(f"the Triton kernels index with int32: a tensor of {t.numel()} elements is too large")


def dot_precision() -> str:
    """fp32 `tl.dot` precision that matches what PyTorch's own fp32 matmuls do right now."""
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def num_programs_target(device: torch.device) -> int:
    """Programs to aim for when splitting work: a few per SM on a GPU, one when interpreting."""
    if device.type != "cuda":
        return 1
    return 4 * torch.cuda.get_device_properties(device).multi_processor_count
