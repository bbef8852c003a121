#!/bin/bash
# ExSSNeT (issue 13): SupSup, SSNeT, ExSSNeT and ExSSNeT+KKT on real MNIST, LeNet-300-100, on one CPU
# core. Sized to about 30 minutes of one core in all (docs/results.md, ExSSNeT): 100 steps per mask
# phase and 100 per weight phase (batches of 128), SplitMNIST with 3 seeds per density,
# PermutedMNIST (10 tasks) with one seed per density and two more at density 0.05, RotatedMNIST
# for KKT. Each command writes one results file; the same command again resumes it.
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
IL=${IL:-impresslearn}
D=${MNIST:-../shared/data}
R=results/exssnet
M=supsup,ssnet,exssnet,exssnet-kkt
# the weight learning rate was chosen on a validation split (the last 10000 training images), not on
# the test set: tuning/weight-lr-*.json, made by
#   $IL run --benchmark permuted-mnist --first-new-task 0 --new-tasks 2 --data-root $D --validation 10000 \
#     --density 0.05 --methods exssnet --mask-iterations 100 --weight-lr LR --threads 1 --out $R/tuning/weight-lr-LR.json
common="--data-root $D --mask-iterations 100 --weight-iterations 100 --weight-lr 1e-2 --threads 1"

# 1. SplitMNIST, 5 tasks of 2 digits, 3 densities x 3 seeds
for density in 0.02 0.05 0.1; do
  for seed in 0 1 2; do
    $IL run --benchmark split-mnist --methods $M $common --density $density --seed $seed \
      --out $R/split-d$density-s$seed.json
  done
done

# 2. PermutedMNIST, 10 tasks (SupSup's permutation seeds 1..10), 3 densities, seed 0
for density in 0.02 0.05 0.1; do
  $IL run --benchmark permuted-mnist --first-new-task 0 --new-tasks 10 --methods $M $common --density $density \
    --seed 0 --out $R/permuted-d$density-s0.json
done

# 3. KKT on RotatedMNIST: 5 tasks 10 degrees apart (neighbours similar), accuracy early in each mask
#    phase and at the end, with and without KKT
$IL run --benchmark rotated-mnist --new-tasks 5 --new-angles 0,10,20,30,40 --methods supsup,exssnet,exssnet-kkt \
  $common --density 0.05 --seed 0 --early-eval 0.05,0.1,0.25,0.5 --out $R/rotated-kkt-d0.05-s0.json

# 4. PermutedMNIST: two more seeds at density 0.05
for seed in 1 2; do
  $IL run --benchmark permuted-mnist --first-new-task 0 --new-tasks 10 --methods $M $common --density 0.05 \
    --seed $seed --out $R/permuted-d0.05-s$seed.json
done

# 5. Control for the extra training: ExSSNeT takes 100 mask steps and 100 weight steps per task, SupSup 100
#    mask steps. SupSup with 200 mask steps per task (the same number of steps) on PermutedMNIST, seed 0.
for density in 0.02 0.05 0.1; do
  $IL run --benchmark permuted-mnist --first-new-task 0 --new-tasks 10 --methods supsup --data-root $D \
    --mask-iterations 200 --threads 1 --density $density --seed 0 --out $R/permuted-supsup200-d$density-s0.json
done
