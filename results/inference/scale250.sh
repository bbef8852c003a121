#!/bin/bash
# The ImpressLearn paper's scale: one-shot task inference among 250 PermutedMNIST tasks with
# SupSup's settings; time per batch and the memory of the superposition (packed against float masks).
# Masks are trained for 400 iterations, not the preset's 1000, to fit 250 of them in about half an
# hour of one CPU core (each mask a little less accurate; task inference is what is measured).
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
IL=${IL:-impresslearn}
D=${MNIST:-../shared/data}
$IL run --data-root $D --preset supsup --new-tasks 250 --first-new-task 0 --no-impresslearn --mask-iterations 400 --gn G,H --gn-methods oneshot,exhaustive \
    --gn-inputs batch --gn-batches 2 --incorrect-tasks 0 --cache .mask-cache --out results/inference/scale250.json
