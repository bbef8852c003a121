#!/bin/bash
# alpha-fit tuning on a validation split (last 10k training images), per-layer K=25 heterogeneous
cd /work/wt/issue3
export OMP_NUM_THREADS=1
IL=${IL:-impresslearn}
common="--data-root ${MNIST:-../shared/data} --validation 10000 --new-tasks 2 --cache .mask-cache --incorrect-tasks 0"
R=results/tuning
$IL run $common -K 25 --alpha-optimizer lbfgs --alpha-lr 1 --alpha-batch-size 50000 --alpha-epochs 3 --out $R/k25-lbfgs60.json
$IL run $common -K 25 --alpha-optimizer adam --alpha-lr 0.05 --alpha-batch-size 50000 --alpha-epochs 100 --out $R/k25-adamfull100-lr0.05.json
$IL run $common -K 25 --alpha-optimizer adam --alpha-lr 0.03 --alpha-batch-size 1024 --alpha-epochs 5 --out $R/k25-adam1024-lr0.03-e5.json
$IL run $common -K 25 --alpha-preset prototype --out $R/k25-prototype.json
$IL run $common -K 25 --alpha-preset paper --out $R/k25-paper.json
