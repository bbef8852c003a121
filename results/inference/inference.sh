#!/bin/bash
# Task inference without labels among 20 PermutedMNIST tasks (issue 14): one-shot, binary and
# exhaustive, from whole batches of 128, their first image, and batches that mix every task's
# samples (a task per sample); SupSup masks of three kinds and ImpressLearn tasks.
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
IL=${IL:-impresslearn}
D=${MNIST:-../shared/data}
R=results/inference
gn="--gn G,H --gn-methods oneshot,binary,exhaustive --gn-inputs batch,first,mixed --gn-batches 20"
# SupSup's settings (threshold masks, about half the weights, unscaled backbone, 100 outputs)
$IL run --data-root $D --preset supsup --new-tasks 20 --no-impresslearn $gn --cache .mask-cache --out $R/supsup-preset.json
# ImpressLearn tasks: per-channel K = 10 over SupSup-preset masks (PermutedMNIST), and per-layer
# between basis angles on RotatedMNIST, where per-layer tasks are accurate
$IL run --data-root $D --preset supsup -K 10 --per-channel --new-tasks 20 $gn --gn-on impresslearn --incorrect-tasks 0 --cache .mask-cache --out $R/impresslearn-per-channel.json
$IL run --data-root $D --benchmark rotated-mnist --preset supsup -K 20 --new-tasks 20 $gn --gn-on impresslearn --incorrect-tasks 0 --cache .mask-cache --out $R/impresslearn-rotated-per-layer.json
# top-10 % masks over the density-scaled backbone; then each factor alone: denser masks, no scaling
$IL run --data-root $D --preset topk-0.1 --outputs 100 --new-tasks 20 --no-impresslearn $gn --cache .mask-cache --out $R/topk-0.1.json
$IL run --data-root $D --preset topk-0.1 --outputs 100 --density 0.5 --new-tasks 20 --no-impresslearn $gn --cache .mask-cache --out $R/topk-0.5.json
$IL run --data-root $D --preset topk-0.1 --outputs 100 --scale false --new-tasks 20 --no-impresslearn $gn --cache .mask-cache --out $R/topk-0.1-unscaled.json
