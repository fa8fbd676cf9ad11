"""A tiny synthetic segmentation set (coloured rectangles and discs on a gradient) for tests and smoke
runs."""
from __future__ import annotations

import cv2
import numpy as np

from .datasets import DatasetInfo

SYNTHETIC_INFO = DatasetInfo("synthetic", ["background", "box", "disc"], [(40, 40, 40), (220, 60, 60), (60,
                                                                                                        200,
                                                                                                        90)])


class SyntheticDataset:
    def __init__(self, count: int, size: tuple[int, int], seed: int = 0, transform=None) -> None:
        self.count, self.size, self.seed, self.transform = count, size, seed, transform
        self.info = SYNTHETIC_INFO

    def __len__(self) -> int:
        return self.count

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed * 100003 + index)
        height, width = self.size
        ramp = np.linspace(40, 120, width, dtype=np.float32)[None, :, None]
        image = np.broadcast_to(ramp, (height, width, 3)).astype(np.uint8).copy()
        label = np.zeros((height, width), dtype=np.uint8)
        for _ in range(rng.integers(1, 4)):
            y, x = int(rng.integers(0, height)), int(rng.integers(0, width))
            extent = int(rng.integers(max(4, height // 8), max(5, height // 3)))
            if rng.random() < 0.5:
                cv2.rectangle(image, (x, y), (x + extent, y + extent), (220, 60, 60), -1)
                cv2.rectangle(label, (x, y), (x + extent, y + extent), 1, -1)
            else:
                cv2.circle(image, (x, y), extent // 2, (60, 200, 90), -1)
                cv2.circle(label, (x, y), extent // 2, 2, -1)
        return image, label.astype(np.int64)

    def __getitem__(self, index: int):
        image, label = self.load(index)
        return self.transform(image, label) if self.transform else (image, label)


def synthetic_dataset(count: int, size: tuple[int, int], seed: int = 0, transform=None) -> SyntheticDataset:
    return SyntheticDataset(count, size, seed, transform)
