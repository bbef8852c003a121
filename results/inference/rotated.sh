#!/bin/bash
# One-shot task inference over per-layer ImpressLearn tasks where they are accurate: RotatedMNIST
# between basis angles (issue 14, item 1). SupSup's settings (threshold masks over the unscaled
# backbone, 100 outputs: the setting where one-shot works for SupSup masks on PermutedMNIST).
# One-shot and exhaustive G and H over the new tasks' own SupSup masks and over their ImpressLearn
# alphas, 20 test batches of 128 per task, with the per-layer diagnosis.
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
IL=${IL:-impresslearn}
D=${MNIST:-../shared/data}
common="--benchmark rotated-mnist --data-root $D --preset supsup --angle-step 18 --new-tasks 20 \
    --gn G,H --gn-methods oneshot,exhaustive --gn-batches 20 --gn-on supsup,impresslearn --incorrect-tasks 0 --cache .mask-cache"
# 11 basis tasks at 0, 18, ..., 180 degrees; 20 new tasks two per gap (18k + 6 and 18k + 12):
# neighbouring new tasks 6 degrees apart
angles=$(python3 -c "print(','.join(str(18 * k + o) for k in range(10) for o in (6, 12)))")
$IL run $common -K 11 --new-angles $angles --out results/inference/rotated-per-layer.json
# 20 basis tasks round the circle (0, 18, ..., 342); 20 new tasks midway between them (18k + 9):
# new tasks 18 degrees apart
angles=$(python3 -c "print(','.join(str(18 * k + 9) for k in range(20)))")
$IL run $common -K 20 --new-angles $angles --out results/inference/rotated-circle-per-layer.json
