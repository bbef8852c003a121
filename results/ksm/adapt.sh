#!/bin/bash
# The KSM experiment (issue 13; docs/results.md, "KSM"): a small conv net pretrained on MNIST
# digits 0-4, then adapted in turn to digits 5-9, PermutedMNIST, RotatedMNIST (90°) and
# inverted MNIST by fine-tuning, head only, Piggyback, kernel-wise binary masks and KSM.
# One thread each. The first run took 952 s of wall time on the shared 2-core Xeon under a load
# average near 7 (about a third of a core: 5-6 CPU minutes); the KSM-only runs about 11 minutes each.
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
IL=${IL:-impresslearn}
D=${MNIST:-../shared/data}
$IL adapt --data-root $D --threads 1 --out results/ksm/adapt.json
# Ablations of KSM's reconstructed choices (KSM only, same pretrained net: same seed and steps)
$IL adapt --data-root $D --threads 1 --methods ksm --real logistic --scale 0.1 --out results/ksm/ablation-logistic.json
$IL adapt --data-root $D --threads 1 --methods ksm --relax ste --out results/ksm/ablation-ste.json
# Head only again, backward stopped at the head (since commit 2021fc7; adapt.json's head row was
# measured before it and back-propagated through the frozen body): its time per task
$IL adapt --data-root $D --threads 1 --methods head --out results/ksm/head-frozen-body.json
