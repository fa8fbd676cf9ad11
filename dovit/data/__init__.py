"""Data sets and augmentation for training and evaluating DoViT segmenters."""
from .datasets import (DATASETS, IGNORE_INDEX, DatasetInfo, SegmentationDataset, ade20k, build_dataset, camvid,
                       cityscapes, folders)
from .transforms import EvalTransform, TrainAugment

__all__ = ["DATASETS", "IGNORE_INDEX", "DatasetInfo", "SegmentationDataset", "ade20k", "build_dataset", "camvid",
           "cityscapes", "folders", "EvalTransform", "TrainAugment"]
