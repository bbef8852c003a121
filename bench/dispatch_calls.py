"""`ops.combine` on tiny inputs, N times, for counting the op layer's instructions per call:

    valgrind --tool=callgrind --callgrind-out-file=cg.0 python bench/dispatch_calls.py 0
    valgrind --tool=callgrind --callgrind-out-file=cg.1000 python bench/dispatch_calls.py 1000

(PYTHONHASHSEED=0 OMP_NUM_THREADS=1). The difference of the two totals over 1000 is one call's
instructions: the kernel's few plus the plumbing (checks, backend choice, custom-op dispatch),
exact and repeatable on a shared machine where timings are not (`bench/bench_dispatch.py`
times the same calls).
"""

import sys

import torch

import impresslearn as il
from impresslearn import ops

torch.set_num_threads(1)
calls = int(sys.argv[1])
weight = torch.randn(3, 5)
masks = il.pack_masks(torch.rand(2, 3, 5) < 0.5)
alpha = torch.tensor([0.3, 0.7])
for _ in range(20):  # warm: first calls initialise the dispatcher
    ops.combine(weight, masks, alpha)
for _ in range(calls):
    ops.combine(weight, masks, alpha)
