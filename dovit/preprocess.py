"""The one preprocessing path: resize to the working size, normalise, upsample logits, logits to a class mask.

The Predictor, evaluation (``EvalTransform``, ``evaluate_model``), the training losses and the app all go
through these functions, so that an image gives the same tensor, and logits the same mask, everywhere.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def resize_interpolation(source_size: tuple[int, int], target_size: tuple[int, int]) -> int:
    """The OpenCV interpolation for resizing (height, width) ``source_size`` to ``target_size``.

    ``cv2.INTER_AREA`` when no side grows (it averages the source pixels under each target pixel, so
    shrinking does not alias), ``cv2.INTER_LINEAR`` when any side grows (area sampling blurs nothing
    there and is blocky).
    """
    shrinking = target_size[0] <= source_size[0] and target_size[1] <= source_size[1]
    return cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) or (H, W) uint8 -> (height, width[, C]) at ``size`` = (height, width).

    Returns ``image`` itself when it already has that size; otherwise interpolates as
    :func:`resize_interpolation` says.
    """
    height, width = (int(v) for v in size)
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=resize_interpolation(image.shape[:2], (height, width)))


def normalise(image: np.ndarray, mean: Sequence[float], std: Sequence[float],
              device: str | torch.device | None = None) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 on ``device``: (pixel / 255 - mean) / std per channel."""
    pixels = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(mean, dtype=torch.float32, device=pixels.device).view(3, 1, 1)
    std = torch.tensor(std, dtype=torch.float32, device=pixels.device).view(3, 1, 1)
    return (pixels - mean) / std


def preprocess_image(image: np.ndarray, size: tuple[int, int], mean: Sequence[float], std: Sequence[float],
                     device: str | torch.device | None = None) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> normalised (3, height, width) float32: :func:`resize_image` then :func:`normalise`."""
    return normalise(resize_image(image, size), mean, std, device)


def upsample_logits(logits: torch.Tensor, size: tuple[int, int], patch_size: int = 1) -> torch.Tensor:
    """(B, C, h, w) logits -> (B, C, height, width) at ``size`` = (height, width), bilinear.

    Logits computed on an input padded at the bottom and right to a multiple of ``patch_size`` (token-grid
    logits, or a decoder's output on the padded image) cover the padded size, not ``size``: they are
    upsampled to the padded size and the padding cropped off, so that every pixel keeps its position.
    ``patch_size=1`` (no padding) upsamples straight to ``size``.
    """
    height, width = (int(v) for v in size)
    padded = (-(-height // patch_size) * patch_size, -(-width // patch_size) * patch_size)
    if tuple(logits.shape[-2:]) != padded:
        logits = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
    return logits if padded == (height, width) else logits[..., :height, :width]


def logits_to_mask(logits: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """(B, C, h, w) logits -> (B, height, width) int64 class ids: the argmax over classes, after a bilinear
    upsample of the logits to ``size`` = (height, width) when given (labels and the input image are
    usually larger than the working size). Ties give the first maximal class, as ``argmax`` does."""
    if size is not None:
        logits = upsample_logits(logits, size)
    # max(dim).indices gives argmax's indices (first maximal class, NaN as maximal) and measured 6x faster on
    # the project's CPU for (1, C, 360, 480) logits (docs/benchmarks.md, issue 11).
    return logits.max(dim=1).indices
