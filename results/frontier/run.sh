#!/bin/bash
# The accuracy-against-bytes frontier on real MNIST (docs/results.md, "The frontier"): SupSup at
# densities 0.02-0.5 and with threshold masks, ImpressLearn per layer / per channel / hybrid /
# quantised, ExSSNeT; every point at its smallest exact form per task (coded masks, range-coded
# alpha codes). Seed 0 for every point; seeds 1 and 2 for the points the README quotes. Float
# per-channel alphas at K = 10 on PermutedMNIST (16 KiB a task, off the front) are left out for time.
#   results/frontier/run.sh permuted|rotated|split|seeds|rotated-layer   (each part on its own; all by default)
# then: impresslearn table --frontier results/frontier/*/*.json
#       impresslearn plot --frontier results/frontier/*/*.json --out-dir docs/figures
set -e
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
IL="${PY:-python} -m impresslearn.cli"
D=${MNIST:-../shared/data}
C=${CACHE:-.mask-cache}
base="--data-root $D --quiet --cache $C"

supsup_sweep() {  # bench dir new-tasks extra...
  local bench=$1 dir=$2 n=$3; shift 3
  for d in 0.02 0.05 0.2 0.5; do
    $IL mnist --benchmark $bench $base --incorrect-tasks 0 --new-tasks $n "$@" --no-impresslearn --density $d --out results/frontier/$dir/supsup-d$d.json
  done
  $IL mnist --benchmark $bench $base --incorrect-tasks 0 --new-tasks $n "$@" --no-impresslearn --preset supsup --out results/frontier/$dir/supsup-threshold.json
}

impress_sweep() {  # bench dir new-tasks basis seed extra...
  local bench=$1 dir=$2 n=$3 basis=$4 s=$5; shift 5
  local c="--benchmark $bench $base --incorrect-tasks 0 --new-tasks $n --basis $basis --seed $s $*"
  local o=results/frontier/$dir
  $IL mnist $c -K 10 --out $o/K10-layer-s$s.json
  $IL mnist $c -K 10 --hybrid last --out $o/K10-hybrid-s$s.json
  $IL mnist $c -K 5 --per-channel --alpha-bits 4 --alpha-step mse --out $o/K5-channel-b4mse-s$s.json
  $IL mnist $c -K 5 --per-channel --alpha-bits 6 --out $o/K5-channel-b6-s$s.json
  $IL mnist $c -K 5 --per-channel --alpha-bits 3 --alpha-step mse --out $o/K5-channel-b3mse-s$s.json
  $IL mnist $c -K 5 --per-channel --alpha-bits 4 --out $o/K5-channel-b4-s$s.json
  $IL mnist $c -K 10 --per-channel --alpha-bits 4 --alpha-step mse --out $o/K10-channel-b4mse-s$s.json
  $IL mnist $c -K 10 --per-channel --alpha-bits 3 --alpha-step mse --out $o/K10-channel-b3mse-s$s.json
  $IL mnist $c -K 5 --per-channel --out $o/K5-channel-s$s.json
  [[ $bench == permuted-mnist ]] || $IL mnist $c -K 10 --per-channel --out $o/K10-channel-s$s.json
}

exssnet() {  # bench dir new-tasks extra...
  local bench=$1 dir=$2 n=$3; shift 3
  $IL compare --benchmark $bench $base --new-tasks $n "$@" --methods exssnet --out results/frontier/$dir/exssnet.json
}

part=${1:-all}
if [[ $part == permuted || $part == all ]]; then
  impress_sweep permuted-mnist permuted 20 heterogeneous 0
  supsup_sweep permuted-mnist permuted 20
  exssnet permuted-mnist permuted 20
fi
if [[ $part == rotated || $part == all ]]; then
  impress_sweep rotated-mnist rotated-near 5 heterogeneous 0
  impress_sweep rotated-mnist rotated-far 5 heterogeneous 0 --new-angles 250,260,270,280,290
  supsup_sweep rotated-mnist rotated-near 5
  exssnet rotated-mnist rotated-near 5
fi
if [[ $part == split || $part == all ]]; then
  impress_sweep split-mnist split 5 random 0
  supsup_sweep split-mnist split 5
  exssnet split-mnist split 5
fi
if [[ $part == seeds || $part == all ]]; then  # the quoted points, seeds 1 and 2
  for s in 1 2; do
    c="--benchmark permuted-mnist $base --incorrect-tasks 0 --new-tasks 20 --seed $s -K 5 --per-channel"
    $IL mnist $c --alpha-bits 4 --alpha-step mse --out results/frontier/permuted/K5-channel-b4mse-s$s.json
    $IL mnist $c --alpha-bits 6 --out results/frontier/permuted/K5-channel-b6-s$s.json
    $IL mnist ${c/-K 5/-K 10} --alpha-bits 4 --alpha-step mse --out results/frontier/permuted/K10-channel-b4mse-s$s.json
    c="--benchmark rotated-mnist $base --incorrect-tasks 0 --new-tasks 5 --seed $s"
    $IL mnist $c -K 10 --out results/frontier/rotated-near/K10-layer-s$s.json
    $IL mnist $c -K 5 --per-channel --alpha-bits 3 --alpha-step mse --out results/frontier/rotated-near/K5-channel-b3mse-s$s.json
  done
fi
if [[ $part == rotated-layer || $part == all ]]; then  # per-layer alphas over the nearest basis, 3 seeds
  for s in 0 1 2; do
    c="--benchmark rotated-mnist $base --incorrect-tasks 0 --new-tasks 5 --seed $s -K 5"
    $IL mnist $c --out results/frontier/rotated-near/K5-layer-s$s.json
    $IL mnist $c --alpha-bits 8 --out results/frontier/rotated-near/K5-layer-b8-s$s.json
  done
fi
