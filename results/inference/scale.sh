#!/bin/bash
# Toward the ImpressLearn paper's scale: one-shot and exhaustive task inference among many
# PermutedMNIST tasks with SupSup's settings (permutation seeds 1..N); time per batch and the
# memory of the superposition (packed against float masks). Masks are trained for 400 iterations,
# not the preset's 1000 (each a little less accurate; task inference is what is measured).
# The paper's 250 tasks: N=250 (about 20 minutes of one quiet core for the masks). The accuracy
# matrix is measured in full after every 50th task and the last, the diagonal between
# (--matrix-every 50: the full matrix is N²/2 evaluations of 10,000 images; scale120.json was made
# before the option, with every row).
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
IL=${IL:-impresslearn}
D=${MNIST:-../shared/data}
N=${N:-120}
$IL run --data-root $D --preset supsup --new-tasks $N --first-new-task 0 --no-impresslearn --mask-iterations 400 \
    --gn G,H --gn-methods oneshot,exhaustive --gn-inputs batch --gn-batches 2 --incorrect-tasks 0 --matrix-every 50 --cache .mask-cache \
    --out results/inference/scale$N.json
