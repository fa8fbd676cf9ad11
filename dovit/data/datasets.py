"""Segmentation data sets as (image path, label path) pairs, with their class names and colours.

Every data set yields RGB uint8 images (H, W, 3) and int64 label maps (H, W) with ``IGNORE_INDEX``
for pixels that count in neither loss nor metrics.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

from ..core.config import default_palette

IGNORE_INDEX = 255
# Where the commands look for CamVid by default: beside the checkout, relative to where they run.
DEFAULT_DATA_ROOT = "../shared/data/camvid"


def data_root_beside(checkout: str | Path) -> Path:
    """``DEFAULT_DATA_ROOT`` seen from ``checkout`` (the folder a command would run in), without resolving
    links."""
    return Path(os.path.normpath(Path(checkout) / DEFAULT_DATA_ROOT))

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

CAMVID_CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
                  "Pedestrian", "Bicyclist"]
CAMVID_COLORS = [(128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
                 (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)]
CITYSCAPES_CLASSES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                      "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                      "motorcycle", "bicycle"]
CITYSCAPES_COLORS = [(128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
                     (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
                     (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
                     (0, 80, 100), (0, 0, 230), (119, 11, 32)]


@dataclass
class DatasetInfo:
    name: str
    class_names: list[str]
    class_colors: list[tuple[int, int, int]]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def read_rgb(path: str | Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: str | Path) -> np.ndarray:
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise OSError(f"cannot read label {path}")
    if label.ndim == 3:
        label = label[..., 0]
    return label.astype(np.int64)


def sequence_of(image_path: str | Path) -> str:
    """The recording (drive, city) a frame comes from: its file name up to the first '_'.

    CamVid names frames ``<drive>_<frame>`` (``0016E5_07959.png``), Cityscapes ``<city>_<seq>_<frame>_...``;
    frames of one drive look alike, so validation that predicts unseen streets holds whole drives out.
    """
    return Path(image_path).name.split("_", 1)[0]


class SegmentationDataset(Dataset):
    """Pairs of image and label files; ``label_map`` turns stored ids into train ids (IGNORE_INDEX = skip)."""

    def __init__(self, pairs: list[tuple[Path, Path]], info: DatasetInfo,
                 label_map: Callable[[np.ndarray], np.ndarray] | None = None, transform=None,
                 source: str = "") -> None:
        if not pairs:
            raise FileNotFoundError(f"{info.name}: no image/label pairs found" + (f" ({source})" if source
                                                                                  else ""))
        self.pairs = pairs
        self.info = info
        self.label_map = label_map
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def sequences(self) -> dict[str, int]:
        """Frames per recording (``sequence_of``), sorted by name."""
        return dict(sorted(Counter(sequence_of(image_path) for image_path, _ in self.pairs).items()))

    def select_sequences(self, include: list[str] | None = None,
                         exclude: list[str] | None = None) -> SegmentationDataset:
        """The frames of the ``include`` recordings (all when None) minus those of ``exclude``.

        Raises ValueError naming the recordings that exist when a requested one has no frames here.
        """
        present = self.sequences
        unknown = [s for s in (include or []) + (exclude or []) if s not in present]
        if unknown:
            raise ValueError(f"{self.info.name}: no frames of recording(s) {unknown}; this split has "
                             + ", ".join(f"{name} ({count})" for name, count in present.items()))
        pairs = [(image, label) for image, label in self.pairs
                 if (include is None or sequence_of(image) in include) and sequence_of(image) not in (exclude
                                                                                                      or [])]
        return SegmentationDataset(pairs, self.info, self.label_map, self.transform,
                                   source=f"recordings {include or 'all'} minus {exclude or 'none'}")

    def load_label(self, index: int) -> np.ndarray:
        label = read_label(self.pairs[index][1])
        return self.label_map(label) if self.label_map is not None else label

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path = self.pairs[index][0]
        image, label = read_rgb(image_path), self.load_label(index)
        if image.shape[:2] != label.shape:
            raise ValueError(f"{image_path}: image {image.shape[:2]} and label {label.shape} differ in size")
        return image, label

    def __getitem__(self, index: int):
        image, label = self.load(index)
        return self.transform(image, label) if self.transform else (image, label)


def class_frequencies(dataset: SegmentationDataset) -> np.ndarray:
    """Fraction of labelled pixels per class over the whole data set (labels only; ignore pixels skipped)."""
    counts = np.zeros(dataset.info.num_classes, dtype=np.int64)
    for index in range(len(dataset)):
        label = dataset.load_label(index)
        valid = label[label != IGNORE_INDEX]
        counts += np.bincount(valid.ravel(), minlength=counts.size)[: counts.size]
    return counts / max(1, counts.sum())


def balanced_class_weights(frequencies: np.ndarray, power: float) -> np.ndarray:
    """Median-frequency balancing (Eigen & Fergus 2015, as SegNet uses on CamVid), softened by ``power``.

    weight_c = (median(f) / f_c) ** power: power 0 gives all ones, 1 full balancing. Absent classes get 1.
    """
    present = frequencies > 0
    weights = np.ones_like(frequencies, dtype=np.float64)
    weights[present] = (np.median(frequencies[present]) / frequencies[present]) ** power
    return weights


def _paired_dataset(info: DatasetInfo, image_dir: Path, label_dir: Path, label_map=None, transform=None,
                    label_name: Callable[[Path], str] = lambda p: p.name) -> SegmentationDataset:
    """Every image below image_dir whose label (same relative folder, ``label_name``) exists in label_dir."""
    image_dir, label_dir = Path(image_dir), Path(label_dir)
    images = sorted(p for p in image_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    pairs = [(p, label_dir / p.relative_to(image_dir).parent / label_name(p)) for p in images]
    pairs = [(image, label) for image, label in pairs if label.exists()]
    return SegmentationDataset(pairs, info, label_map, transform,
                               source=f"looked for images in {image_dir} with labels in {label_dir}")


def camvid(root: str | Path, split: str, transform=None) -> SegmentationDataset:
    """CamVid, SegNet layout: ``root/{split}`` images and ``root/{split}annot`` same-stem PNG labels; id 11
    ignored."""
    root = Path(root)
    info = DatasetInfo("camvid", CAMVID_CLASSES, CAMVID_COLORS)

    def to_train_ids(label: np.ndarray) -> np.ndarray:
        return np.where(label < 11, label, IGNORE_INDEX)

    return _paired_dataset(info, root / split, root / f"{split}annot", to_train_ids, transform,
                           lambda p: p.with_suffix(".png").name)


def cityscapes(root: str | Path, split: str, transform=None) -> SegmentationDataset:
    """Cityscapes: ``leftImg8bit/{split}/*/*_leftImg8bit.png`` with
    ``gtFine/..._gtFine_labelTrainIds.png``."""
    root = Path(root)
    info = DatasetInfo("cityscapes", CITYSCAPES_CLASSES, CITYSCAPES_COLORS)
    return _paired_dataset(info, root / "leftImg8bit" / split, root / "gtFine" / split, None, transform,
                           lambda p: p.name.replace("_leftImg8bit", "_gtFine_labelTrainIds"))


def ade20k(root: str | Path, split: str, transform=None) -> SegmentationDataset:
    """ADE20K (``ADEChallengeData2016``): images/{training,validation}, annotations/...; 0 = ignore."""
    root = Path(root)
    folder = {"train": "training", "val": "validation"}.get(split, split)
    names = _ade20k_class_names()
    info = DatasetInfo("ade20k", names, default_palette(len(names)))

    def to_train_ids(label: np.ndarray) -> np.ndarray:
        return np.where(label == 0, IGNORE_INDEX, label - 1)

    return _paired_dataset(info, root / "images" / folder, root / "annotations" / folder, to_train_ids,
                           transform,
                           lambda p: p.with_suffix(".png").name)


def folders(image_dir: str | Path, label_dir: str | Path, class_names: list[str],
            transform=None) -> SegmentationDataset:
    """Generic pairs: every image in image_dir with a same-stem .png label in label_dir (255 = ignore)."""
    info = DatasetInfo("folders", list(class_names), default_palette(len(class_names)))
    return _paired_dataset(info, image_dir, label_dir, None, transform, lambda p: p.with_suffix(".png").name)


def _ade20k_class_names() -> list[str]:
    from .ade20k_classes import ADE20K_CLASSES

    return list(ADE20K_CLASSES)


DATASETS = {"camvid": camvid, "cityscapes": cityscapes, "ade20k": ade20k}


def build_dataset(name: str, root: str | Path, split: str, transform=None, sequences: list[str] | None = None,
                  exclude_sequences: list[str] | None = None) -> SegmentationDataset:
    """One of DATASETS by name; raises a clear error for an unknown name or an empty folder.

    ``split`` may join splits with '+' (``"train+val"``: every labelled frame); ``sequences`` keeps only
    those recordings (file-name prefixes, e.g. CamVid drives ``0001TP 0006R0 0016E5``) and
    ``exclude_sequences`` drops some, for validation on drives that training never saw.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose from {sorted(DATASETS)}")
    parts = [DATASETS[name](root, part, transform) for part in split.split("+")]
    dataset = parts[0]
    if len(parts) > 1:
        dataset = SegmentationDataset([pair for part in parts for pair in part.pairs], dataset.info,
                                      dataset.label_map, transform, source=f"splits {split}")
    if sequences or exclude_sequences:
        dataset = dataset.select_sequences(list(sequences) if sequences else None,
                                           list(exclude_sequences or []))
    return dataset
