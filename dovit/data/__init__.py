"""Data sets and augmentation for training and evaluating DoViT segmenters."""
from .datasets import (
    DATASETS,
    DEFAULT_DATA_ROOT,
    IGNORE_INDEX,
    DatasetInfo,
    SegmentationDataset,
    ade20k,
    balanced_class_weights,
    build_dataset,
    camvid,
    cityscapes,
    class_frequencies,
    data_root_beside,
    folders,
    sequence_of,
)
from .transforms import EvalTransform, TrainAugment

__all__ = ["DATASETS", "DEFAULT_DATA_ROOT", "IGNORE_INDEX", "data_root_beside", "DatasetInfo",
           "SegmentationDataset", "ade20k", "balanced_class_weights",
           "build_dataset", "camvid", "cityscapes", "class_frequencies", "folders", "sequence_of",
           "EvalTransform", "TrainAugment"]
