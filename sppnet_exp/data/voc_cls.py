"""``VOC2007ClsDataModule``: PASCAL VOC 2007 image classification (multi-label, float multi-hot targets).

Layout: ``root/{Annotations/*.xml, JPEGImages/*.jpg, ImageSets/Main/{trainval,test}.txt}`` (``root`` may also
be a ``VOCdevkit`` folder holding ``VOC2007/``). Labels come from each annotation's ``<object><name>``.
Classes: ``classes`` if given, else the sorted names found in the annotations of both splits (for VOC 2007 the
standard 20 classes, whose usual order is alphabetical).

Difficult objects (``difficult="positive"``, the default): an image is positive for a class if it has ANY
object of that class, difficult ones included. ``"ignore"``: a class present only through difficult objects
gets target ``-1`` (the loss/metric must mask targets < 0); ``"negative"``: such a class gets 0. Targets are
``float[C]`` in {1, 0} (and -1 for ignored). The evaluation split is ``test_split``.

``root=None``: the generated VOC2007-layout scenes (:func:`~sppnet_exp.data.generated_det.ensure_generated_voc`,
the detection tables' generator: several objects of the generated shape classes per image, some difficult), with
``gen_classes`` classes, ``gen_classes x gen_train_per_class`` trainval and ``gen_classes x gen_val_per_class``
test images and ``gen_seed``: Table 6's embedded default."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .base import ClassificationDataModule, Sample
from .generated_det import ensure_generated_voc
from .roots import VOC_CLS_LAYOUT

LAYOUT = VOC_CLS_LAYOUT
DIFFICULT_MODES = ("positive", "ignore", "negative")


def parse_annotation(path: Path) -> tuple[str | None, list[tuple[str, bool]]]:
    """``(filename or None, [(class name, difficult), ...])`` from a VOC XML file; errors name the file."""
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError) as exc:
        raise ValueError(f"cannot read VOC annotation {path}: {exc}") from exc
    objects = []
    for obj in tree.getroot().iter("object"):
        name = obj.findtext("name")
        if name is None or not name.strip():
            raise ValueError(f"VOC annotation {path}: an <object> has no <name>")
        diff = (obj.findtext("difficult") or "0").strip()
        objects.append((name.strip(), diff not in ("0", "", "false", "False")))
    filename = tree.getroot().findtext("filename")
    return (filename.strip() if filename else None), objects


def find_voc_root(root: Path) -> Path:
    """The VOC2007 folder: ``root`` itself or ``root/VOC2007``."""
    for cand in (root, root / "VOC2007"):
        if (cand / "Annotations").is_dir() and (cand / "ImageSets" / "Main").is_dir():
            return cand
    raise FileNotFoundError(f"VOC root {root}: {LAYOUT}")


def read_split(voc: Path, split: str) -> list[str]:
    """Image ids listed in ``ImageSets/Main/<split>.txt``."""
    path = voc / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"VOC root {voc}: missing split file {path}; {LAYOUT}")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"VOC split file {path} lists no images")
    return ids


def scan_voc(
    root: Path,
    train_split: str = "trainval",
    test_split: str = "test",
    difficult: str = "positive",
    classes: Sequence[str] | None = None,
) -> tuple[list[str], list[Sample], list[Sample]]:
    """Classes and multi-hot samples of both splits."""
    if difficult not in DIFFICULT_MODES:
        raise ValueError(f"difficult must be one of {DIFFICULT_MODES}, got {difficult!r}")
    voc = find_voc_root(root)
    parsed: dict[str, list[tuple[str, list[tuple[str, bool]]]]] = {}
    for split in (train_split, test_split):
        rows = []
        for image_id in read_split(voc, split):
            ann = voc / "Annotations" / f"{image_id}.xml"
            if not ann.is_file():
                raise FileNotFoundError(f"VOC split {split}: missing annotation {ann}")
            filename, objects = parse_annotation(ann)
            img = voc / "JPEGImages" / f"{image_id}.jpg"
            if not img.is_file() and filename:
                img = voc / "JPEGImages" / filename
            if not img.is_file():
                raise FileNotFoundError(f"VOC split {split}: missing image {img} for annotation {ann}")
            rows.append((str(img), objects))
        parsed[split] = rows
    names = list(classes) if classes else sorted({n for rows in parsed.values() for _, objs in rows for n, _ in objs})
    index = {c: i for i, c in enumerate(names)}

    def target(objects: list[tuple[str, bool]], where: str) -> torch.Tensor:
        t = torch.zeros(len(names))
        for name, diff in objects:
            if name not in index:
                raise ValueError(f"VOC image {where}: class {name!r} is not in classes {names}")
            if not diff or difficult == "positive":
                t[index[name]] = 1.0
        if difficult == "ignore":
            for name, diff in objects:
                if diff and t[index[name]] == 0:
                    t[index[name]] = -1.0
        return t

    out = [[(p, target(objs, p)) for p, objs in parsed[s]] for s in (train_split, test_split)]
    return names, out[0], out[1]


class VOC2007ClsDataModule(ClassificationDataModule):
    """VOC 2007 multi-label image classification (``root=None``: generated VOC-layout scenes)."""

    dataset_name = "voc07_cls"
    generated_layout = "voc_scenes"
    multilabel = True

    def __init__(
        self,
        root: str | None = None,
        train_split: str = "trainval",
        test_split: str = "test",
        difficult: str = "positive",
        classes: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if difficult not in DIFFICULT_MODES:
            raise ValueError(f"difficult must be one of {DIFFICULT_MODES}, got {difficult!r}")
        super().__init__(root=root, **kwargs)
        self.train_split, self.test_split, self.difficult = train_split, test_split, difficult
        self.classes = list(classes) if classes else None

    def generate(self) -> Path:
        """The generated scenes: ``gen_classes x gen_train_per_class`` trainval and ``x gen_val_per_class`` test."""
        g = self.gen_kwargs
        k = g["num_classes"]
        return ensure_generated_voc(
            self.generated_dir, k, trainval=k * g["train_per_class"], test=k * g["val_per_class"], seed=g["seed"]
        )

    def _scan(self, root: Path) -> tuple[list[str], list[Sample], list[Sample]]:
        return scan_voc(root, self.train_split, self.test_split, self.difficult, self.classes)
