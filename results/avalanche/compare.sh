#!/bin/bash
# SupSup, ImpressLearn and ExSSNeT (impresslearn.avalanche) beside Avalanche's PackNet on Avalanche's
# PermutedMNIST and SplitMNIST (5 experiences, task-incremental), sized for one core of the shared
# 2-core machine: 10,000 training and 2,000 test samples per experience, 2 epochs per experience
# (ExSSNeT: 2 mask epochs, then 1 weight epoch, Adam 1e-2). Only ExSSNeT, added to the other rows:
#   $PY results/avalanche/compare.py ... --methods exssnet --merge
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
PY=${PY:-python}
D=${MNIST:-../shared/data}
$PY results/avalanche/compare.py --data-root $D --train-per-exp 10000 --test-per-exp 2000 --epochs 2 --basis 3 \
    --out results/avalanche/compare.json
