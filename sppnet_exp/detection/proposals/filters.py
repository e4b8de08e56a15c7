"""Read-time proposal filters: clip, drop boxes outside the image or below a minimum size, dedup, keep the first K
(R-CNN's ``FilterBoxesWidth`` + ``BoxRemoveDuplicates``). Order is preserved: proposals stay in their ranking."""

from __future__ import annotations

import numpy as np

from sppnet_exp.detection.structures.boxes import clip_boxes

__all__ = ["filter_proposals", "select_proposals"]


def select_proposals(
    boxes: np.ndarray, min_size: float = 0, max_proposals: int | None = None, dedup: bool = True
) -> np.ndarray:
    """Drop empty boxes and boxes with width or height < ``min_size`` (+1 widths), then exact duplicates (first
    kept), then keep the first ``max_proposals``; order is preserved. Boxes are assumed already clipped."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    w = b[:, 2] - b[:, 0] + 1
    h = b[:, 3] - b[:, 1] + 1
    b = b[(w >= max(min_size, 1)) & (h >= max(min_size, 1))]
    if dedup and len(b) > 1:
        _, first = np.unique(b, axis=0, return_index=True)
        b = b[np.sort(first)]
    if max_proposals is not None:
        if max_proposals < 0:
            raise ValueError(f"max_proposals must be >= 0 or None, got {max_proposals}")
        b = b[:max_proposals]
    return np.ascontiguousarray(b, dtype=np.float32)


def filter_proposals(
    boxes: np.ndarray,
    width: int,
    height: int,
    min_size: float = 0,
    max_proposals: int | None = None,
    dedup: bool = True,
) -> np.ndarray:
    """Drop boxes entirely outside the image, clip the rest, then :func:`select_proposals` (R-CNN's
    ``FilterBoxesWidth`` + ``BoxRemoveDuplicates``)."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    b = b[(b[:, 0] <= width) & (b[:, 1] <= height) & (b[:, 2] >= 1) & (b[:, 3] >= 1)]
    return select_proposals(clip_boxes(b, width, height), min_size, max_proposals, dedup)
