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


def test_incorrect_masks_give_chance_on_permuted_tasks():
    _, model = trained("topk")
    M = metrics.incorrect_mask_matrix(model, list(TASKS), eval_batches)
    diag = [M[i][i] for i in range(3)]
    off = metrics.off_diagonal(M)
    assert len(off) == 6
    assert min(diag) > 0.6
    assert all(v < 0.25 for v in off), off  # a mask of another permutation: ~10 %
