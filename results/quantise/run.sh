#!/bin/bash
# Quantised per-channel alphas against float32 ones on real MNIST (docs/results.md, "Quantised
# alphas"): K = 5 per-channel, 3 new tasks, one seed; the basis and SupSup masks are trained once
# (--cache) and shared by every run of a benchmark.
set -e
cd "$(dirname "$0")/../.."
IL="${PY:-python} -m impresslearn.cli"
D=${MNIST:-../shared/data}
for bench in permuted-mnist rotated-mnist; do
  common="--benchmark $bench --data-root $D -K 5 --per-channel --new-tasks 3 --incorrect-tasks 0 --quiet --cache ${CACHE:-/tmp/impresslearn-quantise-masks}"
  $IL mnist $common --out results/quantise/$bench-float32.json
  for q in "8 layer" "6 layer" "4 layer" "4 row" "3 row" "2 row"; do
    set -- $q
    $IL mnist $common --alpha-bits $1 --alpha-scale $2 --out results/quantise/$bench-b$1-$2.json
  done
done
$IL table results/quantise/*.json
