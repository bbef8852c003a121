"""The MNIST streams: SupSup's permutation seeding, fixed and random rotations, batching, the subset."""

import numpy as np
import pytest
import torch
from continual_helpers import subset

from impresslearn.data import (
    MNIST_MEAN,
    MNIST_STD,
    Batches,
    PermutedMNIST,
    RotatedMNIST,
    load_mnist,
    load_subset,
    make_subset,
    rotate,
)


def test_shipped_subset_is_balanced_real_mnist():
    a = subset()
    assert a.train_x.shape == (6000, 28, 28) and a.test_x.shape == (1000, 28, 28)
    assert a.train_x.dtype == torch.uint8
    assert torch.equal(a.train_y.bincount(), torch.full((10,), 600))
    assert torch.equal(a.test_y.bincount(), torch.full((10,), 100))
    # real digits: mean intensity of MNIST is ~0.13 of 255, and no two images are identical
    assert 0.10 < a.train_x.float().mean().item() / 255 < 0.16
    assert torch.unique(a.train_x.reshape(6000, -1), dim=0).shape[0] == 6000


def test_permutations_follow_supsup_seeding():
    s = PermutedMNIST(subset(), num_tasks=5)
    for t in range(5):
        perm = s.permutation(t)
        assert torch.equal(perm, torch.from_numpy(np.random.RandomState(t + 1).permutation(784)))
        assert torch.equal(perm.sort().values, torch.arange(784))
    assert not torch.equal(s.permutation(0), torch.arange(784))  # task 0 is permuted too
    with pytest.raises(IndexError):
        s.permutation(5)


def test_batches_normalise_permute_and_reshuffle():
    a = subset()
    s = PermutedMNIST(a, num_tasks=3)
    x, y = next(iter(s.test(2, batch_size=1000)))
    raw = a.test_x.reshape(1000, -1).float() / 255
    torch.testing.assert_close(x, (raw[:, s.permutation(2)] - MNIST_MEAN) / MNIST_STD)
    assert torch.equal(y, a.test_y)
    train = s.train(0, batch_size=128, seed=3)
    assert len(train) == 47 and train.num_samples == 6000
    first = [y for _, y in train]
    second = [y for _, y in train]
    assert torch.equal(torch.cat(first).sort().values, a.train_y.sort().values)  # every image once per pass
    assert not torch.equal(torch.cat(first), torch.cat(second))  # a new order each pass
    assert len(s.test(0, batch_size=128, limit=3)) == 3


def test_fixed_rotation_per_task():
    a = subset()
    s = RotatedMNIST(a, num_tasks=4)
    assert s.angles == [0.0, 10.0, 20.0, 30.0]
    torch.testing.assert_close(rotate(a.test_x[:8], 90), torch.rot90(a.test_x[:8], 1, (1, 2)))
    x0, _ = next(iter(s.test(0, batch_size=50)))
    x3, _ = next(iter(s.test(3, batch_size=50)))
    assert not torch.allclose(x0, x3)
    raw = rotate(a.test_x[:50], 30).reshape(50, -1).float() / 255
    torch.testing.assert_close(x3, (raw - MNIST_MEAN) / MNIST_STD)
    custom = RotatedMNIST(a, angles=[5, 250])
    assert custom.num_tasks == 2 and custom.describe(1) == "rotation 250°"


def test_random_rotation_variant_is_the_same_for_every_task():
    a = subset()
    s = RotatedMNIST(a, num_tasks=3, random_rotation=True)
    # a test pass repeats exactly; training draws new angles each pass
    t1 = torch.cat([x for x, _ in s.test(0, batch_size=500)])
    assert torch.equal(t1, torch.cat([x for x, _ in s.test(0, batch_size=500)]))
    assert torch.equal(t1, torch.cat([x for x, _ in s.test(2, batch_size=500)]))  # tasks do not differ
    tr = s.train(0, batch_size=6000, seed=1)
    a1, a2 = next(iter(tr))[0], next(iter(tr))[0]
    assert not torch.allclose(a1.sort(0).values, a2.sort(0).values)
    assert "random" in s.describe(1)


def test_holdout_and_subset_making(tmp_path):
    a = subset()
    v = a.holdout(1000)
    assert v.train_x.shape[0] == 5000 and torch.equal(v.test_x, a.train_x[-1000:])
    with pytest.raises(ValueError):
        a.holdout(6000)
    small = make_subset(a, train_per_class=20, test_per_class=5, seed=1)
    assert torch.equal(small.train_y.bincount(), torch.full((10,), 20))
    from impresslearn.data import save_subset

    save_subset(small, tmp_path / "s.npz")
    back = load_subset(tmp_path / "s.npz")
    assert torch.equal(back.train_x, small.train_x) and torch.equal(back.test_y, small.test_y)


def test_batches_reject_bad_batch_size():
    with pytest.raises(ValueError):
        Batches(torch.zeros(4, 28, 28, dtype=torch.uint8), torch.zeros(4), lambda x, g: x, 0, shuffle=False)


def test_full_mnist_through_torchvision(mnist_root):
    a = load_mnist(mnist_root)
    assert a.train_x.shape == (60000, 28, 28) and a.test_x.shape == (10000, 28, 28)


def test_missing_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="download"):
        load_mnist(tmp_path)
