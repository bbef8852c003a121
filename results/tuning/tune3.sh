#!/bin/bash
# alpha-fit tuning, continued: Adam learning rate on batches of 1024 (per-layer K=25), validation split
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
IL=${IL:-impresslearn}
common="--data-root ${MNIST:-../shared/data} --validation 10000 --new-tasks 2 --cache .mask-cache --incorrect-tasks 0"
R=results/tuning
$IL run $common -K 25 --alpha-optimizer adam --alpha-lr 0.3 --alpha-batch-size 1024 --alpha-epochs 5 --out $R/k25-adam1024-lr0.3-e5.json
$IL run $common -K 25 --alpha-optimizer adam --alpha-lr 0.1 --alpha-batch-size 1024 --alpha-epochs 10 --out $R/k25-adam1024-lr0.1-e10.json
$IL run $common -K 25 --alpha-optimizer adam --alpha-lr 0.1 --alpha-batch-size 128 --alpha-epochs 1 --out $R/k25-adam128-lr0.1-e1.json
$IL run $common -K 25 --alpha-optimizer adam --alpha-lr 0.1 --alpha-batch-size 1024 --alpha-epochs 5 --alpha-schedule cosine --out $R/k25-adam1024-lr0.1-e5-cos.json
$IL run $common -K 25 --alpha-optimizer adam --alpha-lr 0.3 --alpha-batch-size 1024 --alpha-epochs 5 --alpha-schedule cosine --out $R/k25-adam1024-lr0.3-e5-cos.json
