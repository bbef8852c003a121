#!/bin/bash
# the per-layer winner (Adam, lr 0.1, batches of 1024, 5 epochs, cosine) checked on per-channel K=10, validation split
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
IL=${IL:-impresslearn}
common="--data-root ${MNIST:-../shared/data} --validation 10000 --new-tasks 2 --cache .mask-cache --incorrect-tasks 0"
R=results/tuning
$IL run $common -K 10 --per-channel --alpha-optimizer adam --alpha-lr 0.1 --alpha-batch-size 1024 --alpha-epochs 5 --alpha-schedule cosine --out $R/k10pc-adam1024-lr0.1-e5-cos.json
