"""Token-grid geometry at image resolution: which token each pixel belongs to, and per-token majorities.

The model resizes an (H, W) image to its working size (h_w, w_w), pads that at the bottom/right to a
multiple of the patch size and cuts it into an (h, w) grid of patch x patch tokens. A pixel of the
original image belongs to the token whose patch holds its centre after the resize.
"""
from __future__ import annotations

import numpy as np


def token_index_map(image_size: tuple[int, int], working_size: tuple[int, int], grid: tuple[int, int],
                    patch: int) -> np.ndarray:
    """(H, W) int64: the flat token index (row * w + column, in [0, h * w)) of every pixel of an image of
    ``image_size`` = (H, W) that the model saw at ``working_size`` on a ``grid`` = (h, w) token grid."""
    rows, columns = token_rows_and_columns(image_size, working_size, grid, patch)
    return rows[:, None] * grid[1] + columns[None, :]


def token_rows_and_columns(image_size: tuple[int, int], working_size: tuple[int, int], grid: tuple[int, int],
                           patch: int) -> tuple[np.ndarray, np.ndarray]:
    """(H,) and (W,) int64: the token row of every pixel row and the token column of every pixel column of
    an image of ``image_size`` = (H, W) (``token_index_map`` is their outer combination)."""
    height, width = (int(v) for v in image_size)
    rows = ((np.arange(height) + 0.5) * working_size[0] / height // patch).astype(np.int64)
    columns = ((np.arange(width) + 0.5) * working_size[1] / width // patch).astype(np.int64)
    return np.minimum(rows, grid[0] - 1), np.minimum(columns, grid[1] - 1)


def token_starts(token_of_pixel: np.ndarray) -> np.ndarray:
    """Indices of the pixel rows (or columns) where a new token begins, 0 first, from the (H,) token row of
    each pixel row (``token_rows_and_columns``): where a drawn token grid puts its lines."""
    return np.flatnonzero(np.diff(token_of_pixel, prepend=-1))


def token_majority(values: np.ndarray, token_index: np.ndarray, num_tokens: int, num_classes: int,
                   ignore_index: int | None = None) -> np.ndarray:
    """(num_tokens,) int64: the most frequent class of ``values`` (H, W) int within each token's pixels.

    Pixels whose value lies outside [0, num_classes) (``ignore_index``, CamVid's void) do not vote; a
    token without a voting pixel gets ``ignore_index`` (-1 when None). Ties go to the lower class id.
    """
    values, token_index = np.asarray(values).reshape(-1), np.asarray(token_index).reshape(-1)
    valid = (values >= 0) & (values < num_classes)
    counts = np.bincount(token_index[valid] * num_classes + values[valid].astype(np.int64),
                         minlength=num_tokens * num_classes).reshape(num_tokens, num_classes)
    majority = counts.argmax(axis=1)
    return np.where(counts.sum(axis=1) > 0, majority, -1 if ignore_index is None else ignore_index)


def token_sums(weights: np.ndarray, token_index: np.ndarray, num_tokens: int) -> np.ndarray:
    """(num_tokens,) float64: the sum of ``weights`` (H, W) over each token's pixels."""
    return np.bincount(np.asarray(token_index).reshape(-1), weights=np.asarray(weights,
                                                                               np.float64).reshape(-1),
                       minlength=num_tokens)


def expand_tokens(token_map: np.ndarray, token_index: np.ndarray) -> np.ndarray:
    """Per-token values (h, w, ...) -> per-pixel values (H, W, ...) through a ``token_index_map``."""
    token_map = np.asarray(token_map)
    return token_map.reshape(-1, *token_map.shape[2:]).take(token_index, axis=0)  # faster than [token_index]
