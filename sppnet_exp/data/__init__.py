"""Data: robust decoding, paper augmentation and test views, samplers, generated dataset, DataModules.

The names below are imported on first use (PEP 562), so a light submodule (:mod:`.roots`,
:mod:`.detection_layout`) can be imported without torch and Lightning.
"""

from __future__ import annotations

from sppnet_exp.utils.lazy import lazy_getattr

_SOURCES = {
    "ClassificationDataModule": "base",
    "Caltech101DataModule": "caltech101",
    "ensure_generated": "generated",
    "ImageNetDataModule": "imagenet",
    "ImageDecodeError": "images",
    "ImageList": "images",
    "collate_eval": "images",
    "collate_train": "images",
    "decode_bytes": "images",
    "decode_file": "images",
    "EpochShuffleSampler": "samplers",
    "SizeBucketBatchSampler": "samplers",
    "UnrepeatedDistributedSampler": "samplers",
    "unrepeated_shard": "samplers",
    "IMAGENET_MEAN": "transforms",
    "IMAGENET_STD": "transforms",
    "EvalTransform": "transforms",
    "TrainTransform": "transforms",
    "normalize": "transforms",
    "resized_size": "transforms",
    "VOC2007ClsDataModule": "voc_cls",
}

__all__ = sorted(_SOURCES)
__getattr__ = lazy_getattr(__name__, _SOURCES, globals())  # ``from sppnet_exp.data import X``: X's module on first use


def __dir__() -> list[str]:
    return sorted([*globals(), *_SOURCES])
