"""Detection dataset layouts and splits: ``resolve_root`` / ``detect_layout`` (VOCdevkit or LabelImg-style
folders; in :mod:`.detection_layout`, re-exported here), ``discover_classes``, and ``load_split`` ->
``DetectionSplit`` of ``ImageRecord`` with repair ``stats``.

Layouts (``detect_layout``):

* ``"voc"``: ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``. The root may be the VOC
  folder itself or a folder holding exactly one VOC-like folder (one or two levels down, e.g. ``VOCdevkit``).
* ``"labelimg"``: an XML beside each image, or ``images/`` + ``annotations/`` subfolders; ``split`` picks a
  subfolder named like it when one exists (``trainval`` falls back to ``train``, ``val`` to ``valid``), else
  the whole folder is the split.

Records keep VOC's 1-based inclusive ``x1 y1 x2 y2`` boxes (float32) and the ``difficult``/``truncated`` flags.
Real-world input is repaired where that is safe and counted in ``DetectionSplit.stats``: the image size is taken
from the image itself; zero-area, inverted and fully-outside boxes are dropped; boxes are clipped to the image;
boxes of classes not in ``classes`` are dropped. Malformed XML raises ``ValueError`` naming the file and field.
Annotation files are parsed by :mod:`.voc_xml`; the DataModule is in :mod:`.detection`. Split, image and
annotation folders may be symbolic links: they are followed everywhere (:mod:`.folders`; link cycles end).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .detection_layout import (
    LABELIMG_LAYOUT,
    LAYOUTS,
    SPLIT_ALIASES,
    SPLIT_DIRS,
    VOC_LAYOUT,
    detect_layout,
    resolve_root,
)
from .detection_layout import pair_dirs as _pair_dirs
from .detection_layout import subdirs as _subdirs
from .detection_layout import xml_files as _xml_files
from .folders import walk_files
from .images import IMAGE_EXTENSIONS, decode_file, image_size
from .voc_xml import VocAnnotation, read_voc_xml

log = logging.getLogger(__name__)

__all__ = [
    "EXTRA_IMAGE_EXTENSIONS",
    "LABELIMG_LAYOUT",
    "LAYOUTS",
    "REPAIR_KEYS",
    "SPLIT_ALIASES",
    "SPLIT_DIRS",
    "STAT_KEYS",
    "VOC_LAYOUT",
    "DetectionSplit",
    "ImageRecord",
    "detect_layout",
    "discover_classes",
    "load_split",
    "resolve_root",
]

STAT_KEYS = (
    "images",  # records in the split
    "objects",  # boxes kept
    "difficult_boxes",  # kept boxes marked difficult
    "truncated_boxes",  # kept boxes marked truncated
    "empty_images",  # images left without any box
    "unknown_class_boxes",  # dropped: class not in ``classes``
    "zero_area_boxes",  # dropped: x2 == x1 or y2 == y1
    "inverted_boxes",  # dropped: x2 < x1 or y2 < y1
    "outside_boxes",  # dropped: nothing left after clipping to the image
    "clipped_boxes",  # kept, clipped to the image
    "size_fixed",  # XML <size> missing, 0x0 or different from the image: the image's size is used
    "duplicate_ids",  # repeated ids in an ImageSets list (kept once)
    "unannotated_images",  # LabelImg: image files without an XML (not part of the split)
)
REPAIR_KEYS = ("zero_area_boxes", "inverted_boxes", "outside_boxes", "clipped_boxes", "duplicate_ids")
EXTRA_IMAGE_EXTENSIONS = (".jpe", ".jfif")


# ----- records -----------------------------------------------------------------------------------------------
@dataclass
class ImageRecord:
    """One image and its ground truth (boxes 1-based inclusive, clipped to the image; labels 0-based)."""

    image_id: str
    path: Path
    width: int
    height: int
    boxes: np.ndarray  # (G, 4) float32
    labels: np.ndarray  # (G,) int64
    difficult: np.ndarray  # (G,) bool
    truncated: np.ndarray  # (G,) bool
    annotation: Path | None = None


@dataclass
class DetectionSplit:
    """The records of one split with its class list and the counted repairs/skips (``STAT_KEYS``)."""

    name: str
    root: Path
    classes: list[str]
    records: list[ImageRecord]
    stats: dict[str, int] = field(default_factory=dict)
    layout: str = "voc"
    _index: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> ImageRecord:
        return self.records[index]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_ids(self) -> list[str]:
        return [r.image_id for r in self.records]

    def index_of(self, image_id: str) -> int:
        """Position of ``image_id`` in ``records`` (KeyError when absent)."""
        if self._index is None or len(self._index) != len(self.records):
            self._index = {r.image_id: i for i, r in enumerate(self.records)}
        return self._index[image_id]

    def load_image(self, index: int) -> torch.Tensor:
        """The image of record ``index`` as ``uint8 [3, H, W]`` RGB (decoded by content)."""
        rec = self.records[index]
        img = decode_file(rec.path)
        if tuple(img.shape[1:]) != (rec.height, rec.width):
            raise ValueError(
                f"image {rec.path} decoded to {img.shape[2]}x{img.shape[1]} but its header said "
                f"{rec.width}x{rec.height}; the boxes would not match"
            )
        return img

    def head(self, n: int | None) -> DetectionSplit:
        """The first ``n`` records (all when None); record counts in ``stats`` are recomputed."""
        if n is None or n >= len(self.records):
            return self
        if n < 0:
            raise ValueError(f"max images must be >= 0, got {n}")
        records = self.records[:n]
        stats = dict(self.stats)
        stats.update(_record_counts(records))
        return DetectionSplit(self.name, self.root, list(self.classes), records, stats, self.layout)


def _record_counts(records: Sequence[ImageRecord]) -> dict[str, int]:
    return {
        "images": len(records),
        "objects": int(sum(len(r.boxes) for r in records)),
        "difficult_boxes": int(sum(int(r.difficult.sum()) for r in records)),
        "truncated_boxes": int(sum(int(r.truncated.sum()) for r in records)),
        "empty_images": int(sum(len(r.boxes) == 0 for r in records)),
    }


# ----- images -----------------------------------------------------------------------------------------------
class _ImageFolder:
    """Case-insensitive lookup of the images of one folder by name or stem."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.by_name: dict[str, Path] = {}
        self.by_stem: dict[str, list[Path]] = {}
        exts = (*IMAGE_EXTENSIONS, *EXTRA_IMAGE_EXTENSIONS)
        with os.scandir(folder) as it:
            entries = sorted(e.name for e in it if e.is_file())
        for name in entries:
            path = folder / name
            suffix = path.suffix.lower()
            if suffix == ".xml":
                continue
            self.by_name.setdefault(name.lower(), path)
            if suffix in exts:
                self.by_stem.setdefault(path.stem.lower(), []).append(path)
        rank = {e: i for i, e in enumerate(exts)}
        for paths in self.by_stem.values():
            paths.sort(key=lambda p: (rank[p.suffix.lower()], p.name))

    def find(self, stem: str, filename: str | None) -> Path | None:
        base = filename.replace("\\", "/").rsplit("/", 1)[-1] if filename else None
        if base and base.lower() in self.by_name and Path(base).stem.lower() == stem.lower():
            return self.by_name[base.lower()]
        if stem.lower() in self.by_stem:
            return self.by_stem[stem.lower()][0]
        if base and base.lower() in self.by_name:
            return self.by_name[base.lower()]
        if base and Path(base).stem.lower() in self.by_stem:
            return self.by_stem[Path(base).stem.lower()][0]
        return None

    def image_stems(self) -> set[str]:
        return set(self.by_stem)


# ----- split items -------------------------------------------------------------------------------------------
Item = tuple[str, Path]  # (image_id, xml path)


def _voc_items(voc: Path, split: str, stats: Counter) -> tuple[list[Item], Path]:
    list_file = voc / "ImageSets" / "Main" / f"{split}.txt"
    if not list_file.is_file():
        have = sorted(p.stem for p in (voc / "ImageSets" / "Main").glob("*.txt") if "_" not in p.stem)
        raise FileNotFoundError(f"VOC dataset {voc}: no split file {list_file} (splits: {have}); layout: {VOC_LAYOUT}")
    image_dir = voc / "JPEGImages"
    if not image_dir.is_dir():
        raise FileNotFoundError(f"VOC dataset {voc}: no JPEGImages/ folder; layout: {VOC_LAYOUT}")
    items: list[Item] = []
    seen: set[str] = set()
    for line in list_file.read_text().splitlines():
        if not line.strip():
            continue
        image_id = line.split()[0]
        if image_id in seen:
            stats["duplicate_ids"] += 1
            continue
        seen.add(image_id)
        xml = voc / "Annotations" / f"{image_id}.xml"
        if not xml.is_file():
            raise FileNotFoundError(f"VOC split file {list_file} lists {image_id!r} but {xml} does not exist")
        items.append((image_id, xml))
    if not items:
        raise ValueError(f"VOC split file {list_file} lists no images")
    return items, image_dir


def _split_subdir(folder: Path, split: str) -> Path | None:
    subs = _subdirs(folder)
    for name in SPLIT_ALIASES.get(split.lower(), (split.lower(),)):
        if name in subs:
            return subs[name]
    return None


def _labelimg_dirs(base: Path, split: str) -> tuple[Path, Path]:
    """``(xml folder, image folder)`` of ``split`` in a LabelImg-style dataset."""
    pair = _pair_dirs(base)
    if pair is not None:
        ann, img = pair
        sub = _split_subdir(ann, split)
        if sub is not None:
            img_sub = _subdirs(img).get(sub.name.lower())
            return sub, img_sub if img_sub is not None else img
        return ann, img
    sub = _split_subdir(base, split)
    if sub is not None:
        pair = _pair_dirs(sub)
        return pair if pair is not None else (sub, sub)
    if not _xml_files(base):
        have = sorted(n for n in _subdirs(base) if n in SPLIT_DIRS)
        raise FileNotFoundError(
            f"LabelImg dataset {base}: no folder for split {split!r} (split folders: {have}) and no XML files "
            f"directly in it; layout: {LABELIMG_LAYOUT}"
        )
    return base, base


def _labelimg_items(base: Path, split: str, stats: Counter) -> tuple[list[Item], Path, Path]:
    xml_dir, image_dir = _labelimg_dirs(base, split)
    xmls = _xml_files(xml_dir)
    if not xmls:
        raise FileNotFoundError(f"LabelImg dataset {base}: no XML files in {xml_dir} for split {split!r}")
    return [(p.stem, p) for p in xmls], xml_dir, image_dir


def _all_annotation_files(layout: str, base: Path) -> list[Path]:
    if layout == "voc":
        return _xml_files(base / "Annotations")
    return walk_files(base, (".xml",))  # follows linked split folders (rglob does not), cycle-safe


def discover_classes(root: str | Path, layout: str = "auto") -> list[str]:
    """Sorted class names over ALL annotation files of the dataset (every split), so splits agree."""
    kind, base = resolve_root(root, layout)
    names = {o.name for f in _all_annotation_files(kind, base) for o in read_voc_xml(f).objects}
    if not names:
        raise ValueError(f"detection dataset {base}: no objects in any annotation file, cannot discover classes")
    return sorted(names)


# ----- loading -------------------------------------------------------------------------------------------------
def _make_record(
    image_id: str,
    ann: VocAnnotation,
    path: Path,
    index: dict[str, int],
    stats: Counter,
    unknown: Counter,
    size_notes: list[str],
) -> ImageRecord:
    h, w = image_size(path)
    if (ann.width, ann.height) != (w, h):
        stats["size_fixed"] += 1
        if not size_notes:
            size_notes.append(f"{ann.path} says {ann.width}x{ann.height}, {path.name} is {w}x{h}")
    boxes, labels, difficult, truncated = [], [], [], []
    for obj in ann.objects:
        if obj.name not in index:
            stats["unknown_class_boxes"] += 1
            unknown[obj.name] += 1
            continue
        x1, y1, x2, y2 = obj.box
        if x2 < x1 or y2 < y1:
            stats["inverted_boxes"] += 1
            continue
        if x2 == x1 or y2 == y1:
            stats["zero_area_boxes"] += 1
            continue
        clipped = (max(x1, 1.0), max(y1, 1.0), min(x2, float(w)), min(y2, float(h)))
        if clipped != (x1, y1, x2, y2):
            if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
                stats["outside_boxes"] += 1
                continue
            stats["clipped_boxes"] += 1
        boxes.append(clipped)
        labels.append(index[obj.name])
        difficult.append(obj.difficult)
        truncated.append(obj.truncated)
    return ImageRecord(
        image_id=image_id,
        path=path,
        width=w,
        height=h,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        labels=np.asarray(labels, dtype=np.int64),
        difficult=np.asarray(difficult, dtype=bool),
        truncated=np.asarray(truncated, dtype=bool),
        annotation=ann.path,
    )


def load_split(
    root: str | Path,
    split: str = "trainval",
    classes: Sequence[str] | None = None,
    layout: str = "auto",
) -> DetectionSplit:
    """Load one split of a VOC-layout or LabelImg-style dataset (see the module docstring).

    ``classes``: the label order; boxes of other classes are dropped (counted in ``stats``). When None, the
    sorted union of names over all annotation files of the dataset (every split).
    """
    kind, base = resolve_root(root, layout)
    stats: Counter = Counter()
    if kind == "voc":
        items, image_dir = _voc_items(base, split, stats)
        split_root = base
    else:
        items, split_root, image_dir = _labelimg_items(base, split, stats)
    if classes is None:
        names = discover_classes(base, kind)
    else:
        names = [str(c).strip() for c in classes]
        if not names or len(set(names)) != len(names) or not all(names):
            raise ValueError(f"classes must be a non-empty list of distinct names, got {list(classes)}")
    index = {c: i for i, c in enumerate(names)}
    images = _ImageFolder(image_dir)
    unknown: Counter = Counter()
    size_notes: list[str] = []
    records = []
    for image_id, xml in items:
        ann = read_voc_xml(xml)
        path = images.find(image_id, ann.filename)
        if path is None:
            looked = f"{ann.filename!r} or {image_id}.<jpg|png|...>" if ann.filename else f"{image_id}.<jpg|png|...>"
            raise FileNotFoundError(f"annotation {xml}: image not found (looked for {looked} in {image_dir})")
        records.append(_make_record(image_id, ann, path, index, stats, unknown, size_notes))
    if kind == "labelimg" and image_dir == split_root:
        stats["unannotated_images"] = len(images.image_stems() - {i.lower() for i, _ in items})
    stats.update(_record_counts(records))
    out = DetectionSplit(split, split_root, names, records, {k: int(stats[k]) for k in STAT_KEYS}, kind)
    _log_summary(out, unknown, size_notes)
    return out


def _log_summary(split: DetectionSplit, unknown: Counter, size_notes: list[str]) -> None:
    s = split.stats
    if s["size_fixed"]:
        log.warning(
            "%s split %r: %d image(s) with a missing or wrong <size> in the XML; using the image's own size (e.g. %s)",
            split.root,
            split.name,
            s["size_fixed"],
            size_notes[0],
        )
    if unknown:
        log.warning(
            "%s split %r: dropped boxes of classes not in the class list: %s", split.root, split.name, dict(unknown)
        )
    fixes = {k: s[k] for k in REPAIR_KEYS if s[k]}
    log.info(
        "%s split %r (%s): %d images, %d objects (%d difficult) of %d classes%s",
        split.root,
        split.name,
        split.layout,
        s["images"],
        s["objects"],
        s["difficult_boxes"],
        len(split.classes),
        f"; repaired/skipped: {fixes}" if fixes else "",
    )
