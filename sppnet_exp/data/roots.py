"""What a classification dataset's ``data.root`` must hold, checked at the top level only (folders, no listing).

The scanners (:mod:`.imagenet`, :mod:`.caltech101`, :mod:`.voc_cls`) raise with these texts when a root is wrong,
and the pre-flight (:mod:`sppnet_exp.engine.preflight`) runs the same checks before anything is trained, so a
wrong root is reported in seconds. Nothing heavy is imported here.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CALTECH101_LAYOUT",
    "IMAGENET_LAYOUT",
    "VOC_CLS_LAYOUT",
    "caltech101_root_problem",
    "imagenet_root_problem",
    "voc_cls_root_problem",
]

IMAGENET_LAYOUT = (
    "expected train/<wnid>/*.JPEG and val/ (class folders val/<wnid>/*, or flat val/ILSVRC2012_val_*.JPEG "
    "+ ILSVRC2012_devkit_t12/data/{ILSVRC2012_validation_ground_truth.txt,meta.mat})"
)
CALTECH101_LAYOUT = "expected 101_ObjectCategories/<class>/*.jpg (one folder per class)"
VOC_CLS_LAYOUT = "expected Annotations/*.xml, JPEGImages/*.jpg and ImageSets/Main/{trainval,test}.txt (VOC2007 layout)"


def _not_a_folder(root: Path) -> str | None:
    if root.is_dir():
        return None
    return f"{root} is not a folder" if root.exists() else f"{root} does not exist"


def imagenet_root_problem(root: Path) -> str | None:
    """``None`` when ``root`` holds ``train/`` and ``val/`` folders, else what is wrong (starting with the root)."""
    problem = _not_a_folder(root)
    if problem:
        return problem
    missing = [f"{d}/" for d in ("train", "val") if not (root / d).is_dir()]
    return f"{root} has no {' and no '.join(missing)} folder" if missing else None


def caltech101_root_problem(root: Path) -> str | None:
    """``None`` when ``root`` is (or holds) a ``101_ObjectCategories`` folder, else what is wrong."""
    problem = _not_a_folder(root)
    if problem:
        return problem
    if root.name == "101_ObjectCategories" or (root / "101_ObjectCategories").is_dir():
        return None
    return f"{root} has no 101_ObjectCategories/ folder"


def voc_cls_root_problem(root: Path) -> str | None:
    """``None`` when ``root`` (or ``root/VOC2007``) holds ``Annotations/`` and ``ImageSets/Main/``, else what is
    wrong."""
    problem = _not_a_folder(root)
    if problem:
        return problem
    for cand in (root, root / "VOC2007"):
        if (cand / "Annotations").is_dir() and (cand / "ImageSets" / "Main").is_dir():
            return None
    return f"{root} has no Annotations/ and ImageSets/Main/ (nor a VOC2007/ folder holding them)"
