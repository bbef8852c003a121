"""`ops.combine` on tiny inputs, N times, for counting the op layer's instructions per call:

    valgrind --tool=callgrind --callgrind-out-file=cg.0 python bench/dispatch_calls.py 0
    valgrind --tool=callgrind --callgrind-out-file=cg.1000 python bench/dispatch_calls.py 1000

(PYTHONHASHSEED=0 OMP_NUM_THREADS=1). The difference of the two totals over 1000 is one call's
instructions: the kernel's few plus the plumbing (checks, backend choice, custom-op dispatch),
exact and repeatable on a shared machine where timings are not (`bench/bench_dispatch.py`
times the same calls). A second argument picks what is called: `public` (ops.combine, the
default), `custom-op` (the registered custom op itself, the path torch.compile takes), `grad`
(ops.combine with inputs that need a gradient: the eager autograd path) or `kernel` (the native
kernel alone, no plumbing); plumbing = a path's count - the kernel's.
"""

import sys

import torch

import impresslearn as il
from impresslearn import native, ops

torch.set_num_threads(1)
calls = int(sys.argv[1])
path = sys.argv[2] if len(sys.argv) > 2 else "public"
weight = torch.randn(3, 5)
masks = il.pack_masks(torch.rand(2, 3, 5) < 0.5)
alpha = torch.tensor([0.3, 0.7])
if path == "grad":
    weight.requires_grad_(), alpha.requires_grad_()
call = {
    "public": lambda: ops.combine(weight, masks, alpha),
    "grad": lambda: ops.combine(weight, masks, alpha),
    "custom-op": lambda: getattr(ops._combine, "op", ops._combine)(weight, masks.words, alpha),
    "kernel": lambda: native.KERNELS["combine"](weight, masks.words, alpha),
}[path]
for _ in range(20):  # warm: first calls initialise the dispatcher
    call()
for _ in range(calls):
    call()
