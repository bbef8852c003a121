#!/bin/bash
# GN task inference among 20 PermutedMNIST tasks: SupSup's settings, then top-k masks (100 outputs for G)
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
IL=${IL:-impresslearn}
D=${MNIST:-../shared/data}
gn="--gn G,H --gn-methods oneshot,binary --gn-inputs batch,first --gn-batches 20 --gn-on supsup"
$IL run --data-root $D --preset supsup --new-tasks 20 --no-impresslearn $gn --cache .mask-cache --out results/permuted/gn-supsup-preset.json
$IL run --data-root $D --preset topk-0.1 --outputs 100 --new-tasks 20 --no-impresslearn $gn --cache .mask-cache --out results/permuted/gn-topk-outputs100.json
