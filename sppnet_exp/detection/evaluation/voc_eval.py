"""PASCAL VOC detection AP with the semantics of the VOC2007 devkit's ``VOCevaldet.m``.

Per class: the GT of that class in every image of the evaluated set (difficult ones included for matching;
``npos`` counts only non-difficult GT); detections sorted by decreasing score with a STABLE sort (tied scores keep
input order, as MATLAB's ``sort``); each detection is assigned greedily to the GT of its image with the largest IoU
(+1 pixel convention; GT with ``iw <= 0`` or ``ih <= 0`` are skipped; ties go to the first GT). If that IoU is
``>= min_overlap``: a difficult GT makes the detection neither TP nor FP, an unmatched GT makes it TP (and matched),
an already matched GT makes it FP (a duplicate, never re-assigned to the next-best GT); otherwise it is FP.
``prec = tp / (tp + fp)``; the 0/0 of leading detections on difficult GT are ignored by the max, as MATLAB's ``max``
ignores NaN (py-faster-rcnn would return AP = NaN there). VOC07 11-point AP uses thresholds ``k / 10`` (exact
decimals, so a recall of 3/10 reaches 0.3); ``use_07_metric=False`` gives the VOC2010+ all-point AP (``VOCap``).

Decisions where the devkit is undefined: a class with no non-difficult GT (npos = 0) would divide by zero; its AP is
NaN, it is left out of the mAP (the mean over classes with npos > 0), listed in ``VOCResult.no_gt_classes`` and a
warning is issued. A class with GT but no detections has AP 0. If every detection of a class lies on difficult GT
(all precisions 0/0) its AP is 0 (MATLAB's ``max`` of all-NaN would give NaN).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sppnet_exp.detection.structures.detections import Detections, write_detections
from sppnet_exp.formats.pr_curves import pr_path
from sppnet_exp.utils.average_precision import voc_ap
from sppnet_exp.utils.io import atomic_write_json

__all__ = ["GroundTruth", "VOCResult", "evaluate_and_write", "evaluate_detections", "pr_points"]

PR_MAX_POINTS = 100


@dataclass
class GroundTruth:
    """The annotated objects of one image: ``boxes`` (G, 4) 1-based inclusive, ``labels`` (G,) 0-based indices
    into the class list (or class names), ``difficult`` (G,) bool. The data's ``ImageRecord`` has the same fields."""

    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray


@dataclass
class VOCResult:
    """Per-class AP (fractions), the mAP and the counts behind them."""

    ap: dict[str, float]
    map: float
    npos: dict[str, int]
    num_dets: dict[str, int]
    num_tp: dict[str, int] = field(default_factory=dict)
    recall: dict[str, np.ndarray] = field(default_factory=dict)
    precision: dict[str, np.ndarray] = field(default_factory=dict)
    no_gt_classes: list[str] = field(default_factory=list)
    use_07_metric: bool = True
    min_overlap: float = 0.5

    def to_json(self) -> dict[str, Any]:
        """``{"mAP": float, "AP": {class: float}}`` as fractions; NaN (a class without GT) becomes ``None``."""

        def num(v: float) -> float | None:
            return None if math.isnan(v) else float(v)

        return {"mAP": num(self.map), "AP": {c: num(v) for c, v in self.ap.items()}}


def _gt_items(gt: Any, classes: Sequence[str] | None) -> tuple[list[str], list[tuple[str, Any]], list[str]]:
    """(evaluated classes, [(image_id, record)], the names the records' integer labels index)."""
    if hasattr(gt, "records") and hasattr(gt, "classes"):  # a DetectionSplit (duck-typed)
        label_space = list(gt.classes)
        items = [(str(r.image_id), r) for r in gt.records]
        classes = label_space if classes is None else list(classes)
    elif isinstance(gt, Mapping):
        if classes is None:
            raise ValueError("evaluate_detections: `classes` is required when the ground truth is a mapping")
        classes = list(classes)
        label_space = classes
        items = [(str(k), v) for k, v in gt.items()]
    else:
        raise TypeError(f"ground truth must be a DetectionSplit or a mapping image_id -> GroundTruth, got {type(gt)}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"duplicate class names: {classes}")
    ids = [i for i, _ in items]
    if len(set(ids)) != len(ids):
        dup = [i for i in dict.fromkeys(ids) if ids.count(i) > 1]
        raise ValueError(f"ground truth lists image ids more than once: {dup[:5]}")
    return classes, items, label_space


def _gt_classes(labels: np.ndarray, label_space: list[str], cls_index: dict[str, int], image_id: str) -> np.ndarray:
    """Map a record's labels to evaluated-class indices (-1 for classes not evaluated)."""
    if labels.size == 0:
        return np.zeros(0, dtype=np.int64)
    if np.issubdtype(labels.dtype, np.integer):
        if labels.min() < 0 or labels.max() >= len(label_space):
            raise ValueError(f"ground truth of {image_id!r}: labels outside 0..{len(label_space) - 1}")
        names = [label_space[int(j)] for j in labels]
    else:
        names = [str(n) for n in labels]
    return np.asarray([cls_index.get(n, -1) for n in names], dtype=np.int64)


def _best_overlaps(det_boxes: np.ndarray, det_cls: np.ndarray, gt_boxes: np.ndarray, gt_cls: np.ndarray):
    """Per detection: max IoU over the image's GT of its class (``-inf`` if none intersects) and the first GT
    reaching it. Same arithmetic as VOCevaldet (float64, +1 widths)."""
    bb = det_boxes[:, None, :]
    gg = gt_boxes[None, :, :]
    iw = np.minimum(bb[..., 2], gg[..., 2]) - np.maximum(bb[..., 0], gg[..., 0]) + 1
    ih = np.minimum(bb[..., 3], gg[..., 3]) - np.maximum(bb[..., 1], gg[..., 1]) + 1
    ua = (
        (bb[..., 2] - bb[..., 0] + 1) * (bb[..., 3] - bb[..., 1] + 1)
        + (gg[..., 2] - gg[..., 0] + 1) * (gg[..., 3] - gg[..., 1] + 1)
        - iw * ih
    )
    valid = (iw > 0) & (ih > 0) & (det_cls[:, None] == gt_cls[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        ov = np.where(valid, iw * ih / ua, -np.inf)
    best = np.argmax(ov, axis=1)  # first maximum: the strict ">" of the devkit's loop
    return ov[np.arange(len(ov)), best], best


def evaluate_detections(
    dets: Detections | Sequence[Detections] | Sequence[Mapping[str, Any]],
    gt: Any,
    classes: Sequence[str] | None = None,
    min_overlap: float = 0.5,
    use_07_metric: bool = True,
) -> VOCResult:
    """VOC AP per class and mAP of ``dets`` against ``gt``.

    ``gt``: a ``DetectionSplit`` (records with ``image_id, boxes, labels, difficult``; labels index
    ``split.classes``; ``classes`` defaults to ``split.classes`` and may be a subset) or a mapping
    ``image_id -> GroundTruth`` (labels index ``classes``, which is then required). ``dets``: a ``Detections``, a
    list of them (concatenated in order) or a list of file-schema dicts. Every image in ``gt`` is part of
    the evaluated set. Detections on an image id not in ``gt`` or with a label not in ``classes`` raise
    ``ValueError`` (filter them first to evaluate a subset of classes).
    """
    if not isinstance(dets, Detections):
        parts = list(dets)
        if all(isinstance(p, Mapping) for p in parts):
            dets = Detections.from_records(parts)
        else:
            dets = Detections.concat(parts)
    classes, items, label_space = _gt_items(gt, classes)
    dets.check_against((i for i, _ in items), classes)
    cls_index = {c: k for k, c in enumerate(classes)}
    img_index = {i: k for k, (i, _) in enumerate(items)}

    # All GT of the evaluated classes, flattened with per-image offsets.
    gt_boxes, gt_cls, gt_diff, offsets = [], [], [], [0]
    for image_id, rec in items:
        labels = np.asarray(rec.labels).reshape(-1)
        boxes = np.asarray(rec.boxes, dtype=np.float64).reshape(-1, 4)
        diff = np.asarray(rec.difficult, dtype=bool).reshape(-1)
        if not (len(labels) == len(boxes) == len(diff)):
            raise ValueError(f"ground truth of {image_id!r}: boxes, labels and difficult differ in length")
        c = _gt_classes(labels, label_space, cls_index, image_id)
        keep = c >= 0
        gt_boxes.append(boxes[keep])
        gt_cls.append(c[keep])
        gt_diff.append(diff[keep])
        offsets.append(offsets[-1] + int(keep.sum()))
    gt_cls_all = np.concatenate(gt_cls) if gt_cls else np.zeros(0, np.int64)
    gt_diff_all = np.concatenate(gt_diff) if gt_diff else np.zeros(0, bool)

    # Best GT per detection, image by image (the assignment never depends on the matched flags).
    n = len(dets)
    det_cls = np.asarray([cls_index[c] for c in dets.labels], dtype=np.int64)
    det_img = np.asarray([img_index[i] for i in dets.image_ids], dtype=np.int64)
    ovmax = np.full(n, -np.inf)
    gt_id = np.full(n, -1, dtype=np.int64)
    by_img = np.argsort(det_img, kind="stable")
    starts = np.flatnonzero(np.r_[True, det_img[by_img][1:] != det_img[by_img][:-1]]) if n else []
    for lo, hi in zip(starts, [*starts[1:], n]):
        rows = by_img[lo:hi]
        k = det_img[rows[0]]
        if len(gt_boxes[k]) == 0:
            continue
        ov, best = _best_overlaps(dets.boxes[rows], det_cls[rows], gt_boxes[k], gt_cls[k])
        ovmax[rows] = ov
        gt_id[rows] = np.where(np.isfinite(ov), best + offsets[k], -1)

    res = VOCResult(ap={}, map=math.nan, npos={}, num_dets={}, use_07_metric=use_07_metric, min_overlap=min_overlap)
    for c, name in enumerate(classes):
        npos = int(((gt_cls_all == c) & ~gt_diff_all).sum())
        rows = np.flatnonzero(det_cls == c)
        rows = rows[np.argsort(-dets.scores[rows], kind="stable")]
        hit = ovmax[rows] >= min_overlap
        gid = gt_id[rows]
        on_difficult = hit & gt_diff_all[np.maximum(gid, 0)] if len(gt_diff_all) else np.zeros(len(rows), bool)
        cand = np.flatnonzero(hit & ~on_difficult)
        tp = np.zeros(len(rows))
        _, first = np.unique(gid[cand], return_index=True)  # the first (highest-ranked) hit on a GT is the TP
        tp[cand[first]] = 1
        fp = (~hit).astype(np.float64)
        fp[cand] = 1 - tp[cand]
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        with np.errstate(divide="ignore", invalid="ignore"):
            prec = tp / (tp + fp)
        res.npos[name] = npos
        res.num_dets[name] = len(rows)
        res.num_tp[name] = int(tp[-1]) if len(tp) else 0
        res.precision[name] = prec
        if npos == 0:
            res.ap[name] = math.nan
            res.recall[name] = np.full(len(rows), math.nan)
            res.no_gt_classes.append(name)
            continue
        res.recall[name] = tp / npos
        res.ap[name] = voc_ap(res.recall[name], prec, use_07_metric)
    scored = [res.ap[c] for c in classes if c not in res.no_gt_classes]
    res.map = float(np.mean(scored)) if scored else math.nan
    if res.no_gt_classes:
        warnings.warn(
            f"classes without non-difficult ground truth get AP = NaN and are left out of the mAP: {res.no_gt_classes}",
            RuntimeWarning,
            stacklevel=2,
        )
    return res


def pr_points(res: VOCResult, max_points: int = PR_MAX_POINTS) -> dict[str, Any]:
    """Compact per-class precision-recall curves of ``res``: for each class with ground truth, the (recall,
    precision) after each true positive (the curve's upper corners) and after the last detection, at most
    ``max_points`` of them evenly spaced (the last kept), 4 decimals; with the class's AP (%) and npos."""
    classes: dict[str, Any] = {}
    for c, ap in res.ap.items():
        if c in res.no_gt_classes:
            continue
        rec, prec = np.asarray(res.recall[c], np.float64), np.asarray(res.precision[c], np.float64)
        corner = np.r_[rec[:1] > 0, np.diff(rec) > 0] if len(rec) else np.zeros(0, bool)
        idx = np.flatnonzero(corner & ~np.isnan(prec))
        if len(rec) and not np.isnan(prec[-1]) and (not len(idx) or idx[-1] != len(rec) - 1):
            idx = np.r_[idx, len(rec) - 1]
        if len(idx) > max_points:
            idx = idx[np.unique(np.linspace(0, len(idx) - 1, max_points).round().astype(int))]
        classes[c] = {
            "ap": round(100.0 * float(ap), 3),
            "npos": int(res.npos[c]),
            "recall": [round(float(x), 4) for x in rec[idx]],
            "precision": [round(float(x), 4) for x in prec[idx]],
        }
    metric = "VOC07 11-point" if res.use_07_metric else "VOC all-point"
    return {"metric": metric, "min_overlap": res.min_overlap, "classes": classes}


def evaluate_and_write(
    dets: Detections, gt: Any, classes: Sequence[str], path: str | os.PathLike[str]
) -> dict[str, float]:
    """Write ``dets`` as a detections file at ``path``, evaluate them with the VOC07 rules and write their per-class
    PR points beside it (:func:`pr_path`, atomically); ``{"mAP": .., "AP/<class>": .., "detections": n}`` in percent
    (classes without non-difficult GT, AP NaN, are left out)."""
    write_detections(path, dets)
    res = evaluate_detections(dets, gt, list(classes))
    atomic_write_json(pr_path(path), pr_points(res), indent=None)
    metrics = {"mAP": round(100.0 * float(res.map), 3)}
    for c, ap in res.ap.items():
        if ap == ap:  # not NaN
            metrics[f"AP/{c}"] = round(100.0 * float(ap), 3)
    metrics["detections"] = float(len(dets.scores))
    return metrics
