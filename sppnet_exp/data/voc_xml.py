"""Reading one VOC / LabelImg annotation XML: ``read_voc_xml`` -> ``VocAnnotation`` of ``VocObject``.

The file is taken as written (no repair): boxes are VOC's 1-based inclusive ``xmin ymin xmax ymax`` floats,
``<difficult>``/``<truncated>`` are read as flags (``1``/``true``/``yes``, ``0``/``false``/``no``/empty or a
number), and a missing ``<size>`` gives ``0x0``. Malformed XML raises ``ValueError`` naming the file and field.
Repairs against the image and the class list happen in :mod:`.detection_split`.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

__all__ = ["VocAnnotation", "VocObject", "read_voc_xml"]

_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no", ""}


@dataclass
class VocObject:
    """One ``<object>`` as written in the XML."""

    name: str
    box: tuple[float, float, float, float]  # xmin ymin xmax ymax (1-based inclusive)
    difficult: bool
    truncated: bool


@dataclass
class VocAnnotation:
    """One annotation file: ``width``/``height`` are 0 when ``<size>`` is absent."""

    path: Path
    filename: str | None
    width: int
    height: int
    objects: list[VocObject]


def _malformed(path: Path, what: str) -> ValueError:
    return ValueError(f"malformed annotation {path}: {what}")


def _number(text: str | None, path: Path, where: str) -> float | None:
    """``float(text)``; None when absent or empty; ValueError naming the field when not a finite number."""
    if text is None or not text.strip():
        return None
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise _malformed(path, f"{where} is not a number: {text.strip()!r}")
    return value


def _flag(element: ET.Element, tag: str, path: Path, where: str) -> bool:
    text = (element.findtext(tag) or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    value = _number(text, path, f"{where} <{tag}>")
    return bool(value)


def read_voc_xml(path: str | Path) -> VocAnnotation:
    """Parse a VOC/LabelImg XML file; ``ValueError`` naming the file and field when it is malformed."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise _malformed(path, f"XML parse error ({exc})") from exc
    except OSError as exc:
        raise ValueError(f"cannot read annotation {path}: {exc}") from exc
    if root.tag != "annotation":
        raise _malformed(path, f"root element is <{root.tag}>, expected <annotation>")
    filename = (root.findtext("filename") or "").strip() or None
    size = []
    for tag in ("width", "height"):
        value = _number(root.findtext(f"size/{tag}"), path, f"<size><{tag}>")
        size.append(int(value) if value is not None and value > 0 else 0)
    objects = []
    for k, obj in enumerate(root.findall("object"), 1):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise _malformed(path, f"object {k} has no <name>")
        where = f"object {k} ({name})"
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise _malformed(path, f"{where} has no <bndbox>")
        coords = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            value = _number(bndbox.findtext(tag), path, f"{where} <bndbox><{tag}>")
            if value is None:
                raise _malformed(path, f"{where} has no <bndbox><{tag}>")
            coords.append(value)
        box = (coords[0], coords[1], coords[2], coords[3])
        objects.append(VocObject(name, box, _flag(obj, "difficult", path, where), _flag(obj, "truncated", path, where)))
    return VocAnnotation(path, filename, size[0], size[1], objects)
