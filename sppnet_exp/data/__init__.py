"""Data: robust decoding, paper augmentation and test views, samplers, generated dataset, DataModules."""

from .base import ClassificationDataModule
from .caltech101 import Caltech101DataModule
from .generated import ensure_generated
from .imagenet import ImageNetDataModule
from .images import ImageDecodeError, ImageList, collate_eval, collate_train, decode_bytes, decode_file
from .samplers import (
    EpochShuffleSampler,
    SizeBucketBatchSampler,
    UnrepeatedDistributedSampler,
    unrepeated_shard,
)
from .transforms import IMAGENET_MEAN, IMAGENET_STD, EvalTransform, TrainTransform, normalize, resized_size
from .voc_cls import VOC2007ClsDataModule

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Caltech101DataModule",
    "ClassificationDataModule",
    "EpochShuffleSampler",
    "EvalTransform",
    "ImageDecodeError",
    "ImageList",
    "ImageNetDataModule",
    "SizeBucketBatchSampler",
    "TrainTransform",
    "UnrepeatedDistributedSampler",
    "VOC2007ClsDataModule",
    "collate_eval",
    "collate_train",
    "decode_bytes",
    "decode_file",
    "ensure_generated",
    "normalize",
    "resized_size",
    "unrepeated_shard",
]
