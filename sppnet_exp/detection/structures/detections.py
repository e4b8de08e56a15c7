"""Detection results: the :class:`Detections` container and the JSON Lines detections file.

File format: one JSON object per line, ``{"image_id": str, "label": str, "score": float, "box": [x1, y1, x2, y2]}``
with the box in VOC 1-based inclusive pixel coordinates of the original image: ``x1 <= x2`` and ``y1 <= y2`` (a box
with ``x2 == x1`` is one pixel wide, as the pipeline's clipped boxes can be; an inverted box is an error naming the
line). Floats are written with Python's shortest round-trip ``repr``, so reading a file back gives the same scores
and boxes bit for bit (no rounding that would create ties, unlike the 3-decimal files of py-faster-rcnn). Blank
lines are ignored.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from sppnet_exp.utils.io import atomic_write_text

__all__ = [
    "ClassDetections",
    "DetectionSet",
    "Detections",
    "ImageDetections",
    "read_detections",
    "write_detections",
]

_KEYS = ("image_id", "label", "score", "box")


class ClassDetections(NamedTuple):
    """The detections of one class, in their original order."""

    image_ids: np.ndarray  # (N,) str
    scores: np.ndarray  # (N,) float64
    boxes: np.ndarray  # (N, 4) float64


@dataclass
class ImageDetections:
    """Detections of one image: per class index c (0-based), boxes (n, 4) 1-based and scores (n,)."""

    image_id: str
    boxes: dict[int, np.ndarray]
    scores: dict[int, np.ndarray]


def _few(items: Iterable[Any], n: int = 5) -> str:
    items = list(items)
    shown = ", ".join(repr(x) for x in items[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


@dataclass
class Detections:
    """A flat list of scored boxes: ``image_ids`` (N,) str, ``labels`` (N,) class names, ``scores`` (N,) float64,
    ``boxes`` (N, 4) float64 (1-based inclusive). The order of rows is kept everywhere (it breaks score ties in the
    evaluator, as the order of lines in a devkit results file does)."""

    image_ids: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray

    def __post_init__(self) -> None:
        self.image_ids = np.asarray(self.image_ids, dtype=object).reshape(-1)
        self.labels = np.asarray(self.labels, dtype=object).reshape(-1)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        n = len(self.image_ids)
        if not (len(self.labels) == len(self.scores) == len(self.boxes) == n):
            raise ValueError(
                f"Detections: lengths differ (image_ids {n}, labels {len(self.labels)}, scores {len(self.scores)}, "
                f"boxes {len(self.boxes)})"
            )
        if n and not np.isfinite(self.scores).all():
            raise ValueError(f"Detections: {int((~np.isfinite(self.scores)).sum())} non-finite scores")
        if n and not np.isfinite(self.boxes).all():
            raise ValueError(f"Detections: {int((~np.isfinite(self.boxes).all(1)).sum())} boxes with non-finite coords")

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def from_images(cls, dets: Sequence[ImageDetections], classes: Sequence[str]) -> Detections:
        """The flat container of per-image, per-class arrays (class index c -> ``classes[c]``), image by image."""
        ids: list[str] = []
        labels: list[str] = []
        scores, boxes = [], []
        for d in dets:
            for c, b in d.boxes.items():
                ids += [d.image_id] * len(b)
                labels += [classes[c]] * len(b)
                scores.append(d.scores[c])
                boxes.append(b)
        score_arr = np.concatenate(scores) if scores else np.zeros(0, np.float32)
        box_arr = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
        return cls.from_arrays(ids, labels, score_arr, box_arr)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros(0, object), np.zeros(0, object), np.zeros(0), np.zeros((0, 4)))

    @classmethod
    def from_arrays(
        cls,
        image_ids: str | Sequence[str] | np.ndarray,
        labels: str | int | Sequence[str] | Sequence[int] | np.ndarray,
        scores: Sequence[float] | np.ndarray,
        boxes: Sequence[Sequence[float]] | np.ndarray,
        classes: Sequence[str] | None = None,
    ) -> Detections:
        """Build from arrays; a single ``image_id``/``label`` is broadcast. Integer labels are 0-based indices into
        ``classes`` (required then); string labels are class names."""
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        n = len(scores)
        ids = np.full(n, image_ids, dtype=object) if isinstance(image_ids, str) else np.asarray(image_ids, object)
        if isinstance(labels, str | int | np.integer):
            labels = [labels] * n
        lab = np.asarray(labels)
        if lab.size and np.issubdtype(lab.dtype, np.integer):
            if classes is None:
                raise ValueError("Detections.from_arrays: integer labels need `classes`")
            if lab.min() < 0 or lab.max() >= len(classes):
                raise ValueError(f"Detections.from_arrays: labels outside 0..{len(classes) - 1}")
            lab = np.asarray(list(classes), dtype=object)[lab]
        return cls(ids, np.asarray(lab, dtype=object), scores, np.asarray(boxes, dtype=np.float64).reshape(-1, 4))

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> Detections:
        """From dicts in the file's schema (``image_id, label, score, box``), validated like file lines."""
        rows = [_parse_line(r, f"detection record {k}") for k, r in enumerate(records)]
        if not rows:
            return cls.empty()
        ids, labels, scores, boxes = zip(*rows)
        return cls(np.asarray(ids, object), np.asarray(labels, object), np.asarray(scores), np.asarray(boxes))

    @classmethod
    def concat(cls, parts: Iterable[Detections]) -> Detections:
        """Rows of all ``parts`` in order."""
        parts = list(parts)
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.image_ids for p in parts]),
            np.concatenate([p.labels for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.boxes for p in parts]),
        )

    @property
    def classes(self) -> list[str]:
        """Class names present, in order of first appearance."""
        return list(dict.fromkeys(self.labels.tolist()))

    def select(self, mask_or_index: np.ndarray) -> Detections:
        """Rows by boolean mask or index array (order kept)."""
        m = np.asarray(mask_or_index)
        return Detections(self.image_ids[m], self.labels[m], self.scores[m], self.boxes[m])

    def by_class(self) -> dict[str, ClassDetections]:
        """``{class name: ClassDetections}`` with each class's rows in their original order."""
        out: dict[str, ClassDetections] = {}
        for name in self.classes:
            m = self.labels == name
            out[name] = ClassDetections(self.image_ids[m], self.scores[m], self.boxes[m])
        return out

    def check_against(self, image_ids: Iterable[str], classes: Sequence[str]) -> None:
        """Raise ``ValueError`` listing a few offenders if any image id or label is not in the dataset/classes."""
        known_ids = set(image_ids)
        bad_ids = [i for i in dict.fromkeys(self.image_ids.tolist()) if i not in known_ids]
        known_cls = set(classes)
        bad_cls = [c for c in self.classes if c not in known_cls]
        problems = []
        if bad_ids:
            problems.append(f"{len(bad_ids)} image id(s) not in the evaluated set: {_few(bad_ids)}")
        if bad_cls:
            problems.append(f"{len(bad_cls)} label(s) not among the classes {list(classes)}: {_few(bad_cls)}")
        if problems:
            raise ValueError("detections do not match the dataset: " + "; ".join(problems))

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per row, in the file's schema."""
        return [
            {"image_id": str(i), "label": str(c), "score": float(s), "box": [float(v) for v in b]}
            for i, c, s, b in zip(self.image_ids, self.labels, self.scores, self.boxes)
        ]


DetectionSet = Detections  # alias used in the evaluator's signature


def write_detections(path: str | os.PathLike[str], dets: Detections) -> Path:
    """Write ``dets`` as JSON Lines, atomically (readers see the old file or the whole new one)."""
    lines = [json.dumps(r, allow_nan=False) for r in dets.to_records()]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _parse_line(obj: Any, where: str) -> tuple[str, str, float, list[float]]:
    if not isinstance(obj, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in _KEYS if k not in obj]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing} (need {list(_KEYS)})")
    image_id, label, score, box = (obj[k] for k in _KEYS)
    if not isinstance(image_id, str) or not image_id:
        raise ValueError(f"{where}: image_id must be a non-empty string, got {image_id!r}")
    if not isinstance(label, str) or not label:
        raise ValueError(f"{where}: label must be a non-empty string (class name), got {label!r}")
    if not _is_number(score) or not math.isfinite(score):
        raise ValueError(f"{where}: score must be a finite number, got {score!r}")
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) and math.isfinite(v) for v in box):
        raise ValueError(f"{where}: box must be 4 finite numbers [x1, y1, x2, y2], got {box!r}")
    x1, y1, x2, y2 = box
    if x2 < x1 or y2 < y1:
        which = " and ".join(f"{b} < {a}" for a, b, bad in (("x1", "x2", x2 < x1), ("y1", "y2", y2 < y1)) if bad)
        raise ValueError(
            f"{where}: box {box!r} has {which} (VOC boxes are [x1, y1, x2, y2], 1-based inclusive pixels: "
            "x1 <= x2, y1 <= y2; x2 == x1 is a box one pixel wide)"
        )
    return image_id, label, float(score), [float(v) for v in box]


def read_detections(path: str | os.PathLike[str]) -> Detections:
    """Read a JSON Lines detections file; a malformed line raises ``ValueError`` naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"detections file not found: {path}")
    ids: list[str] = []
    labels: list[str] = []
    scores: list[float] = []
    boxes: list[list[float]] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)  # NaN/Infinity literals parse, then fail the finiteness checks below
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: invalid JSON ({e.msg}, column {e.colno})") from e
            i, c, s, b = _parse_line(obj, where)
            ids.append(i)
            labels.append(c)
            scores.append(s)
            boxes.append(b)
    return Detections(np.asarray(ids, object), np.asarray(labels, object), np.asarray(scores), np.asarray(boxes))
