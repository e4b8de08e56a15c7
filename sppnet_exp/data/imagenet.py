"""``ImageNetDataModule``: ILSVRC2012 folder layout (or the embedded generated set in the same layout).

Layout: ``root/train/<wnid>/*.JPEG``; validation either as class folders ``root/val/<wnid>/*`` or flat
``root/val/ILSVRC2012_val_XXXXXXXX.JPEG`` with the devkit ground truth
``root/ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt`` (one 1-based ILSVRC2012_ID per
line) and ``data/meta.mat`` (``synsets`` with ``ILSVRC2012_ID`` and ``WNID``). Classes are the sorted folder
names of ``train/``. The evaluation split is ``val/``. Split and class folders may be symbolic links (they are
followed). The listing is cached on disk (:mod:`.file_lists`; the ground-truth files are part of its key)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .base import ClassificationDataModule, Sample
from .images import list_images
from .roots import IMAGENET_LAYOUT, imagenet_root_problem

LAYOUT = IMAGENET_LAYOUT
DEVKIT_DATA = Path("ILSVRC2012_devkit_t12") / "data"


def class_folder_samples(folder: Path, classes: list[str], what: str) -> list[Sample]:
    """``(path, class index)`` for every image in ``folder/<class>/``; empty class folders are an error."""
    index = {c: i for i, c in enumerate(classes)}
    samples: list[Sample] = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name not in index:
            raise ValueError(f"{what}: class folder {sub} is not a class of the training set")
        files = list_images(sub)
        if not files:
            raise ValueError(f"{what}: class folder {sub} contains no images")
        samples.extend((str(f), index[sub.name]) for f in files)
    return samples


def load_devkit_wnids(devkit_data: Path) -> dict[int, str]:
    """ILSVRC2012_ID → WNID from the devkit's ``meta.mat``."""
    from scipy.io import loadmat

    path = devkit_data / "meta.mat"
    try:
        synsets = loadmat(str(path), squeeze_me=True)["synsets"]
        ids = np.atleast_1d(synsets["ILSVRC2012_ID"])
        wnids = np.atleast_1d(synsets["WNID"])
    except Exception as exc:
        raise ValueError(f"cannot read the ImageNet devkit {path}: {exc}") from exc
    return {int(i): str(w) for i, w in zip(ids, wnids)}


def flat_val_samples(root: Path, classes: list[str]) -> list[Sample]:
    """Samples of a flat ``val/`` folder labelled by the devkit ground truth."""
    devkit = root / DEVKIT_DATA
    gt_path = devkit / "ILSVRC2012_validation_ground_truth.txt"
    if not gt_path.is_file() or not (devkit / "meta.mat").is_file():
        raise FileNotFoundError(f"ImageNet root {root}: val/ is flat but {devkit}/ lacks the ground truth; {LAYOUT}")
    id_to_wnid = load_devkit_wnids(devkit)
    try:
        gt = [int(line) for line in gt_path.read_text().split()]
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the ImageNet ground truth {gt_path}: {exc}") from exc
    index = {c: i for i, c in enumerate(classes)}
    samples: list[Sample] = []
    for f in list_images(root / "val"):
        m = re.search(r"(\d+)$", f.stem)
        if m is None:
            raise ValueError(f"ImageNet val file {f} has no ILSVRC2012_val_<number> name")
        k = int(m.group(1))
        if not 1 <= k <= len(gt):
            raise ValueError(f"ImageNet val file {f}: number {k} beyond the {len(gt)} lines of {gt_path}")
        wnid = id_to_wnid.get(gt[k - 1])
        if wnid not in index:
            raise ValueError(f"ImageNet val file {f}: ground-truth class {gt[k - 1]} ({wnid}) is not in train/")
        samples.append((str(f), index[wnid]))
    if not samples:
        raise FileNotFoundError(f"ImageNet root {root}: val/ holds no images; {LAYOUT}")
    return samples


def scan_imagenet(root: Path, what: str = "ImageNet") -> tuple[list[str], list[Sample], list[Sample]]:
    """Classes, train and val samples of an ILSVRC2012-style folder."""
    train_dir, val_dir = root / "train", root / "val"
    problem = imagenet_root_problem(root)
    if problem:
        raise FileNotFoundError(f"{what} root {problem}; {LAYOUT}")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"{what} root {root}: train/ has no class folders; {LAYOUT}")
    train = class_folder_samples(train_dir, classes, f"{what} train")
    if any(p.is_dir() for p in val_dir.iterdir()):
        val = class_folder_samples(val_dir, classes, f"{what} val")
    else:
        val = flat_val_samples(root, classes)
    return classes, train, val


class ImageNetDataModule(ClassificationDataModule):
    """ILSVRC2012 classification (``root=None``: the generated set, ``name="generated"``)."""

    dataset_name = "imagenet"
    generated_layout = "imagenet"
    listing_only = True

    def _scan(self, root: Path) -> tuple[list[str], list[Sample], list[Sample]]:
        return scan_imagenet(root, "ImageNet" if self.root is not None else "Generated (ImageNet layout)")

    def _scan_extra_files(self, root: Path) -> list[Path]:
        devkit = root / DEVKIT_DATA
        return [devkit / "ILSVRC2012_validation_ground_truth.txt", devkit / "meta.mat"]
