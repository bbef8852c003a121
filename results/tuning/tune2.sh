#!/bin/bash
# alpha-fit tuning, continued: Adam on batches of 1024 (per-layer K=25) and per-channel K=10, on the validation split
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
IL=${IL:-impresslearn}
common="--data-root ${MNIST:-../shared/data} --validation 10000 --new-tasks 2 --cache .mask-cache --incorrect-tasks 0"
R=results/tuning
$IL run $common -K 25 --alpha-optimizer adam --alpha-lr 0.1 --alpha-batch-size 1024 --alpha-epochs 5 --out $R/k25-adam1024-lr0.1-e5.json
$IL run $common -K 25 --alpha-optimizer adam --alpha-lr 0.03 --alpha-batch-size 1024 --alpha-epochs 10 --out $R/k25-adam1024-lr0.03-e10.json
$IL run $common -K 10 --per-channel --alpha-optimizer lbfgs --alpha-lr 1 --alpha-batch-size 50000 --alpha-epochs 3 --out $R/k10pc-lbfgs60.json
$IL run $common -K 10 --per-channel --alpha-preset prototype --out $R/k10pc-prototype.json
$IL run $common -K 10 --per-channel --alpha-optimizer adam --alpha-lr 0.03 --alpha-batch-size 1024 --alpha-epochs 5 --out $R/k10pc-adam1024-lr0.03-e5.json
