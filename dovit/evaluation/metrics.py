"""Segmentation metrics from a confusion matrix: mIoU, pixel accuracy (PA), mean pixel accuracy (mPA)."""
from __future__ import annotations

import numpy as np
import torch


class ConfusionMatrix:
    """Accumulates a C x C confusion matrix (rows = label, cols = prediction), ignoring ``ignore_index``."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, prediction: torch.Tensor | np.ndarray, label: torch.Tensor | np.ndarray) -> None:
        """prediction, label: integer maps of one shape (any, e.g. (H, W) or (B, H, W)); labels outside
        [0, C) (such as ``ignore_index``) are skipped, predictions at counted pixels must lie in [0, C)."""
        prediction, label = torch.as_tensor(prediction), torch.as_tensor(label)
        if prediction.shape != label.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and label {tuple(label.shape)} differ in "
                             "shape")
        prediction, label = prediction.reshape(-1).long().cpu(), label.reshape(-1).long().cpu()
        valid = (label != self.ignore_index) & (label >= 0) & (label < self.num_classes)
        prediction, label = prediction[valid], label[valid]
        # An out-of-range prediction would land in another cell of the flattened matrix and be miscounted.
        if prediction.numel() and (int(prediction.min()) < 0 or int(prediction.max()) >= self.num_classes):
            raise ValueError(f"predictions must lie in [0, {self.num_classes}), got "
                             f"{int(prediction.min())}..{int(prediction.max())}")
        index = label * self.num_classes + prediction
        counts = torch.bincount(index, minlength=self.num_classes**2)
        self.matrix += counts.numpy().reshape(self.num_classes, self.num_classes)

    def scores(self) -> dict:
        """mIoU, PA, mPA (fractions in [0, 1]) and per-class IoU; classes absent from labels and
        predictions are NaN in the per-class list and left out of the means."""
        matrix = self.matrix.astype(np.float64)
        true_positive = np.diag(matrix)
        label_total, predicted_total = matrix.sum(axis=1), matrix.sum(axis=0)
        union = label_total + predicted_total - true_positive
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, true_positive / union, np.nan)
            class_accuracy = np.where(label_total > 0, true_positive / label_total, np.nan)
        return {
            "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0,
            "pa": float(true_positive.sum() / max(matrix.sum(), 1.0)),
            "mpa": float(np.nanmean(class_accuracy)) if np.isfinite(class_accuracy).any() else 0.0,
            "per_class_iou": [None if np.isnan(v) else float(v) for v in iou],
        }
