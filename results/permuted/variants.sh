#!/bin/bash
# PermutedMNIST variants beside the grid (K=10 heterogeneous, per-layer unless said): hybrid, the eq. 2
# penalty, the paper's and the prototype's alpha fits; then task inference over 20 ImpressLearn tasks.
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
IL=${IL:-impresslearn}
D=${MNIST:-../shared/data}
common="--benchmark permuted-mnist --data-root $D --new-tasks 3 --cache .mask-cache"
$IL run $common -K 10 --hybrid --out results/permuted/variant-K10-hybrid.json
$IL run $common -K 10 --lam 0.005 --out results/permuted/variant-K10-lam0.005.json
$IL run $common -K 10 --alpha-preset paper --out results/permuted/variant-K10-paper-fit.json
$IL run $common -K 10 --alpha-preset prototype --out results/permuted/variant-K10-prototype-fit.json
# GN among 20 ImpressLearn tasks (per-channel, K=10) on SupSup's settings, beside gn-supsup-preset.json
$IL run --data-root $D --preset supsup --new-tasks 20 -K 10 --per-channel --incorrect-tasks 0 --gn G,H \
  --gn-inputs batch,first --gn-batches 20 --gn-on impresslearn --cache .mask-cache \
  --out results/permuted/gn-impresslearn-supsup-preset.json
