"""Data sets and augmentation for training and evaluating DoViT segmenters."""
from .datasets import (DATASETS, IGNORE_INDEX, DatasetInfo, SegmentationDataset, ade20k, balanced_class_weights,
                       build_dataset, camvid, cityscapes, class_frequencies, folders, sequence_of)
from .transforms import EvalTransform, TrainAugment

__all__ = ["DATASETS", "IGNORE_INDEX", "DatasetInfo", "SegmentationDataset", "ade20k", "balanced_class_weights",
           "build_dataset", "camvid", "cityscapes", "class_frequencies", "folders", "sequence_of", "EvalTransform", "TrainAugment"]
