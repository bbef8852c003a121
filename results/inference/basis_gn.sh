#!/bin/bash
# basis-GN as an inference algorithm (the ImpressLearn paper's Fig. 6) on the 10 basis tasks
# (permutation seeds 1..10): SupSup GG (the task's own mask), SupSup GN (one-shot, then that
# mask) and basis-GN (each basis task learnt again as alphas over the basis without its label).
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
IL=${IL:-impresslearn}
D=${MNIST:-../shared/data}
$IL run --data-root $D --preset supsup --new-tasks 10 --first-new-task 0 --no-impresslearn --gn G,H --gn-methods oneshot \
    --gn-batches 20 --incorrect-tasks 0 --cache .mask-cache --out results/inference/basis-supsup-gn.json
$IL run --data-root $D --preset supsup -K 10 --basis-gn 10 --new-tasks 1 --incorrect-tasks 0 --cache .mask-cache \
    --out results/inference/basis-gn.json
