"""ConfusionMatrix: mIoU, PA and mPA on a hand-computed example, ignore handling, accumulation."""
import math

import numpy as np
import pytest
import torch

from dovit.evaluation.metrics import ConfusionMatrix

IGNORE = 255

# Seven pixels, three classes, one ignored. Rows = label, columns = prediction:
#   label 0: predicted 0, 1      label 1: predicted 1, 1      label 2: predicted 2, 0
LABEL = np.array([0, 0, 1, 1, 2, 2, IGNORE])
PREDICTION = np.array([0, 1, 1, 1, 2, 0, 2])


def test_hand_computed_example():
    matrix = ConfusionMatrix(3, IGNORE)
    matrix.update(PREDICTION, LABEL)
    np.testing.assert_array_equal(matrix.matrix, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    scores = matrix.scores()
    # IoU = TP / (label total + predicted total - TP): 1/(2+2-1), 2/(2+3-2), 1/(2+1-1)
    assert scores["per_class_iou"] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert scores["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert scores["pa"] == pytest.approx(4 / 6)  # 4 correct of the 6 counted pixels
    assert scores["mpa"] == pytest.approx((1 / 2 + 2 / 2 + 1 / 2) / 3)  # per-class recall, averaged


def test_ignored_pixels_are_not_counted():
    matrix = ConfusionMatrix(3, IGNORE)
    matrix.update(PREDICTION, LABEL)
    assert matrix.matrix.sum() == int((LABEL != IGNORE).sum())
    # Whatever is predicted at an ignored pixel changes nothing.
    for other in range(3):
        changed = ConfusionMatrix(3, IGNORE)
        changed.update(np.where(LABEL == IGNORE, other, PREDICTION), LABEL)
        np.testing.assert_array_equal(changed.matrix, matrix.matrix)
    # An all-ignore label map adds nothing at all.
    matrix.update(np.zeros(5, dtype=np.int64), np.full(5, IGNORE))
    assert matrix.matrix.sum() == 6


def test_perfect_prediction_scores_one():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 4, size=(6, 9))
    label[0, :3] = IGNORE
    prediction = np.where(label == IGNORE, 0, label)
    matrix = ConfusionMatrix(4, IGNORE)
    matrix.update(torch.from_numpy(prediction), torch.from_numpy(label))  # torch tensors are accepted too
    scores = matrix.scores()
    assert scores["miou"] == scores["pa"] == scores["mpa"] == 1.0
    assert scores["per_class_iou"] == [1.0] * 4


def test_absent_classes_are_left_out_of_the_means():
    matrix = ConfusionMatrix(5, IGNORE)
    matrix.update(np.array([0, 1, 1]), np.array([0, 1, 1]))  # classes 2..4 never appear
    scores = matrix.scores()
    assert scores["per_class_iou"] == [1.0, 1.0, None, None, None]
    assert scores["miou"] == 1.0 and scores["mpa"] == 1.0


def test_updates_accumulate_like_one_big_update():
    rng = np.random.default_rng(1)
    label = rng.integers(0, 3, size=(2, 8, 8))
    prediction = rng.integers(0, 3, size=(2, 8, 8))
    label[label == 2] = np.where(rng.random((label == 2).sum()) < 0.3, IGNORE, 2)
    whole, parts = ConfusionMatrix(3, IGNORE), ConfusionMatrix(3, IGNORE)
    whole.update(prediction, label)
    for image in range(2):
        parts.update(prediction[image], label[image])
    np.testing.assert_array_equal(whole.matrix, parts.matrix)
    assert whole.scores() == parts.scores()


def test_empty_matrix_scores_zero_not_nan():
    scores = ConfusionMatrix(3, IGNORE).scores()
    assert scores["miou"] == scores["pa"] == scores["mpa"] == 0.0
    assert not any(math.isnan(v) for v in (scores["miou"], scores["pa"], scores["mpa"]))


def test_out_of_range_prediction_is_an_error_not_a_miscount():
    # Before the check, prediction 3 at a label-0 pixel was counted as (label 1, prediction 0).
    matrix = ConfusionMatrix(3, IGNORE)
    with pytest.raises(ValueError, match=r"predictions must lie in \[0, 3\)"):
        matrix.update(np.array([3, 0]), np.array([0, 0]))
    assert matrix.matrix.sum() == 0
    # At ignored pixels any prediction is fine: they are not counted.
    matrix.update(np.array([IGNORE, 0]), np.array([IGNORE, 0]))
    assert matrix.matrix.sum() == 1


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="differ in shape"):
        ConfusionMatrix(3, IGNORE).update(np.zeros((4, 4), dtype=np.int64), np.zeros((4, 5), dtype=np.int64))
