"""Where a detection dataset is: ``resolve_root`` / ``detect_layout`` (a VOCdevkit or LabelImg-style folder, at
``root`` or one or two levels below it). Folder tests only (no image is read, nothing heavy is imported), so the
pre-flight (:mod:`sppnet_exp.engine.preflight`) runs the same resolution the splits do (:mod:`.detection_split`).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "LABELIMG_LAYOUT",
    "LAYOUTS",
    "SPLIT_ALIASES",
    "SPLIT_DIRS",
    "VOC_LAYOUT",
    "detect_layout",
    "is_labelimg",
    "is_voc",
    "pair_dirs",
    "resolve_root",
    "subdirs",
    "xml_files",
]

LAYOUTS = ("voc", "labelimg")
VOC_LAYOUT = "Annotations/*.xml, JPEGImages/ and ImageSets/Main/<split>.txt"
LABELIMG_LAYOUT = "an XML beside each image, or images/ + annotations/ subfolders (optionally in train/ test/ folders)"
SPLIT_ALIASES = {
    "trainval": ("trainval", "train"),
    "train": ("train",),
    "val": ("val", "valid", "validation"),
    "test": ("test",),
}
SPLIT_DIRS = {"train", "trainval", "test", "val", "valid", "validation"}


def subdirs(folder: Path) -> dict[str, Path]:
    """Child folders by lower-case name (sorted, first wins)."""
    try:
        entries = sorted(e for e in folder.iterdir() if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return {}
    out: dict[str, Path] = {}
    for e in entries:
        out.setdefault(e.name.lower(), e)
    return out


def xml_files(folder: Path) -> list[Path]:
    """The ``.xml`` files directly in ``folder`` (any case), sorted."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".xml")
    except OSError:
        return []


def is_voc(folder: Path) -> bool:
    """``folder`` holds ``Annotations/`` and ``ImageSets/Main/`` (a VOC dataset)."""
    return (folder / "Annotations").is_dir() and (folder / "ImageSets" / "Main").is_dir()


def pair_dirs(folder: Path) -> tuple[Path, Path] | None:
    """``(annotations, images)`` subfolders of ``folder`` when both exist."""
    subs = subdirs(folder)
    ann = subs.get("annotations")
    img = subs.get("images") or subs.get("jpegimages")
    return (ann, img) if ann is not None and img is not None else None


def is_labelimg(folder: Path, nested: bool = True) -> bool:
    """XML files in ``folder`` or its annotations/ + images/ pair (or, ``nested``, in a split subfolder)."""
    if xml_files(folder) or pair_dirs(folder) is not None:
        return True
    return nested and any(is_labelimg(p, False) for n, p in subdirs(folder).items() if n in SPLIT_DIRS)


def resolve_root(root: str | Path, layout: str = "auto") -> tuple[str, Path]:
    """``(layout, dataset folder)`` for ``root`` (itself, or its single VOC-like / LabelImg-like subfolder)."""
    if layout not in ("auto", *LAYOUTS):
        raise ValueError(f"layout must be 'auto', 'voc' or 'labelimg', got {layout!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"detection data root {root} is not a folder")
    kinds = LAYOUTS if layout == "auto" else (layout,)
    tests = {"voc": is_voc, "labelimg": is_labelimg}
    for kind in kinds:
        if tests[kind](root):
            return kind, root
    children = list(subdirs(root).values())
    levels = [children, [g for c in children for g in subdirs(c).values()]]
    for level in levels:
        found = [(kind, p) for p in level for kind in kinds if tests[kind](p)]
        seen: dict[Path, str] = {}
        for kind, p in found:
            seen.setdefault(p, kind)  # VOC wins over LabelImg for the same folder
        if len(seen) == 1:
            p, kind = next(iter(seen.items()))
            return kind, p
        if len(seen) > 1:
            names = ", ".join(f"{p} ({k})" for p, k in seen.items())
            raise ValueError(f"detection data root {root} holds several datasets: {names}; give one of them")
    expected = {"voc": VOC_LAYOUT, "labelimg": LABELIMG_LAYOUT}
    wanted = " or ".join(expected[k] for k in kinds)
    raise FileNotFoundError(f"no detection dataset found in {root}: expected {wanted}")


def detect_layout(root: str | Path) -> str:
    """``"voc"`` or ``"labelimg"`` for the dataset at (or just below) ``root``."""
    return resolve_root(root)[0]
