#!/bin/bash
# A transformer through every method (docs/results.md, "A transformer through every method"):
# the small ViT of models.mnist_vit (7x7 patches, 2 layers of 4 heads, width 64, MLP 128).
# Learning rates from sweep.sh (validation split): SupSup masks RMSprop 1e-3, pretraining Adam 1e-3.
# One thread each, on the shared 2-core Xeon (21 CPU-minutes in all, sweep.sh included); (a) and (b)
# ran side by side, (b') beside the end of (a), then (a') and (a'') side by side.
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
IL=${IL:-impresslearn}
D=${MNIST:-../shared/data}
R=results/vit
# (a) a seeded random ViT: SupSup masks (top-10 %, one epoch) for 5 new PermutedMNIST tasks
# (permutation seeds 1001-1005), a K = 10 heterogeneous basis (SupSup masks of basis tasks 0-9),
# per-channel ImpressLearn alphas for the same 5 tasks (the tuned fit, Adam lr 0.1 cosine, cut to
# one epoch of batches of 256), and task inference (H, one-shot and exhaustive, 10 test batches of
# 128 per task) over the SupSup and over the ImpressLearn tasks.
$IL run --arch vit --data-root $D --new-tasks 5 -K 10 --per-channel --mask-lr 1e-3 --alpha-epochs 1 \
  --alpha-batch-size 256 --incorrect-tasks 5 --gn H --gn-methods oneshot,exhaustive --gn-batches 10 \
  --threads 1 --cache .mask-cache --out $R/permuted-K10-per-channel.json
# (b) the ViT pretrained on digits 0-4 (1,500 Adam steps of 64, lr 1e-3), adapted to digits 5-9,
# PermutedMNIST, RotatedMNIST 90° and inverted MNIST by fine-tuning, head only, Piggyback and KSM
# (one real-and-binary value per kernel of the patch embedding, per row of every linear layer and
# attention projection: --linear row), 500 steps of 64 per task.
$IL adapt --arch vit --linear row --methods finetune,head,piggyback,ksm --data-root $D --threads 1 \
  --out $R/adapt.json
# (b') KSM with one value per weight of every linear layer (--linear weight, the default) instead
# of one per row: what the coarser grain costs on a network of linear layers
$IL adapt --arch vit --methods ksm --data-root $D --threads 1 --out $R/adapt-ksm-per-weight.json
# (a') per-layer alphas over the same basis, for the same 5 tasks (masks from the cache of (a)),
# task inference over the ImpressLearn tasks
$IL run --arch vit --data-root $D --new-tasks 5 -K 10 --mask-lr 1e-3 --alpha-epochs 1 --alpha-batch-size 256 \
  --incorrect-tasks 0 --gn H --gn-methods oneshot,exhaustive --gn-batches 10 --gn-on impresslearn \
  --threads 1 --cache .mask-cache --out $R/permuted-K10-per-layer.json
# (a'') SupSup's own settings (--preset supsup: threshold masks, unscaled backbone, 100 outputs,
# RMSprop 1e-4, 1,000 steps; not tuned for the ViT), SupSup only: does one-shot inference find
# the task over the ViT's masks there, as it does over LeNet's? G and H.
$IL run --arch vit --data-root $D --preset supsup --new-tasks 5 --no-impresslearn --incorrect-tasks 0 \
  --gn G,H --gn-methods oneshot,exhaustive --gn-batches 10 --threads 1 --cache .mask-cache \
  --out $R/supsup-preset-gn.json
