"""``Caltech101DataModule``: Caltech-101 with the paper's protocol (30 train / up to 50 test per class).

Layout: ``root/101_ObjectCategories/<class>/*.jpg`` (``root`` may also be the ``101_ObjectCategories``
folder). ``BACKGROUND_Google`` is excluded. Each class's images are split by a random permutation seeded by
``(split_seed, class name)``: the first ``train_per_class`` train, the next up to ``test_per_class`` test (the
rest unused). The evaluation (val/test) split is the test split. Different seeds give the paper's random
splits. Class folders may be symbolic links (followed); the split is cached on disk (:mod:`.file_lists`)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import ClassificationDataModule, Sample
from .images import list_images
from .roots import CALTECH101_LAYOUT, caltech101_root_problem

LAYOUT = CALTECH101_LAYOUT


def caltech_split(
    root: Path,
    train_per_class: int = 30,
    test_per_class: int = 50,
    split_seed: int = 0,
    exclude: Sequence[str] = ("BACKGROUND_Google",),
) -> tuple[list[str], list[Sample], list[Sample]]:
    """Classes and the seeded per-class train/test split of a Caltech-101 folder."""
    problem = caltech101_root_problem(root)
    if problem:
        raise FileNotFoundError(f"Caltech101 root {problem}; {LAYOUT}")
    base = root if root.name == "101_ObjectCategories" else root / "101_ObjectCategories"
    classes = sorted(p.name for p in base.iterdir() if p.is_dir() and p.name not in set(exclude))
    if not classes:
        raise FileNotFoundError(f"Caltech101 root {root}: no class folders in {base}; {LAYOUT}")
    train: list[Sample] = []
    test: list[Sample] = []
    for c, name in enumerate(classes):
        files = list_images(base / name)
        if len(files) <= train_per_class:
            raise ValueError(
                f"Caltech101 class folder {base / name} has {len(files)} images; "
                f"need more than {train_per_class} (train_per_class)"
            )
        rng = np.random.default_rng([split_seed, zlib.crc32(name.encode())])
        order = rng.permutation(len(files))
        train.extend((str(files[i]), c) for i in order[:train_per_class])
        test.extend((str(files[i]), c) for i in order[train_per_class : train_per_class + test_per_class])
    return classes, train, test


class Caltech101DataModule(ClassificationDataModule):
    """Caltech-101 (paper protocol); ``root=None`` uses the generated set in the Caltech layout."""

    dataset_name = "caltech101"
    generated_layout = "caltech101"
    listing_only = True

    def __init__(
        self,
        root: str | None = None,
        train_per_class: int = 30,
        test_per_class: int = 50,
        split_seed: int | None = None,
        exclude: Sequence[str] = ("BACKGROUND_Google",),
        **kwargs: Any,
    ) -> None:
        super().__init__(root=root, **kwargs)
        self.train_per_class, self.test_per_class = int(train_per_class), int(test_per_class)
        self.split_seed = self.seed if split_seed is None else int(split_seed)
        self.exclude = list(exclude)

    def _scan(self, root: Path) -> tuple[list[str], list[Sample], list[Sample]]:
        return caltech_split(root, self.train_per_class, self.test_per_class, self.split_seed, self.exclude)

    def _scan_params(self) -> dict[str, Any]:
        return {
            "train_per_class": self.train_per_class,
            "test_per_class": self.test_per_class,
            "split_seed": self.split_seed,
            "exclude": sorted(self.exclude),
        }
