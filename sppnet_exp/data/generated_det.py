"""Generated detection scenes in the VOC2007 layout (the laptop default for the detection experiments).

Each image has a cluttered background drawn like the generated classification data (``data/generated.py``) and
1..``max_objects`` objects, each one of the first ``num_classes`` SHAPES of that module (same class names,
``"00_disc"``, ..., filled with the same class motif, so nets pretrained on the classification data transfer),
with a random colour, scale (about
13%-70% of the short side, log-uniform), aspect stretch, mild tilt and position. Objects may overlap a little
(later ones are painted over earlier ones) and may be cut by the image border.

Annotations follow VOC: the box is the bounding box of the object's VISIBLE pixels (1-based inclusive);
``truncated=1`` when part of the object lies outside the image; ``difficult=1`` when the visible box is small
(a side < 24 px) or less than 60% of the object is visible (occlusion or truncation); objects with almost
nothing visible are not annotated. Every image is drawn by its own ``numpy.random.Generator`` seeded by
``(seed, split, index)``. The folder (``voc-<N>c-<hash>``: ``JPEGImages/``, ``Annotations/``,
``ImageSets/Main/{trainval,train,val,test}.txt`` and ``spec.json``) is written once, atomically, like
``ensure_generated``."""

from __future__ import annotations

import argparse
import logging
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .generated import (
    GENERATOR_VERSION,
    JPEG_QUALITY,
    SHAPE_NAMES,
    SHAPES,
    SPEC_FILE,
    _background,
    _clutter,
    _image_size,
    _lum,
    _read_spec,
    build_once,
    class_names,
    paint_object,
    spec_hash,
)

log = logging.getLogger(__name__)

__all__ = ["DET_GENERATOR_VERSION", "SPLIT_IDS", "ensure_generated_voc", "generated_classes", "render_scene"]

DET_GENERATOR_VERSION = 2  # 2: objects filled with their class's motif (motifs.py)
SPLIT_IDS = {"trainval": 0, "test": 1}
STREAM = 7919  # separates these random streams from the classification generator's
MIN_SCALE, MAX_SCALE = 0.13, 0.70  # object extent as a fraction of the short side (log-uniform)
MAX_OVERLAP = 0.45  # intersection / smaller box area allowed between two objects' boxes
OUT_PROB, OUT_FRAC = 0.3, 0.4  # chance that an object may leave the image, by up to this part of its extent
SMALL_SIDE = 24  # visible box side below this: difficult
MIN_VISIBLE = 0.6  # visible part of the object below this: difficult
MIN_ANNOTATED, MIN_ANNOTATED_PX = 0.12, 40  # below either: not annotated
TRUNCATED_BELOW = 0.97  # in-image part of the object below this: truncated


def _polygons(rng: np.random.Generator, shape: str, short: int) -> tuple[list[tuple[np.ndarray, int]], np.ndarray]:
    """The shape's polygons, scaled, stretched and tilted, centred on the origin (pixels), and the matrix
    (unit -> pixel offsets) that placed them."""
    extent = float(np.exp(rng.uniform(np.log(MIN_SCALE), np.log(MAX_SCALE)))) * short
    stretch = float(np.exp(rng.uniform(np.log(0.6), np.log(1.7))))
    sx, sy = np.sqrt(stretch), 1.0 / np.sqrt(stretch)
    theta = rng.uniform(-0.35, 0.35)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    mat = rot @ np.diag([sx, sy]) * (extent / 2 / max(sx, sy))
    return [(pts @ mat.T, val) for pts, val in SHAPES[shape]()], mat


def _place(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, w: int, h: int) -> np.ndarray:
    """A centre for an object spanning ``lo..hi`` around it; sometimes letting it leave the image."""
    frac = OUT_FRAC if rng.random() < OUT_PROB else 0.0
    centre = []
    for size, a, b in ((w, lo[0], hi[0]), (h, lo[1], hi[1])):
        slack = frac * (b - a)
        low, high = -a - slack, size - b + slack
        centre.append(rng.uniform(low, high) if high > low else size / 2 - (a + b) / 2)
    return np.asarray(centre)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over the smaller area of two ``x0 y0 x1 y1`` boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return float(iw * ih / max(small, 1e-6))


def _raster(polys: list[tuple[np.ndarray, int]], centre: np.ndarray, w: int, h: int) -> tuple[np.ndarray, int]:
    """``(mask inside the image, pixel area of the whole object)``, drawn once on a canvas covering both."""
    pts = np.concatenate([p for p, _ in polys]) + centre
    x0, y0 = min(0, int(np.floor(pts[:, 0].min())) - 1), min(0, int(np.floor(pts[:, 1].min())) - 1)
    x1, y1 = max(w, int(np.ceil(pts[:, 0].max())) + 2), max(h, int(np.ceil(pts[:, 1].max())) + 2)
    canvas = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(canvas)
    for p, val in polys:
        draw.polygon([(float(x) - x0, float(y) - y0) for x, y in p + centre], fill=val)
    full = np.asarray(canvas) > 127
    return full[-y0 : -y0 + h, -x0 : -x0 + w], int(full.sum())


def _colour(rng: np.random.Generator, bg_lum: float, avoid: list[np.ndarray]) -> np.ndarray:
    """A random colour contrasting with the background luminance and unlike the colours in ``avoid``."""
    col = rng.integers(0, 256, 3).astype(np.float32)
    for _ in range(10):
        if abs(_lum(col) - bg_lum) >= 100 and all(np.abs(col - c).sum() >= 150 for c in avoid):
            return col
        col = rng.integers(0, 256, 3).astype(np.float32)
    return 255.0 - col


def render_scene(
    rng: np.random.Generator, num_classes: int, min_side: int = 180, max_side: int = 260, max_objects: int = 4
) -> tuple[Image.Image, list[dict]]:
    """Draw one scene; return the image and its objects (``class``, ``box`` 1-based, ``truncated``, ``difficult``)."""
    h, w = _image_size(rng, min_side, max_side)
    short = min(h, w)
    bg, bg_lum = _background(rng, h, w)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    _clutter(rng, ImageDraw.Draw(img, "RGBA"), h, w)
    arr = np.asarray(img, dtype=np.float32).copy()
    ys = np.linspace(-1, 1, h, dtype=np.float32)[:, None, None]
    placed: list[tuple[int, np.ndarray, int, np.ndarray, np.ndarray]] = []  # class, mask, full area, box, colour
    for _ in range(int(rng.integers(1, max_objects + 1))):
        cls = int(rng.integers(num_classes))
        polys, mat = _polygons(rng, SHAPE_NAMES[cls], short)
        fill = np.concatenate([p for p, v in polys if v])
        lo, hi = fill.min(0), fill.max(0)
        for _attempt in range(20):
            centre = _place(rng, lo, hi, w, h)
            box = np.clip(np.concatenate([lo + centre, hi + centre]), 0, [w, h, w, h])
            if all(_overlap(box, p[3]) <= MAX_OVERLAP for p in placed):
                break
        else:
            continue
        mask, full_area = _raster(polys, centre, w, h)
        if not mask.any():
            continue
        near = [col for _, _, _, other, col in placed if _overlap(box, other) > 0]
        col = _colour(rng, bg_lum, near)  # touching objects differ in colour, so each stays visible
        arr = paint_object(arr, mask, col, rng.uniform(-0.25, 0.25) * ys, cls, mat, centre, rng)
        placed.append((cls, mask, full_area, box, col))
    arr += rng.normal(0, 4.0, (h, w, 1)).astype(np.float32)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    _clutter(rng, ImageDraw.Draw(img, "RGBA"), h, w, lines_only=True)
    objects = []
    covered = np.zeros((h, w), dtype=bool)
    for cls, mask, full_area, *_ in reversed(placed):  # later objects occlude earlier ones
        visible = mask & ~covered
        covered |= mask
        n = int(visible.sum())
        if n < MIN_ANNOTATED_PX or n < MIN_ANNOTATED * full_area:
            continue
        rows, cols = np.flatnonzero(visible.any(1)), np.flatnonzero(visible.any(0))
        x1, y1, x2, y2 = int(cols[0]) + 1, int(rows[0]) + 1, int(cols[-1]) + 1, int(rows[-1]) + 1
        small = min(x2 - x1 + 1, y2 - y1 + 1) < SMALL_SIDE
        objects.append(
            {
                "class": cls,
                "box": (x1, y1, x2, y2),
                "truncated": int(mask.sum()) < TRUNCATED_BELOW * full_area,
                "difficult": small or n < MIN_VISIBLE * full_area,
            }
        )
    objects.reverse()
    return img, objects


def _annotation_xml(image_id: str, w: int, h: int, objects: list[dict], names: list[str]) -> bytes:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2007"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "sppnet-exp generated scenes"
    size = ET.SubElement(root, "size")
    for tag, val in (("width", w), ("height", h), ("depth", 3)):
        ET.SubElement(size, tag).text = str(val)
    ET.SubElement(root, "segmented").text = "0"
    for o in objects:
        el = ET.SubElement(root, "object")
        ET.SubElement(el, "name").text = names[o["class"]]
        ET.SubElement(el, "pose").text = "Unspecified"
        ET.SubElement(el, "truncated").text = str(int(o["truncated"]))
        ET.SubElement(el, "difficult").text = str(int(o["difficult"]))
        bb = ET.SubElement(el, "bndbox")
        for tag, val in zip(("xmin", "ymin", "xmax", "ymax"), o["box"]):
            ET.SubElement(bb, tag).text = str(val)
    tree = ET.ElementTree(root)
    ET.indent(tree, space="\t")
    return ET.tostring(root, encoding="utf-8") + b"\n"


def _image_id(split: str, index: int) -> str:
    return f"{SPLIT_IDS[split]}{index:05d}"


def _write_dataset(tmp: Path, spec: dict) -> dict[str, int]:
    """Write every scene of ``spec`` under ``tmp``; return counts of images, objects, difficult, truncated."""
    names = spec["classes"]
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (tmp / sub).mkdir(parents=True)
    counts = {"images": 0, "objects": 0, "difficult": 0, "truncated": 0}
    for split in SPLIT_IDS:
        ids = []
        for i in range(spec[split]):
            rng = np.random.default_rng([spec["seed"], STREAM, SPLIT_IDS[split], i])
            img, objects = render_scene(rng, len(names), spec["min_side"], spec["max_side"], spec["max_objects"])
            image_id = _image_id(split, i)
            img.save(tmp / "JPEGImages" / f"{image_id}.jpg", format="JPEG", quality=spec["jpeg_quality"])
            xml = _annotation_xml(image_id, img.width, img.height, objects, names)
            (tmp / "Annotations" / f"{image_id}.xml").write_bytes(xml)
            ids.append(image_id)
            counts["images"] += 1
            counts["objects"] += len(objects)
            counts["difficult"] += sum(o["difficult"] for o in objects)
            counts["truncated"] += sum(o["truncated"] for o in objects)
        lists = {split: ids}
        if split == "trainval":
            lists.update(train=ids[0::2], val=ids[1::2])
        for name, listed in lists.items():
            (tmp / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{i}\n" for i in listed))
    return counts


def generated_classes(folder: str | Path) -> list[str]:
    """The class list (label order) of a generated scenes folder, from its ``spec.json``."""
    spec = _read_spec(Path(folder))
    if spec is None or "classes" not in spec:
        raise FileNotFoundError(f"{folder} is not a generated scenes folder (no readable {SPEC_FILE})")
    return list(spec["classes"])


def ensure_generated_voc(
    data_dir: str | Path,
    num_classes: int = 6,
    trainval: int = 150,
    test: int = 100,
    min_side: int = 180,
    max_side: int = 260,
    max_objects: int = 4,
    seed: int = 0,
) -> Path:
    """Return the generated VOC-layout scenes folder under ``data_dir``, generating it unless a matching one exists.

    Safe to call from several processes at once (each builds in its own temporary folder; the first rename wins).
    """
    names = class_names(num_classes)  # validates num_classes
    if not 32 <= min_side <= max_side:
        raise ValueError(f"need 32 <= min_side <= max_side, got {min_side}, {max_side}")
    if not (1 <= trainval < 100000 and 1 <= test < 100000):
        raise ValueError(f"trainval and test must be in 1..99999, got {trainval}, {test}")
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}")
    spec = {
        "generator": "voc_scenes",
        "det_generator_version": DET_GENERATOR_VERSION,
        "shapes_generator_version": GENERATOR_VERSION,
        "num_classes": int(num_classes),
        "trainval": int(trainval),
        "test": int(test),
        "min_side": int(min_side),
        "max_side": int(max_side),
        "max_objects": int(max_objects),
        "seed": int(seed),
        "jpeg_quality": JPEG_QUALITY,
        "classes": names,
    }
    return build_once(Path(data_dir) / f"voc-{num_classes}c-{spec_hash(spec)}", spec, _write_dataset)


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m sppnet_exp.data.generated_det --data-dir data``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="data")
    p.add_argument("--num-classes", type=int, default=6)
    p.add_argument("--trainval", type=int, default=150)
    p.add_argument("--test", type=int, default=100)
    p.add_argument("--max-objects", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    start = time.perf_counter()
    out = ensure_generated_voc(a.data_dir, a.num_classes, a.trainval, a.test, max_objects=a.max_objects, seed=a.seed)
    print(f"{out} ({time.perf_counter() - start:.1f}s)")


if __name__ == "__main__":
    main()
