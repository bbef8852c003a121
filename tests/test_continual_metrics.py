"""Accuracy matrix metrics against hand-computed values, and the incorrect-mask matrix."""

import math

import pytest
from continual_helpers import TASKS, eval_batches, trained

from impresslearn.continual import metrics


def test_matrix_metrics_by_hand():
    R = metrics.AccuracyMatrix(3)
    rows = [[0.9, math.nan, math.nan], [0.8, 0.95, math.nan], [0.7, 0.9, 0.85]]
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            if not math.isnan(v):
                R.record(i, j, v)
    assert R.average_accuracy() == pytest.approx((0.7 + 0.9 + 0.85) / 3)
    # forgetting: task 0 best before the end 0.9 -> 0.7; task 1 0.95 -> 0.9
    assert R.forgetting() == pytest.approx(((0.9 - 0.7) + (0.95 - 0.9)) / 2)
    assert R.backward_transfer() == pytest.approx(((0.7 - 0.9) + (0.9 - 0.95)) / 2)
    d = R.to_dict()
    assert d["matrix"][0][1] is None and d["matrix"][2][0] == 0.7
    one = metrics.AccuracyMatrix(1)
    one.record(0, 0, 0.5)
    assert one.forgetting() == 0.0 and one.backward_transfer() == 0.0


def test_sparse_matrix_metrics_skip_rows_not_measured():
    # rows 0..2 hold only the diagonal, row 3 and the last are full (--matrix-every 4)
    R = metrics.AccuracyMatrix(5)
    for i, v in enumerate([0.9, 0.8, 0.95, 0.7, 0.6]):
        R.record(i, i, v)
    for j, v in enumerate([0.85, 0.8, 0.9, 0.7]):
        R.record(3, j, v)
    for j, v in enumerate([0.8, 0.75, 0.9, 0.65, 0.6]):
        R.record(4, j, v)
    # task 0: best of 0.9 (diag) and 0.85 (row 3) -> 0.8; task 1: 0.8 -> 0.75; task 2: 0.95 -> 0.9;
    # task 3: 0.7 -> 0.65
    assert R.forgetting() == pytest.approx((0.1 + 0.05 + 0.05 + 0.05) / 4)
    assert R.backward_transfer() == pytest.approx((-0.1 - 0.05 - 0.05 - 0.05) / 4)
    assert not math.isnan(R.forgetting())


def test_incorrect_masks_give_chance_on_permuted_tasks():
    _, model = trained("topk")
    M = metrics.incorrect_mask_matrix(model, list(TASKS), eval_batches)
    diag = [M[i][i] for i in range(3)]
    off = metrics.off_diagonal(M)
    assert len(off) == 6
    assert min(diag) > 0.6
    assert all(v < 0.25 for v in off), off  # a mask of another permutation: ~10 %
