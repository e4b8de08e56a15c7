"""Box arithmetic in VOC convention (1-based inclusive pixels, width = x2 - x1 + 1), NMS and box regression
targets.

IoU and NMS use the "+1" widths of the VOC devkit and the authors' ``nms``; box-regression targets use widths
without +1, as R-CNN's and SPP-net's regression code do.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import nms as tv_nms

__all__ = ["box_areas", "box_iou", "clip_boxes", "decode_boxes", "encode_boxes", "flip_boxes", "nms"]


def _as2d(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    return b.reshape(-1, 4)


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """Areas with the +1 convention; zero for empty boxes."""
    b = _as2d(boxes)
    w = np.maximum(b[:, 2] - b[:, 0] + 1, 0)
    h = np.maximum(b[:, 3] - b[:, 1] + 1, 0)
    return w * h


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) with +1 widths; 0 where boxes do not intersect (``utils/boxoverlap.m``)."""
    a, b = _as2d(a), _as2d(b)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=np.float32)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    union = box_areas(a)[:, None] + box_areas(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou.astype(np.float32)


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Clip to [1, width] x [1, height]."""
    b = _as2d(boxes).copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 1, width)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 1, height)
    return b.astype(np.float32)


def flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Horizontal flip of 1-based boxes: x' = W + 1 - x."""
    b = _as2d(boxes).copy()
    x1 = width + 1 - b[:, 2]
    x2 = width + 1 - b[:, 0]
    b[:, 0], b[:, 2] = x1, x2
    return b.astype(np.float32)


def _centres(boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    eps = np.finfo(np.float64).eps
    w = boxes[:, 2] - boxes[:, 0] + eps
    h = boxes[:, 3] - boxes[:, 1] + eps
    return boxes[:, 0] + 0.5 * w, boxes[:, 1] + 0.5 * h, w, h


def encode_boxes(proposals: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Regression targets (dx, dy, dw, dh) from proposals P to targets G (widths without +1)."""
    px, py, pw, ph = _centres(_as2d(proposals))
    gx, gy, gw, gh = _centres(_as2d(targets))
    return np.stack([(gx - px) / pw, (gy - py) / ph, np.log(gw / pw), np.log(gh / ph)], axis=1)


def decode_boxes(proposals: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_boxes`: boxes ``ctr ± w/2`` from proposals and (dx, dy, dw, dh)."""
    px, py, pw, ph = _centres(_as2d(proposals))
    d = np.asarray(deltas, dtype=np.float64).reshape(-1, 4)
    cx, cy = px + d[:, 0] * pw, py + d[:, 1] * ph
    w, h = pw * np.exp(d[:, 2]), ph * np.exp(d[:, 3])
    return np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=1).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, thresh: float = 0.3) -> np.ndarray:
    """Greedy NMS (torchvision.ops.nms) with VOC +1 IoU; suppress IoU > ``thresh``; returns kept indices by score.

    Ties in score are broken by index (the earlier box first): boxes are pre-sorted with a stable sort, so the
    result does not depend on torchvision's sort.
    """
    b = _as2d(boxes)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(b) != len(s):
        raise ValueError(f"nms: {len(b)} boxes but {len(s)} scores")
    if len(b) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-s, kind="stable")
    tb = torch.from_numpy(b[order].copy())
    tb[:, 2:] += 1.0  # (x1, y1, x2 + 1, y2 + 1): torchvision's IoU then equals the +1 convention
    # Rank-based scores keep the stable order inside torchvision (its sort may not be stable on ties).
    ranks = torch.arange(len(b), 0, -1, dtype=torch.float64)
    keep = tv_nms(tb, ranks, float(thresh)).numpy()
    return order[keep].astype(np.int64)
