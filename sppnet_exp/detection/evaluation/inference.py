"""Test-time detection of one image: SVM scores per class, score floor, NMS 0.3, top 100, box regression."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from sppnet_exp.detection.structures.boxes import clip_boxes, nms
from sppnet_exp.detection.structures.detections import ImageDetections

__all__ = ["ImageDetections", "detect_image"]


def detect_image(
    image_id: str,
    width: int,
    height: int,
    boxes: np.ndarray,
    scores: np.ndarray,
    score_thresh: float | None = -1.5,
    nms_thresh: float = 0.3,
    max_per_image: int = 100,
    regress: Callable[[np.ndarray, int], np.ndarray] | None = None,
    eval_nms: bool = True,
) -> ImageDetections:
    """SPP-net's ``spp_test.m`` for one image: per class keep score > floor, NMS, top ``max_per_image``.

    ``scores`` is (K, N). With ``regress(kept_indices, c) -> boxes`` the kept boxes are moved by the class's box
    regressor, clipped, and (``eval_nms``, as the authors' evaluation does) NMS'd again.
    """
    scores = np.asarray(scores, dtype=np.float32)
    out_b: dict[int, np.ndarray] = {}
    out_s: dict[int, np.ndarray] = {}
    for c in range(scores.shape[1]):
        s = scores[:, c]
        idx = np.arange(len(s)) if score_thresh is None else np.flatnonzero(s > score_thresh)
        if len(idx) == 0:
            continue
        keep = idx[nms(boxes[idx], s[idx], nms_thresh)][:max_per_image]
        b, sc = boxes[keep].astype(np.float32), s[keep]
        if regress is not None:
            b = clip_boxes(regress(keep, c), width, height)
            if eval_nms:
                k2 = nms(b, sc, nms_thresh)
                b, sc = b[k2], sc[k2]
        out_b[c], out_s[c] = b, sc
    return ImageDetections(image_id, out_b, out_s)


def scores_for(features: torch.Tensor, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Linear SVM scores X W + b as float32 numpy."""
    w = torch.from_numpy(np.asarray(weights, dtype=np.float32)).to(features.device)
    b = torch.from_numpy(np.asarray(bias, dtype=np.float32)).to(features.device)
    return (features.float() @ w + b).cpu().numpy()
