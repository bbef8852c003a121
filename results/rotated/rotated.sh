#!/bin/bash
# RotatedMNIST: fixed angle per task (basis task t at 10*t degrees), density-0.1 top-k preset, tuned alpha fit.
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
IL=${IL:-impresslearn}
common="--benchmark rotated-mnist --data-root ${MNIST:-../shared/data} --cache .mask-cache"
# new tasks between the basis angles (5, 15, 25, 35, 45 degrees)
$IL run $common -K 10 --new-tasks 5 --basis-gn 2 --out results/rotated/between-K10-per-layer.json
$IL run $common -K 5 --new-tasks 4 --out results/rotated/between-K5-per-layer.json
$IL run $common -K 10 --new-tasks 5 --per-channel --out results/rotated/between-K10-per-channel.json
# new tasks far from the basis angles (250-290 degrees)
$IL run $common -K 10 --new-tasks 5 --new-angles 250,260,270,280,290 --out results/rotated/beyond-K10-per-layer.json
$IL run $common -K 25 --new-tasks 5 --new-angles 250,260,270,280,290 --out results/rotated/beyond-K25-per-layer.json
# the ImpressLearn authors' variant: every image rotated at random in [-90, 90] degrees, for every task
$IL run $common -K 10 --new-tasks 5 --random-rotation --out results/rotated/random-rotation-K10-per-layer.json
