"""The windows of one image (ground truth first, then proposals) with their overlaps: R-CNN's ``roidb``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sppnet_exp.detection.structures.boxes import box_iou

__all__ = ["ImageWindows", "build_windows", "proposal_windows"]


class _Record(Protocol):
    image_id: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray


@dataclass
class ImageWindows:
    """GT boxes (all, difficult included, as in the authors' ``roidb``) followed by the proposals.

    ``gt_classes`` is 1..N on GT rows and 0 on proposals; ``overlaps[k, c-1]`` is the max IoU of window k with the
    GT boxes of class c (0 when the image has none).
    """

    image_id: str
    width: int
    height: int
    boxes: np.ndarray
    gt_classes: np.ndarray
    difficult: np.ndarray
    overlaps: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def is_gt(self) -> np.ndarray:
        return self.gt_classes > 0

    @property
    def num_gt(self) -> int:
        return int(self.is_gt.sum())

    @property
    def max_overlaps(self) -> np.ndarray:
        """Max IoU with any GT box."""
        if self.overlaps.shape[1] == 0:
            return np.zeros(len(self), dtype=np.float32)
        return self.overlaps.max(axis=1)

    @property
    def max_classes(self) -> np.ndarray:
        """Class (1..N) of the best-overlapping GT; 0 where the max overlap is 0."""
        if self.overlaps.shape[1] == 0:
            return np.zeros(len(self), dtype=np.int64)
        cls = self.overlaps.argmax(axis=1).astype(np.int64) + 1
        return np.where(self.max_overlaps > 0, cls, 0)


def build_windows(record: _Record, proposals: np.ndarray, num_classes: int) -> ImageWindows:
    """Stack GT boxes and proposals of an image and compute per-class overlaps."""
    gt = np.asarray(record.boxes, dtype=np.float32).reshape(-1, 4)
    props = np.asarray(proposals, dtype=np.float32).reshape(-1, 4)
    boxes = np.concatenate([gt, props], axis=0)
    labels = np.asarray(record.labels, dtype=np.int64).reshape(-1)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{record.image_id}: GT label out of range [0, {num_classes})")
    gt_classes = np.concatenate([labels + 1, np.zeros(len(props), dtype=np.int64)])
    difficult = np.concatenate([np.asarray(record.difficult, dtype=bool).reshape(-1), np.zeros(len(props), bool)])
    overlaps = np.zeros((len(boxes), num_classes), dtype=np.float32)
    if len(gt):
        iou = box_iou(boxes, gt)
        for c in np.unique(labels):
            overlaps[:, c] = iou[:, labels == c].max(axis=1)
    return ImageWindows(record.image_id, int(record.width), int(record.height), boxes, gt_classes, difficult, overlaps)


def proposal_windows(record: _Record, proposals: np.ndarray, num_classes: int) -> ImageWindows:
    """Test windows: the proposals alone (GT boxes are never scored at test), with their overlaps."""
    w = build_windows(record, proposals, num_classes)
    keep = ~w.is_gt
    return ImageWindows(
        w.image_id, w.width, w.height, w.boxes[keep], w.gt_classes[keep], w.difficult[keep], w.overlaps[keep]
    )
