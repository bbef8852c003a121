#!/bin/bash
# PermutedMNIST grid: K in {5,10,25,50} x {heterogeneous, homogeneous, random} x {per-layer, per-channel},
# 3 new tasks (permutation seeds 1001-1003), density-0.1 top-k preset, the tuned alpha fit, test set.
# Usage: grid.sh heterogeneous random   (the basis kinds to run, in order)
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
IL=${IL:-impresslearn}
common="--benchmark permuted-mnist --data-root ${MNIST:-../shared/data} --new-tasks 3 --cache .mask-cache"
for kind in "$@"; do
  for K in 50 25 10 5; do
    extra=""
    if [ "$kind" = heterogeneous ] && [ "$K" = 10 ]; then extra="--basis-gn 3"; fi
    $IL run $common --basis $kind -K $K $extra --out results/permuted/grid-$kind-K$K-per-layer.json
    $IL run $common --basis $kind -K $K --per-channel --out results/permuted/grid-$kind-K$K-per-channel.json
  done
done
