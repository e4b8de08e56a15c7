"""PASCAL VOC average precision: the VOC07 11-point AP of a precision/recall curve (``VOCevaldet.m``,
``VOCevalcls.m``), the VOC2010+ all-point AP, and the classification AP of one class from image scores.

Shared by detection (:mod:`sppnet_exp.detection.evaluation.voc_eval`, Tables 9-12) and image classification
(:mod:`sppnet_exp.transfer`, Table 6).
"""

from __future__ import annotations

import numpy as np

__all__ = ["VOC07_THRESHOLDS", "classification_ap", "matlab_colon", "voc_ap"]


def matlab_colon(a: float, d: float, b: float) -> np.ndarray:
    """MATLAB's ``a:d:b`` in float64, element for element: the first half ``a + k d``, the second half
    ``b - (n - k) d`` (the colon operator works from both ends). ``0:0.1:1`` gives ``t(4) = 0.30000000000000004``
    (``3 * 0.1``) and ``t(8) = 1 - 3 * 0.1``, not ``k / 10``."""
    n = int(np.floor((b - a) / d + 1e-10))
    end = a + n * d if abs(a + n * d - b) > 1e-12 * max(1.0, abs(b)) else b
    k = np.arange(n + 1, dtype=np.float64)
    return np.where(k <= n / 2, a + k * d, end - (n - k) * d)


VOC07_THRESHOLDS = matlab_colon(0.0, 0.1, 1.0)  # VOCevaldet.m: for t = 0:0.1:1


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = True) -> float:
    """AP from a PR curve (detections in decreasing score order). NaN precisions (0/0) are ignored, like MATLAB's
    ``max``. VOC07: mean over the devkit's ``t = 0:0.1:1`` (:data:`VOC07_THRESHOLDS`, MATLAB's floats: a recall of
    exactly 3/10 does not reach t(4) = 0.30000000000000004) of the max precision at recall >= t (0 if none).
    Otherwise the area under the monotone precision envelope (VOC2010+ ``VOCap``)."""
    rec = np.asarray(recall, dtype=np.float64).reshape(-1)
    prec = np.asarray(precision, dtype=np.float64).reshape(-1)
    if use_07_metric:
        points = []
        for t in VOC07_THRESHOLDS:
            p = prec[rec >= t]
            p = p[~np.isnan(p)]
            points.append(p.max() if p.size else 0.0)
        return float(sum(points) / 11)  # sum first: a perfect curve gives exactly 1.0
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]  # right-to-left envelope; fmax skips NaN
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def classification_ap(scores: np.ndarray, targets: np.ndarray, use_07_metric: bool = True) -> float:
    """The AP of one class over a set of images, as the VOC2007 devkit's ``VOCevalcls.m``: images sorted by
    decreasing score (stable: ties keep input order, as MATLAB's ``sort``), ``targets`` 1 (positive), 0 (negative) or
    -1 (the class present only through difficult objects: neither), ``rec = tp / #positives``, ``prec = tp / (tp +
    fp)``, then :func:`voc_ap`. NaN when the set has no positive."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    t = np.asarray(targets).reshape(-1)
    if s.shape != t.shape:
        raise ValueError(f"classification_ap: {s.shape[0]} scores for {t.shape[0]} targets")
    npos = int((t > 0).sum())
    if npos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    tp = np.cumsum(t[order] > 0)
    fp = np.cumsum(t[order] == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = tp / (tp + fp)  # 0/0 where only ignored images lead: voc_ap skips NaN
    return voc_ap(tp / npos, prec, use_07_metric)
