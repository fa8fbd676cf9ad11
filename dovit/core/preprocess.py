"""The one preprocessing path: the working size (the image's own aspect at the checkpoint's token budget),
resize to it, normalise, upsample logits, logits to a class mask.

The Predictor, evaluation (``EvalTransform``, ``evaluate_model``), the training losses and the app all go
through these functions, so that an image gives the same tensor, and logits the same mask, everywhere.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

MAX_WORKING_ASPECT = 4.0  # the longest side at most 4x the shortest in the working size (aspect_working_size)


def aspect_working_size(image_size: tuple[int, int], input_size: tuple[int, int],
                        patch_size: int) -> tuple[int, int]:
    """The (height, width) the model works at for an image of (height, width) ``image_size``: the image's
    own aspect ratio at the token budget of the checkpoint's ``input_size`` (the same area in pixels), each
    side at least one ``patch_size`` patch, so that no photo is squeezed into the checkpoint's shape.

    An image with exactly the input size's aspect ratio gets exactly ``input_size`` (a 720 x 960 CamVid
    frame: 360 x 480), so every result at the checkpoint's shape stays as it was. A 540 x 960 (16:9) photo at
    360 x 480 gets 312 x 554, a 20 x 35 grid of 16-px patches (23 x 30 when squeezed). Aspects beyond
    ``MAX_WORKING_ASPECT`` (a panorama strip, a 10 x 1000 banner) are squeezed to it, so that one side does
    not grow to thousands of pixels and a handful of patches across.
    """
    height, width = (int(v) for v in image_size)
    input_height, input_width = (int(v) for v in input_size)
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if height * input_width == width * input_height:  # the same aspect, exactly (integers, no rounding)
        return input_height, input_width
    aspect = min(max(height / width, 1 / MAX_WORKING_ASPECT), MAX_WORKING_ASPECT)
    # h * w = input area with h / w = aspect
    width_scaled = math.sqrt(input_height * input_width / aspect)
    return max(patch_size, round(aspect * width_scaled)), max(patch_size, round(width_scaled))


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
    return cv2.resize(image, (width, height), interpolation=resize_interpolation(image.shape[:2], (height,
                                                                                                   width)))


def normalise(image: np.ndarray, mean: Sequence[float], std: Sequence[float],
              device: str | torch.device | None = None) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 on ``device``: (pixel / 255 - mean) / std per channel."""
    pixels = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(mean, dtype=torch.float32, device=pixels.device).view(3, 1, 1)
    std = torch.tensor(std, dtype=torch.float32, device=pixels.device).view(3, 1, 1)
    return (pixels - mean) / std


def preprocess_image(image: np.ndarray, size: tuple[int, int], mean: Sequence[float], std: Sequence[float],
                     device: str | torch.device | None = None) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> normalised (3, height, width) float32: :func:`resize_image` then
    :func:`normalise`."""
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
    usually larger than the working size). Ties give the first maximal class, as ``argmax`` does.

    With finite logits the mask at another size comes from :func:`resample_labels`, which skips the
    upsample where it cannot change the class.
    """
    if size is not None and tuple(int(v) for v in size) != tuple(logits.shape[-2:]):
        if bool(torch.isfinite(logits).all()):
            return resample_labels(logits.detach(), size)
        logits = upsample_logits(logits, size)  # NaN/inf: argmax's own rules over the upsampled values
    # max(dim).indices gives argmax's indices (first maximal class, NaN as maximal) and measured 6x faster on
    # the project's CPU for (1, C, 360, 480) logits (docs/benchmarks.md, issue 11).
    return logits.max(dim=1).indices


# resample_labels works in label space only when the output has at least this many times the source's
# pixels and at most this fraction of source 2 x 2 blocks mix classes; otherwise the plain upsample is
# cheaper. Measured on the 2-core CPU (docs/benchmarks.md, issue 11): CamVid frames have 2.5-3.4 % mixed
# blocks at 360 x 480 (label space 1.26x faster at 720 x 960, 3.1x at 1080 x 1440); logits with 32 % mixed
# blocks were 1.3-3x slower in label space than the upsample at those sizes.
LABEL_SPACE_MIN_SCALE = 2.0
LABEL_SPACE_MAX_MIXED = 0.05


def resample_labels(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The class mask of ``F.interpolate(logits, size, mode="bilinear", align_corners=False)`` without
    materialising the upsampled logits: (B, C, h, w) finite logits -> (B, height, width) int64.

    Each output pixel's bilinear logits are a convex combination of the logits of (at most) a 2 x 2 block of
    source cells. If all four cells have the same first maximal class c, then c stays first maximal in any
    convex combination (each margin l_c - l_k is >= 0, or > 0 for k < c, at every cell, so also in the
    mixture): the pixel takes c without interpolating. Only pixels whose block mixes classes are
    interpolated (with the taps and weights of torch's kernel) and take the argmax there. The mask equals
    the upsample-then-argmax one except where float rounding flips a near-tie. Where that would not be
    cheaper (see ``LABEL_SPACE_MIN_SCALE``, ``LABEL_SPACE_MAX_MIXED``) it is the upsample-then-argmax.
    """
    height, width = (int(v) for v in size)
    batch, classes, h, w = logits.shape
    if height * width < LABEL_SPACE_MIN_SCALE * h * w:  # decided before any work at the source size
        return upsample_logits(logits, size).max(dim=1).indices
    labels = logits.max(dim=1).indices  # (B, h, w) first maximal class per source cell
    uniform = uniform_blocks(labels)
    if 1.0 - uniform.float().mean().item() > LABEL_SPACE_MAX_MIXED:
        return upsample_logits(logits, size).max(dim=1).indices
    row0, row1, row_weight = _linear_taps(h, height, logits.device)
    col0, col1, col_weight = _linear_taps(w, width, logits.device)
    # One small-integer gather carries both the class and the uniform flag (int64 gathers move 4x the bytes).
    code = (labels * 2 + uniform).to(torch.int16 if classes < 2**14 else torch.int64)
    picked = code.index_select(1, row0).gather(2, col0.expand(batch, height, width))  # each pixel's block
    mask = (picked >> 1).to(torch.int64)
    b, y, x = (picked & 1).logical_not_().nonzero(as_tuple=True)
    if b.numel():
        # one contiguous row of C logits per cell: gathering rows of the strided view was 6x slower
        cells = logits.permute(0, 2, 3, 1).contiguous().view(batch * h * w, classes)
        source_rows = torch.stack([row0[y], row0[y], row1[y], row1[y]]) + (b * h).unsqueeze(0)
        index = source_rows * w + torch.stack([col0[x], col1[x], col0[x], col1[x]])
        corners = cells.index_select(0, index.flatten()).view(4, -1, classes)  # one call: 7x faster than four
        wy, wx = row_weight[y].unsqueeze(1), col_weight[x].unsqueeze(1)
        top = corners[0] * (1 - wx) + corners[1] * wx
        bottom = corners[2] * (1 - wx) + corners[3] * wx
        mask[b, y, x] = (top * (1 - wy) + bottom * wy).max(dim=1).indices
    return mask


def uniform_blocks(labels: torch.Tensor) -> torch.Tensor:
    """(B, h, w) class ids -> (B, h, w) bool: cells (i, j), (i, j+1), (i+1, j), (i+1, j+1) share one class
    (the last row and column compare with themselves: edges replicated, as bilinear taps clamp)."""
    uniform = labels == torch.cat([labels[..., 1:], labels[..., -1:]], dim=2)
    uniform &= torch.cat([uniform[:, 1:], uniform[:, -1:]], dim=1)
    uniform &= labels == torch.cat([labels[:, 1:], labels[:, -1:]], dim=1)
    return uniform


def _linear_taps(source: int, target: int,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear (align_corners=False) taps along one axis, as torch computes them: for each of ``target``
    output positions, the two source indices (int64) and the weight (float32) of the second."""
    scale = torch.tensor(source, dtype=torch.float32) / target  # one float32 division, as torch's kernel
    position = ((torch.arange(target, dtype=torch.float32) + 0.5) * scale - 0.5).clamp(min=0.0)
    first = position.to(torch.int64).clamp(max=source - 1)
    second = (first + 1).clamp(max=source - 1)
    weight = (position - first.to(torch.float32)).clamp(0.0, 1.0)
    return first.to(device), second.to(device), weight.to(device)


def class_mask(logits: torch.Tensor, size: tuple[int, int] | None = None) -> np.ndarray:
    """One image's (1, C, h, w) logits -> its (height, width) int64 numpy class ids at ``size``
    (:func:`logits_to_mask`; None keeps the logits' size)."""
    return logits_to_mask(logits, size)[0].cpu().numpy()
