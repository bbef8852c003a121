"""SplitCIFAR-100 / SplitImageNet streams: SupSup's splits, the ImageFolder path on a generated
tree of PNGs, the synthetic stand-in, and batches that a resumed or data-parallel run repeats."""

import numpy as np
import pytest
import torch
from PIL import Image

from impresslearn.data.split import SyntheticImages, contiguous_tasks, split_cifar100, split_imagenet, supsup_imagenet_order


def test_supsup_imagenet_order_and_tasks():
    np.random.seed(1)  # SupSup's code: numpy's global legacy generator seeded with 1
    assert supsup_imagenet_order() == np.random.permutation(1000).tolist()
    tasks = contiguous_tasks(supsup_imagenet_order(), 100)
    assert len(tasks) == 100 and all(len(t) == 10 for t in tasks)
    assert sorted(c for t in tasks for c in t) == list(range(1000))
    with pytest.raises(ValueError, match="cannot make"):
        contiguous_tasks(range(5), 10)


def test_split_cifar100_synthetic_tasks_and_labels():
    s = split_cifar100(synthetic=True, synthetic_train=4, synthetic_test=2)
    assert s.num_tasks == 20 and s.classes_per_task == 5 and s.task_classes(3) == [15, 16, 17, 18, 19]
    x, y = next(iter(s.train(3, 20)))
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.float32
    assert sorted(y.tolist()) == sorted([0, 1, 2, 3, 4] * 4)
    xt, yt = next(iter(s.test(3, 100)))
    assert xt.shape == (10, 3, 32, 32) and yt.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert abs(xt.mean().item()) < 1.0  # normalised
    with pytest.raises(IndexError):
        s.train(20)


def test_synthetic_images_are_deterministic_and_learnable():
    a, b = SyntheticImages(10, 6, 32, seed=3), SyntheticImages(10, 6, 32, seed=3)
    assert torch.equal(a[17][0], b[17][0]) and a[17][1] == 2
    assert not torch.equal(a[17][0], SyntheticImages(10, 6, 32, seed=4)[17][0])
    # Learnable class structure: nearest class mean beats chance (20 %) by far on a task.
    s = split_cifar100(synthetic=True, synthetic_train=16, synthetic_test=8)
    xs, ys = next(iter(s.train(0, 1000)))
    xt, yt = next(iter(s.test(0, 1000)))
    means = torch.stack([xs[ys == c].mean(0) for c in range(5)]).flatten(1)
    acc = (torch.cdist(xt.flatten(1), means).argmin(1) == yt).float().mean().item()
    assert acc > 0.6


def test_split_imagenet_synthetic_shapes():
    s = split_imagenet(synthetic=True, image_size=48, synthetic_train=2, synthetic_test=1)
    assert s.num_tasks == 100 and s.task_classes(0) == supsup_imagenet_order()[:10]
    x, y = next(iter(s.train(5, 8)))
    assert x.shape == (8, 3, 48, 48) and 0 <= y.min() and y.max() < 10
    xt, _ = next(iter(s.test(5, 10)))
    assert xt.shape == (10, 3, 48, 48)


def _image_tree(root, classes: int, per_class: dict):
    gen = np.random.default_rng(0)
    for part, n in per_class.items():
        for c in range(classes):
            d = root / part / f"n{c:08d}"
            d.mkdir(parents=True)
            for i in range(n):
                size = (40 + 3 * i, 36 + c)
                arr = gen.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / f"img{i}.png")


def test_split_imagenet_reads_an_image_folder_tree(tmp_path):
    _image_tree(tmp_path, 20, {"train": 3, "val": 2})
    s = split_imagenet(str(tmp_path), num_tasks=10, image_size=32)
    order = supsup_imagenet_order(20)
    assert s.num_tasks == 10 and s.task_classes(4) == order[8:10]
    x, y = next(iter(s.train(4, 6)))
    assert x.shape == (6, 3, 32, 32) and sorted(y.tolist()) == [0, 0, 0, 1, 1, 1]
    batches = s.test(4, 100)
    xt, yt = next(iter(batches))
    assert xt.shape == (4, 3, 32, 32) and yt.tolist() == [0, 0, 1, 1]
    # A test image's label is its folder's position in the task (ImageFolder indexes sorted folders).
    first = int(batches.indices[0])
    assert s.test_set.targets[first] == order[8] and s.test_set.samples[first][0].endswith(".png")
    with pytest.raises(FileNotFoundError, match="ImageFolder"):
        split_imagenet(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="--data-root"):
        split_imagenet(None)


def test_batches_resume_and_shard_exactly():
    s = split_cifar100(synthetic=True, synthetic_train=6, synthetic_test=2)
    full = s.train(2, 10, seed=5)
    assert len(full) == 3  # 30 images, incomplete batches dropped
    epoch1 = list(full.epoch_iter(1))
    # Resuming at batch 2 of epoch 1 yields exactly the rest of that epoch.
    later = list(s.train(2, 10, seed=5).epoch_iter(1, start=2))
    assert len(later) == 1 and torch.equal(later[0][0], epoch1[2][0]) and torch.equal(later[0][1], epoch1[2][1])
    # Iterating draws epochs in order; another epoch is another order and other augmentations.
    it = s.train(2, 10, seed=5)
    list(iter(it))
    second = list(iter(it))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(second, epoch1))
    assert not torch.equal(list(full.epoch_iter(0))[0][0], epoch1[0][0])
    # Two ranks see the two halves of every global batch, augmented identically.
    halves = [list(s.train(2, 10, seed=5, rank=r, world_size=2).epoch_iter(1)) for r in range(2)]
    for b in range(3):
        assert torch.equal(torch.cat([halves[0][b][0], halves[1][b][0]]), epoch1[b][0])
        assert torch.equal(torch.cat([halves[0][b][1], halves[1][b][1]]), epoch1[b][1])
    with pytest.raises(ValueError, match="divide evenly"):
        s.train(2, 10, world_size=3)


def test_worker_processes_give_the_same_batches():
    s = split_cifar100(synthetic=True, synthetic_train=4, synthetic_test=2)
    a = list(s.train(1, 10, seed=2).epoch_iter(0))
    b = list(s.train(1, 10, seed=2, workers=1).epoch_iter(0))
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_real_data_paths_need_a_root():
    with pytest.raises(ValueError, match="--data-root"):
        split_cifar100(None)
