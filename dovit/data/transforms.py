"""OpenCV augmentation for training and the plain resize for evaluation."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from ..preprocess import normalise, resize_image
from .datasets import IGNORE_INDEX


def to_tensors(image: np.ndarray, label: np.ndarray, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W, 3) uint8, (H, W) int -> normalised (3, H, W) float32, (H, W) int64."""
    return normalise(image, mean, std), torch.from_numpy(np.ascontiguousarray(label)).long()


class TrainAugment:
    """Random scale, random crop (padding with ignore), horizontal flip, photometric jitter, camera effects.

    ``jitter`` scales contrast, brightness, saturation and hue changes. ``camera`` is the chance of each of
    gamma (dusk / sun), Gaussian blur (focus, motion), sensor noise and JPEG re-compression: the ways a
    street photo from another camera and hour differs from the training drives.
    """

    def __init__(self, crop_size: tuple[int, int], mean, std, scale_range=(0.5, 2.0), jitter: float = 0.3,
                 camera: float = 0.0) -> None:
        if not 0.0 <= camera <= 1.0:
            raise ValueError(f"camera augmentation probability must lie in [0, 1], got {camera}")
        self.crop_size = crop_size
        self.mean, self.std = mean, std
        self.scale_range = scale_range
        self.jitter = jitter
        self.camera = camera
        self._rng: np.random.Generator | None = None
        self._rng_seed: int | None = None

    @property
    def rng(self) -> np.random.Generator:
        # Seeded from torch's per-process seed: DataLoader workers (and epochs) then draw different,
        # reproducible augmentations instead of copies of one generator.
        seed = torch.initial_seed()
        if self._rng is None or seed != self._rng_seed:
            self._rng, self._rng_seed = np.random.default_rng(seed), seed
        return self._rng

    def __call__(self, image: np.ndarray, label: np.ndarray):
        rng = self.rng
        scale = rng.uniform(*self.scale_range)
        height, width = image.shape[:2]
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(label.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(np.int64)
        crop_h, crop_w = self.crop_size
        pad_h, pad_w = max(crop_h - image.shape[0], 0), max(crop_w - image.shape[1], 0)
        if pad_h or pad_w:
            image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0)
            label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=IGNORE_INDEX)
        top = rng.integers(0, image.shape[0] - crop_h + 1)
        left = rng.integers(0, image.shape[1] - crop_w + 1)
        image = image[top : top + crop_h, left : left + crop_w]
        label = label[top : top + crop_h, left : left + crop_w]
        if rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        if self.jitter > 0:
            image = self._photometric(image)
        if self.camera > 0:
            image = self._camera_effects(np.ascontiguousarray(image))
        return to_tensors(image, label, self.mean, self.std)

    def _photometric(self, image: np.ndarray) -> np.ndarray:
        rng, j = self.rng, self.jitter
        work = image.astype(np.float32)
        work = work * rng.uniform(1 - j, 1 + j) + rng.uniform(-j, j) * 64  # contrast, brightness
        hsv = cv2.cvtColor(np.clip(work, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 1] *= rng.uniform(1 - j, 1 + j)  # saturation
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-9, 9)) % 180  # hue (OpenCV hue is 0-179)
        return cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)

    def _camera_effects(self, image: np.ndarray) -> np.ndarray:
        """Each effect with probability ``camera``; uint8 RGB in and out, labels unaffected."""
        rng, p = self.rng, self.camera
        if rng.random() < p:  # gamma 0.6-1.6: dusk darkens mid-tones, sun washes them out
            gamma = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
            table = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma, 0, 255).astype(np.uint8)
            image = cv2.LUT(image, table)
        if rng.random() < p:
            image = cv2.GaussianBlur(image, (0, 0), sigmaX=float(rng.uniform(0.3, 1.5)))
        if rng.random() < p:
            noise = rng.normal(0.0, rng.uniform(2.0, 10.0), image.shape)
            image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        if rng.random() < p:
            quality = int(rng.integers(30, 91))
            _, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            image = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
        return image


class EvalTransform:
    """Resize the image to the working size as the Predictor does (``dovit.preprocess.resize_image``; None
    keeps it as it is); labels stay at full resolution for honest metrics."""

    def __init__(self, size: tuple[int, int] | None, mean, std) -> None:
        self.size, self.mean, self.std = size, mean, std

    def __call__(self, image: np.ndarray, label: np.ndarray):
        if self.size is not None:
            image = resize_image(image, self.size)
        return to_tensors(image, label, self.mean, self.std)
