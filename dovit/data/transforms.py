"""Training augmentation (albumentations presets) and the plain resize for evaluation."""
from __future__ import annotations

import numpy as np
import torch

from ..core.preprocess import normalise, resize_image
from .augment import build_augment
from .datasets import IGNORE_INDEX


def to_tensors(image: np.ndarray, label: np.ndarray, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W, 3) uint8, (H, W) int -> normalised (3, H, W) float32, (H, W) int64."""
    return normalise(image, mean, std), torch.from_numpy(np.ascontiguousarray(label)).long()


class TrainAugment:
    """A named albumentations preset (``dovit.data.augment``: 'standard' or 'robust') on image and label.

    ``jitter`` scales the colour jitter; ``camera`` is the chance of each of the standard preset's camera
    effects (gamma, blur, sensor noise, JPEG). Labels follow every geometric step (nearest neighbour,
    padding with the ignore index).
    """

    def __init__(self, crop_size: tuple[int, int], mean, std, scale_range=(0.5, 2.0), jitter: float = 0.3,
                 camera: float = 0.0, preset: str = "standard") -> None:
        self.pipeline = build_augment(preset, crop_size, scale_range, jitter, camera, IGNORE_INDEX)
        self.crop_size, self.preset = tuple(crop_size), preset
        self.mean, self.std = mean, std
        self._seed: int | None = None

    def __call__(self, image: np.ndarray, label: np.ndarray):
        # Seeded from torch's per-process seed: DataLoader workers (and epochs) then draw different,
        # reproducible augmentations instead of copies of one generator.
        seed = torch.initial_seed()
        if seed != self._seed:
            self.pipeline.set_random_seed(seed % 2**32)
            self._seed = seed
        out = self.pipeline(image=np.ascontiguousarray(image), mask=label.astype(np.uint8))
        return to_tensors(out["image"], out["mask"].astype(np.int64), self.mean, self.std)


class EvalTransform:
    """Resize the image to the working size as the Predictor does (``dovit.core.preprocess.resize_image``;
    None keeps it as it is); labels stay at full resolution for honest metrics."""

    def __init__(self, size: tuple[int, int] | None, mean, std) -> None:
        self.size, self.mean, self.std = size, mean, std

    def __call__(self, image: np.ndarray, label: np.ndarray):
        if self.size is not None:
            image = resize_image(image, self.size)
        return to_tensors(image, label, self.mean, self.std)
