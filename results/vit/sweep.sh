#!/bin/bash
# The ViT's learning rates, checked before the runs of run.sh (docs/results.md, "A transformer
# through every method"), one thread each on the shared 2-core Xeon:
# 1. SupSup mask training (RMSprop, top-10 % masks, one epoch): one PermutedMNIST task, scored on
#    a validation split (the last 10,000 training images, --validation 10000), lr 3e-4 (the
#    topk-0.1 preset's), 1e-3 and 3e-3.
# 2. Pretraining the ViT for `impresslearn adapt` (Adam, 1,500 steps of 64): python sweep_adapt.py.
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
IL=${IL:-impresslearn}
D=${MNIST:-../shared/data}
R=results/vit/tuning
for lr in 3e-4 1e-3 3e-3; do
  $IL run --arch vit --data-root $D --validation 10000 --new-tasks 1 --first-new-task 0 --no-impresslearn \
    --incorrect-tasks 0 --mask-lr $lr --threads 1 --quiet --out $R/mask-rmsprop-lr$lr.json
done
python results/vit/sweep_adapt.py --data-root $D --out $R/pretrain.json
