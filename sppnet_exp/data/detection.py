"""The detection DataModule: ``DetectionDataModule`` (train/test splits of a VOC or LabelImg dataset, or the
generated VOC scenes) and its one-image-per-batch loaders.

Reading annotations lives in :mod:`.voc_xml` and layouts/splits in :mod:`.detection_split`; their public names are
re-exported here, so ``from sppnet_exp.data.detection import load_split`` (and the rest) keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from .detection_split import (
    LAYOUTS,
    STAT_KEYS,
    DetectionSplit,
    ImageRecord,
    detect_layout,
    discover_classes,
    load_split,
)
from .voc_xml import read_voc_xml

# The split loading lives in detection_split.py and the XML reader in voc_xml.py; their main entry points are
# re-exported so `from sppnet_exp.data.detection import load_split` keeps working.
__all__ = [
    "STAT_KEYS",
    "DetectionDataModule",
    "DetectionSplit",
    "ImageRecord",
    "detect_layout",
    "discover_classes",
    "load_split",
    "read_voc_xml",
]


# ----- DataModule ---------------------------------------------------------------------------------------------
class _IndexedImages(Dataset):
    """``(index, uint8 [3,H,W])`` over the images of a split."""

    def __init__(self, split: DetectionSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        return index, self.split.load_image(index)


def _single(batch: list[tuple[int, torch.Tensor]]) -> tuple[int, torch.Tensor]:
    """Unbatch a batch of one (images differ in size)."""
    return batch[0]


class DetectionDataModule(L.LightningDataModule):
    """Train and test splits of a detection dataset; ``root=None`` uses the generated VOC scenes.

    ``max_images={"train": n, "test": m}`` keeps the first n / m images of each split. ``seed`` is the
    generator seed unless ``gen`` gives one. ``test_dataloader``/``predict_dataloader`` yield ``(index,
    uint8 [3,H,W])`` over the test images, one at a time.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        layout: str = "auto",
        classes: Sequence[str] | None = None,
        train_split: str = "trainval",
        test_split: str = "test",
        max_images: dict[str, int | None] | None = None,
        gen: dict[str, Any] | None = None,
        data_dir: str | Path = "data",
        seed: int = 0,
        num_workers: int = 0,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if layout not in ("auto", *LAYOUTS):
            raise ValueError(f"layout must be 'auto', 'voc' or 'labelimg', got {layout!r}")
        limits = dict(max_images or {})
        bad = set(limits) - {"train", "test"}
        if bad:
            raise ValueError(f"max_images keys must be 'train' and/or 'test', got {sorted(bad)}")
        self.root = None if root is None else Path(root).expanduser()
        self.layout = layout
        self.classes_arg = None if classes is None else [str(c) for c in classes]
        self.train_split, self.test_split = train_split, test_split
        self.max_images = {k: None if v is None else int(v) for k, v in limits.items()}
        self.gen = {"seed": int(seed), **dict(gen or {})}
        self.data_dir = Path(data_dir)
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self.name = name or ("generated" if root is None else "detection")
        self._dataset_root: Path | None = None
        self._train: DetectionSplit | None = None
        self._test: DetectionSplit | None = None

    @property
    def dataset_root(self) -> Path:
        """The dataset folder (the generated one when ``root`` is None; generated on first use)."""
        if self._dataset_root is None:
            if self.root is None:
                from .generated_det import ensure_generated_voc

                self._dataset_root = ensure_generated_voc(self.data_dir, **self.gen)
            else:
                self._dataset_root = self.root
        return self._dataset_root

    def prepare_data(self) -> None:
        """Generate the embedded scenes if needed."""
        if self.root is None:
            _ = self.dataset_root

    def setup(self, stage: str | None = None) -> None:
        """Load both splits (once); the test split uses the train split's classes."""
        if self._train is not None and self._test is not None:
            return
        layout, classes = self.layout, self.classes_arg
        if self.root is None:
            from .generated_det import generated_classes

            layout = "voc"
            classes = classes or generated_classes(self.dataset_root)  # all classes, even one absent from a split
        train = load_split(self.dataset_root, self.train_split, classes, layout)
        test = load_split(self.dataset_root, self.test_split, train.classes, layout)
        self._train = train.head(self.max_images.get("train"))
        self._test = test.head(self.max_images.get("test"))

    @property
    def train(self) -> DetectionSplit:
        self.setup()
        assert self._train is not None
        return self._train

    @property
    def test(self) -> DetectionSplit:
        self.setup()
        assert self._test is not None
        return self._test

    def split(self, name: str) -> DetectionSplit:
        """``"train"``/``"test"`` or the configured split names."""
        if name in ("train", self.train_split):
            return self.train
        if name in ("test", self.test_split):
            return self.test
        raise KeyError(f"unknown split {name!r}: expected 'train', 'test', {self.train_split!r} or {self.test_split!r}")

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    @property
    def num_classes(self) -> int:
        return len(self.train.classes)

    def image_dataloader(self, name: str = "test") -> DataLoader:
        """``(index, uint8 [3,H,W])`` over the images of a split, in order, one per batch."""
        return DataLoader(
            _IndexedImages(self.split(name)),
            batch_size=1,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=_single,
        )

    def test_dataloader(self) -> DataLoader:
        return self.image_dataloader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.image_dataloader("test")
