"""Data: robust decoding, paper augmentation and test views, samplers, generated dataset, DataModules.

The names below are imported on first use (PEP 562), so a light submodule (:mod:`.roots`,
:mod:`.detection_layout`) can be imported without torch and Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    """``from sppnet_exp.data import X``: import X's submodule on first use."""
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_SOURCES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_SOURCES])
