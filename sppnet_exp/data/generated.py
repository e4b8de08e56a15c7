"""The embedded, procedurally generated dataset (the laptop default), written once to disk.

Each class is an object SHAPE (disc, ring, triangle, square frame, cross, star, crescent, arrow, hourglass,
striped ellipse, ...) filled with the class's own periodic MOTIF (bars, checks, dots, rings, ...; ``motifs.py``),
drawn in the object's coordinates so that it is stretched, tilted and scaled with the object. Colour never
determines the class: every instance gets random colours, and the background colours are random too. The motif
is the class-specific local cue the small CPU nets can pick up from the first steps (without it they sit at
chance for epochs, ``experiments/table2/README.md``); the outline is the global one. The generator is built so
that the effects SPP-net measures CAN show:

* objects appear at many scales (about 30%-90% of the short side, log-uniform), stretched in aspect ratio
  (0.6-1.7) and rotated: multi-level pooling and multi-size training help with such variation;
* objects are placed anywhere in the image (often off-centre), on images of varied size and aspect ratio
  (short side ``min_side``-``max_side``, aspect 0.71-1.6 in a few exact ratios), so parts often fall outside
  the centre crop: the corner crops in training, the 10-view test and the full-image view have something to
  gain over a single centre crop;
* backgrounds are cluttered (gradients, blotchy noise texture, random lines and blobs, small distractor
  fragments, occasional lines over the object), so the task is not solved by a colour or edge count.

Every image is drawn by its own ``numpy.random.Generator`` seeded by ``(seed, split, class, index)``, so the
dataset is a deterministic function of its parameters (identical bytes for the same seed and library
versions). It is written once: built in a temporary folder and renamed into place, with a ``spec.json`` marker
holding the parameters; the folder name includes a hash of them, so a different spec is generated beside it,
and a present, matching folder is reused. Layouts: ``"imagenet"`` (``train/<class>/*.JPEG``,
``val/<class>/*.JPEG``) and ``"caltech101"`` (``101_ObjectCategories/<class>/*.jpg`` plus
``BACKGROUND_Google`` clutter-only images)."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .motifs import motif_for, motif_mask, pattern_colour

log = logging.getLogger(__name__)

GENERATOR_VERSION = 6  # 6: class-specific fill motifs (motifs.py)
JPEG_QUALITY = 90
SPEC_FILE = "spec.json"
SPLIT_IDS = {"train": 0, "val": 1, "pool": 2, "background": 3}
Polygon = tuple[np.ndarray, int]  # (N x 2 unit-coordinate vertices, mask value 255 = fill / 0 = cut out)


def _circle(r: float, cx: float = 0.0, cy: float = 0.0, n: int = 40, a0: float = 0.0, a1: float = 2 * np.pi):
    t = np.linspace(a0, a1, n, endpoint=a1 - a0 < 2 * np.pi)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _star(points: int = 5, outer: float = 1.0, inner: float = 0.42) -> np.ndarray:
    t = np.arange(2 * points) * np.pi / points - np.pi / 2
    r = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _poly(*pts: tuple[float, float]) -> np.ndarray:
    return np.array(pts, dtype=np.float64)


# Shapes in unit coordinates (about [-1, 1]^2); later polygons are painted over earlier ones.
SHAPES: dict[str, Callable[[], list[Polygon]]] = {
    "disc": lambda: [(_circle(1.0), 255)],
    "ring": lambda: [(_circle(1.0), 255), (_circle(0.62), 0)],
    "triangle": lambda: [(_circle(1.0, 0, 0.2, n=3, a0=-np.pi / 2, a1=-np.pi / 2 + 2 * np.pi), 255)],
    "square_frame": lambda: [(_rect(-0.9, -0.9, 0.9, 0.9), 255), (_rect(-0.56, -0.56, 0.56, 0.56), 0)],
    "cross": lambda: [(_rect(-1, -0.28, 1, 0.28), 255), (_rect(-0.28, -1, 0.28, 1), 255)],
    "star": lambda: [(_star(), 255)],
    "crescent": lambda: [(_circle(1.0), 255), (_circle(0.85, 0.45, 0.0), 0)],
    "arrow": lambda: [(_rect(-1, -0.18, 0.15, 0.18), 255), (_poly((0.1, -0.65), (1, 0), (0.1, 0.65)), 255)],
    "hourglass": lambda: [(_poly((-0.75, -1), (0.75, -1), (0.1, 0), (0.75, 1), (-0.75, 1), (-0.1, 0)), 255)],
    "striped_ellipse": lambda: [
        (_circle(1.0) * np.array([1.0, 0.62]), 255),
        *[(_rect(x, -1, x + 0.2, 1), 0) for x in (-0.6, -0.1, 0.4)],
    ],
    "chevron": lambda: [(_poly((-1, -0.7), (0, 0.2), (1, -0.7), (1, 0.05), (0, 0.95), (-1, 0.05)), 255)],
    "dumbbell": lambda: [
        (_circle(0.36, -0.64, 0), 255),
        (_circle(0.36, 0.64, 0), 255),
        (_rect(-0.64, -0.13, 0.64, 0.13), 255),
    ],
    "t_shape": lambda: [(_rect(-1, -1, 1, -0.55), 255), (_rect(-0.22, -0.55, 0.22, 1), 255)],
    "semicircle": lambda: [(_circle(1.0, 0, -0.45, n=24, a0=0.0, a1=np.pi), 255)],
    "three_dots": lambda: [
        (_circle(0.3, 0.66 * np.cos(a), 0.66 * np.sin(a)), 255) for a in np.deg2rad([-90.0, 30.0, 150.0])
    ],
    "bullseye": lambda: [(_circle(1.0), 255), (_circle(0.72), 0), (_circle(0.36), 255)],
}
SHAPE_NAMES = list(SHAPES)


def class_names(num_classes: int) -> list[str]:
    """Folder names of the first ``num_classes`` shape classes (``"00_disc"``, ...; sorted = class order)."""
    if not 1 <= num_classes <= len(SHAPE_NAMES):
        raise ValueError(f"num_classes must be in 1..{len(SHAPE_NAMES)} for the generated dataset, got {num_classes}")
    return [f"{i:02d}_{name}" for i, name in enumerate(SHAPE_NAMES[:num_classes])]


def _lum(c: np.ndarray) -> float:
    return float(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])


def _rand_color(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def _background(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, float]:
    """Gradient + blotchy noise texture (float HxWx3) and its mean luminance."""
    c1, c2 = rng.integers(0, 256, 3).astype(np.float32), rng.integers(0, 256, 3).astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    ys, xs = np.ogrid[0:h, 0:w]
    t = (xs * np.cos(ang) + ys * np.sin(ang)).astype(np.float32)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    bg = c1 + t[..., None] * (c2 - c1)
    cell = int(rng.integers(6, 20))
    coarse = rng.normal(0.0, rng.uniform(8, 30), (max(2, h // cell), max(2, w // cell), 3)).astype(np.float32)
    tex = Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)
    bg += np.asarray(tex, dtype=np.float32) - 128.0
    return bg, (_lum(c1) + _lum(c2)) / 2


def _clutter(rng: np.random.Generator, draw: ImageDraw.ImageDraw, h: int, w: int, lines_only: bool = False) -> None:
    """Random lines, blobs and small distractor fragments (never whole class shapes)."""
    short = min(h, w)
    for _ in range(int(rng.integers(0, 4)) if not lines_only else int(rng.integers(0, 2))):
        x0, x1 = rng.uniform(-0.1, 1.1, 2) * w
        y0, y1 = rng.uniform(-0.1, 1.1, 2) * h
        draw.line([(x0, y0), (x1, y1)], fill=(*_rand_color(rng), int(rng.integers(60, 140))), width=1)
    if lines_only:
        return
    for _ in range(int(rng.integers(0, 3))):  # irregular, semi-transparent blobs (not discs)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        k = int(rng.integers(5, 9))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = rng.uniform(0.04, 0.2) * short * rng.uniform(0.35, 1.0, k)
        pts = [(cx + a * np.cos(b), cy + a * np.sin(b)) for a, b in zip(rad, ang)]
        draw.polygon(pts, fill=(*_rand_color(rng), int(rng.integers(40, 110))))
    for _ in range(int(rng.integers(0, 3))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.03, 0.06) * short
        if rng.random() < 0.5:
            k = int(rng.integers(3, 6))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = r * rng.uniform(0.4, 1.0, k)
            pts = [(cx + a * np.cos(b), cy + a * np.sin(b)) for a, b in zip(rad, ang)]
            draw.polygon(pts, fill=_rand_color(rng))
        else:
            a0 = float(rng.uniform(0, 360))
            draw.arc(
                [cx - r, cy - r, cx + r, cy + r],
                a0,
                a0 + float(rng.uniform(40, 200)),
                fill=_rand_color(rng),
                width=2,
            )


# (height, width) in fifths of the short side: landscape up to 8:5 (1.6), portrait up to 7:5 (w/h >= 0.71).
# Exact ratios (short sides are multiples of 5) make full-view sizes repeat, so full-view batches fill up.
ASPECTS = ((5, 5), (5, 6), (5, 7), (5, 8), (6, 5), (7, 5))


def _image_size(rng: np.random.Generator, min_side: int, max_side: int) -> tuple[int, int]:
    """``(h, w)``: short side a multiple of 5 in [min_side, max_side] (if any), aspect w/h in 0.71..1.6."""
    lo, hi = -(-min_side // 5), max_side // 5
    short = 5 * int(rng.integers(lo, hi + 1)) if lo <= hi else int(rng.integers(min_side, max_side + 1))
    fh, fw = ASPECTS[int(rng.integers(len(ASPECTS)))]
    return int(round(short * fh / 5)), int(round(short * fw / 5))


def render_image(rng: np.random.Generator, shape: str | None, min_side: int = 120, max_side: int = 200) -> Image.Image:
    """Draw one image: cluttered background and (unless ``shape`` is None) one object of class ``shape``."""
    h, w = _image_size(rng, min_side, max_side)
    short = min(h, w)
    bg, bg_lum = _background(rng, h, w)
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img, "RGBA")
    _clutter(rng, draw, h, w)
    if shape is not None:
        stretch = float(np.exp(rng.uniform(np.log(0.6), np.log(1.7))))
        sx, sy = np.sqrt(stretch), 1.0 / np.sqrt(stretch)
        extent = float(np.exp(rng.uniform(np.log(0.45), np.log(1.0)))) * short  # object size in pixels
        radius = extent / 2 / max(sx, sy)
        theta = rng.uniform(-0.35, 0.35)  # mild tilt (±20°): classes keep an upright orientation
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        mat = rot @ np.diag([sx, sy]) * radius
        polys = [(pts @ mat.T, val) for pts, val in SHAPES[shape]()]
        allpts = np.concatenate([p for p, v in polys if v])
        lo, hi = allpts.min(0), allpts.max(0)
        # Position anywhere, letting up to ~15% of the object's half-extent leave the image.
        cxy = []
        for size, a, b in ((w, lo[0], hi[0]), (h, lo[1], hi[1])):
            low, high = -a * 0.85, size - b * 0.85
            cxy.append(rng.uniform(low, high) if high > low else size / 2 - (a + b) / 2)
        mask = Image.new("L", (w, h), 0)
        mdraw = ImageDraw.Draw(mask)
        for pts, val in polys:
            mdraw.polygon([(float(x) + cxy[0], float(y) + cxy[1]) for x, y in pts], fill=val)
        col = rng.integers(0, 256, 3).astype(np.float32)
        for _ in range(6):
            if abs(_lum(col) - bg_lum) >= 100:
                break
            col = rng.integers(0, 256, 3).astype(np.float32)
        else:
            col = 255.0 - col
        arr = np.asarray(img, dtype=np.float32)
        shade = rng.uniform(-0.25, 0.25)
        ys = np.linspace(-1, 1, h, dtype=np.float32)[:, None, None]
        m = np.asarray(mask) > 127
        arr = paint_object(arr, m, col, shade * ys, SHAPE_NAMES.index(shape), mat, np.asarray(cxy), rng)
        arr += rng.normal(0, 4.0, (h, w, 1)).astype(np.float32)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        _clutter(rng, ImageDraw.Draw(img, "RGBA"), h, w, lines_only=True)
    return img


def paint_object(
    arr: np.ndarray,
    mask: np.ndarray,
    col: np.ndarray,
    shade: np.ndarray,
    class_index: int,
    mat: np.ndarray,
    centre: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """``arr`` (HxWx3 float) with the object painted where ``mask`` is set: colour ``col`` shaded by ``shade``
    (HxWx1 factors), filled with its class's motif, drawn in the unit coordinates that ``mat`` (unit -> pixel
    offsets from ``centre``) placed the shape in."""
    h, w = mask.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    motif = motif_mask(motif_for(class_index), xs, ys, np.linalg.inv(mat), centre, rng)
    obj = np.where(motif[..., None], pattern_colour(col), col) * (1.0 + shade)
    return np.where(mask[..., None], obj, arr)


def _save_jpeg(img: Image.Image, path: Path) -> None:
    img.save(path, format="JPEG", quality=JPEG_QUALITY)


def _spec(
    layout: str,
    num_classes: int,
    train_per_class: int,
    val_per_class: int,
    seed: int,
    min_side: int,
    max_side: int,
) -> dict:
    return {
        "generator_version": GENERATOR_VERSION,
        "layout": layout,
        "num_classes": num_classes,
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
        "seed": seed,
        "min_side": min_side,
        "max_side": max_side,
        "jpeg_quality": JPEG_QUALITY,
        "classes": class_names(num_classes),
    }


def spec_hash(spec: dict) -> str:
    """Short, stable hash of a generation spec."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def _read_spec(folder: Path) -> dict | None:
    try:
        return json.loads((folder / SPEC_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write_dataset(tmp: Path, spec: dict) -> dict[str, int]:
    """Write all images of ``spec`` under ``tmp``; return how many."""
    seed, lo, hi = spec["seed"], spec["min_side"], spec["max_side"]
    n = 0

    def emit(folder: Path, name: str, split: str, cls: int, index: int, shape: str | None) -> None:
        nonlocal n
        rng = np.random.default_rng([seed, SPLIT_IDS[split], cls, index])
        _save_jpeg(render_image(rng, shape, lo, hi), folder / name)
        n += 1

    names = spec["classes"]
    if spec["layout"] == "imagenet":
        for split, count in (("train", spec["train_per_class"]), ("val", spec["val_per_class"])):
            for c, cname in enumerate(names):
                folder = tmp / split / cname
                folder.mkdir(parents=True)
                for i in range(count):
                    emit(folder, f"{cname}_{split}_{i:05d}.JPEG", split, c, i, SHAPE_NAMES[c])
    else:
        base = tmp / "101_ObjectCategories"
        count = spec["train_per_class"] + spec["val_per_class"]
        for c, cname in enumerate(names):
            folder = base / cname
            folder.mkdir(parents=True)
            for i in range(count):
                emit(folder, f"image_{i + 1:04d}.jpg", "pool", c, i, SHAPE_NAMES[c])
        folder = base / "BACKGROUND_Google"
        folder.mkdir(parents=True)
        for i in range(min(count, 50)):
            emit(folder, f"image_{i + 1:04d}.jpg", "background", 0, i, None)
    return {"images": n}


def ensure_generated(
    root: str | Path,
    layout: str = "imagenet",
    num_classes: int = 10,
    train_per_class: int = 260,
    val_per_class: int = 50,
    seed: int = 0,
    min_side: int = 120,
    max_side: int = 200,
) -> Path:
    """Return the generated dataset folder under ``root``, generating it first unless a matching one exists.

    ``layout="imagenet"`` gives ``train/`` and ``val/`` class folders (``train_per_class``/``val_per_class``
    images each); ``layout="caltech101"`` gives ``101_ObjectCategories/<class>/`` with
    ``train_per_class + val_per_class`` images per class and a ``BACKGROUND_Google`` folder. Safe to call from
    several processes at once (each builds in its own temporary folder; the first rename wins).
    """
    if layout not in ("imagenet", "caltech101"):
        raise ValueError(f"layout must be 'imagenet' or 'caltech101', got {layout!r}")
    if not 16 <= min_side <= max_side:
        raise ValueError(f"need 16 <= min_side <= max_side, got {min_side}, {max_side}")
    if train_per_class < 0 or val_per_class < 0:
        raise ValueError("train_per_class and val_per_class must be >= 0")
    spec = _spec(layout, num_classes, train_per_class, val_per_class, seed, min_side, max_side)
    return build_once(Path(root) / f"{layout}-{num_classes}c-{spec_hash(spec)}", spec, _write_dataset)


def build_once(final: Path, spec: dict, write: Callable[[Path, dict], object]) -> Path:
    """Return ``final`` when it holds a dataset made from ``spec``; else build it with ``write(tmp, spec)`` in a
    temporary sibling folder, add ``spec.json`` and rename it into place (several processes may race: the first
    rename wins). ``write`` returns a summary that is logged."""
    if final.is_dir():
        if _read_spec(final) == spec:
            return final
        log.warning("generated dataset %s does not match its spec; regenerating", final)
        shutil.rmtree(final, ignore_errors=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    try:
        summary = write(tmp, spec)
        (tmp / SPEC_FILE).write_text(json.dumps(spec, indent=1, sort_keys=True))
        try:
            os.rename(tmp, final)
        except OSError:
            if _read_spec(final) != spec:  # someone else's rename should have won; anything else is an error
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("generated %s in %s (%.1fs)", summary, final, time.perf_counter() - start)
    return final


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m sppnet_exp.data.generated --root data/generated [--layout caltech101]``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="data/generated")
    p.add_argument("--layout", default="imagenet", choices=["imagenet", "caltech101"])
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--train-per-class", type=int, default=260)
    p.add_argument("--val-per-class", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    start = time.perf_counter()
    out = ensure_generated(a.root, a.layout, a.num_classes, a.train_per_class, a.val_per_class, a.seed)
    print(f"{out} ({time.perf_counter() - start:.1f}s)")


if __name__ == "__main__":
    main()
