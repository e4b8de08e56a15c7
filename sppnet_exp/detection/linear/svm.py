"""Per-class linear SVMs (paper §4.1; ``spp_train.m``, ``rcnn_train.m``): constants, the liblinear fit, the
trained detector, feature scaling and the paper's negative pruning. Mining is :mod:`.hard_negatives` (one
feature source) and :mod:`.mining` (every row from streamed features in shared passes).

The solver is liblinear through scikit-learn: ``LinearSVC(loss="hinge", dual=True)`` is liblinear type 3, the
L2-regularised L1-loss dual solver behind the authors' ``-s 3 -w1 2 -c 0.001 -B 10``. With
``intercept_scaling=B`` liblinear appends a constant feature of value B, so the bias is regularised as
``0.5 (b/B)^2``; sklearn's ``intercept_`` is already ``B * w_last``, so scores are ``X @ W + b``.

Samples: positives are the GT boxes of the class (difficult ones included, as in the authors' roidb); negatives are
windows (proposals, or GT of other classes) with IoU < 0.3 to every GT of the class. Negatives are thinned by the
paper's rule "removed if it overlaps another negative by more than 70%" (not in the released code; see
:func:`prune_overlapping`) and/or by a caller's mask (the authors' dedup of identical conv5 boxes).

"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC
from torch import Tensor

from sppnet_exp.detection.settings import SVMConfig  # the constants' one definition (re-exported)
from sppnet_exp.detection.structures.boxes import nms
from sppnet_exp.detection.structures.roidb import ImageWindows
from sppnet_exp.utils.io import atomic_savez

__all__ = [
    "LinearDetector",
    "SVMConfig",
    "feature_scale",
    "image_features",
    "prune_overlapping",
    "scale_from_norms",
    "scale_plan",
    "svm_objective",
]

log = logging.getLogger(__name__)

FeatureFn = Callable[[int], Tensor]
LayerFn = Callable[[Tensor], Tensor]


@dataclass
class LinearDetector:
    """Linear scores ``(scale * f) @ W + b`` for N classes; ``W`` (D, N) float32, ``b`` (N,) float32.

    ``b[c]`` is ``-inf`` for a class that had no positive to train on (its windows never score).
    """

    W: np.ndarray
    b: np.ndarray
    scale: float = 1.0
    stats: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return self.W.shape[1]

    def scores(self, feats: Tensor | np.ndarray, scaled: bool = True) -> np.ndarray:
        """(K, N) float32 scores of layer features (K, D) already multiplied by ``self.scale``; with
        ``scaled=False`` raw features are scaled here."""
        x = _to_numpy(feats)
        if x.ndim != 2 or x.shape[1] != self.W.shape[0]:
            raise ValueError(f"LinearDetector.scores: expected features (K, {self.W.shape[0]}), got {x.shape}")
        if not scaled:
            x = x * np.float32(self.scale)
        return (x @ self.W + self.b).astype(np.float32)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write an ``.npz`` atomically (W, b, scale, stats as JSON)."""
        return atomic_savez(
            path, W=self.W, b=self.b, scale=np.float64(self.scale), stats=np.str_(json.dumps(self.stats))
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LinearDetector:
        with np.load(path, allow_pickle=False) as z:
            missing = {"W", "b", "scale", "stats"} - set(z.files)
            if missing:
                raise ValueError(f"{path}: not a LinearDetector file (missing {sorted(missing)})")
            W, b = z["W"].astype(np.float32), z["b"].astype(np.float32)
            if W.ndim != 2 or b.shape != (W.shape[1],):
                raise ValueError(f"{path}: W {W.shape} and b {b.shape} do not match")
            return cls(W, b, float(z["scale"]), json.loads(str(z["stats"])))


def _to_numpy(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x, dtype=np.float32)


def _identity(x: Tensor) -> Tensor:
    return x


def image_features(
    roidb: Sequence[ImageWindows], features: FeatureFn, i: int, layer_fn: LayerFn | None = None, scale: float = 1.0
) -> np.ndarray:
    """``layer_fn(features(i)) * scale`` as float32 numpy (K_i, D), checked against the roidb's window count."""
    x = features(i)
    if x.ndim != 2 or x.shape[0] != len(roidb[i]):
        raise ValueError(
            f"features({i}) (image {roidb[i].image_id}): expected {len(roidb[i])} rows, got shape {tuple(x.shape)}"
        )
    f = _to_numpy((layer_fn or _identity)(torch.as_tensor(x)))
    return f * np.float32(scale) if scale != 1.0 else f


def scale_plan(
    roidb: Sequence[ImageWindows], n_images: int = 200, n_boxes: int = 200, seed: int = 3
) -> list[tuple[int, np.ndarray]]:
    """The windows :func:`feature_scale` measures: up to ``n_images`` random images x ``n_boxes`` random windows
    each (GT rows included), as ``(image index, sorted row indices)`` (``spp_feature_stats.m``; numpy
    ``default_rng(seed)`` replaces MATLAB's twister). It depends on the roidb's sizes only, so a streaming stage
    can pool exactly these windows."""
    rng = np.random.default_rng(seed)
    plan = []
    for i in rng.permutation(len(roidb))[: min(n_images, len(roidb))]:
        k = len(roidb[i])
        if k == 0:
            continue
        plan.append((int(i), np.sort(rng.permutation(k)[: min(n_boxes, k)])))
    return plan


def scale_from_norms(norms: Sequence[np.ndarray], target_norm: float = 20.0) -> float:
    """``target_norm / mean L2 norm`` of the measured feature norms."""
    if not len(norms):
        raise ValueError("feature_scale: the roidb has no windows")
    mean_norm = float(np.concatenate(list(norms)).mean())
    if not np.isfinite(mean_norm) or mean_norm <= 0:
        raise ValueError(f"feature_scale: mean feature norm is {mean_norm}; features are all zero or not finite")
    return target_norm / mean_norm


def feature_scale(
    roidb: Sequence[ImageWindows],
    features: FeatureFn,
    layer_fn: LayerFn | None = None,
    n_images: int = 200,
    n_boxes: int = 200,
    seed: int = 3,
    target_norm: float = 20.0,
) -> float:
    """``target_norm / mean L2 norm`` of ``layer_fn(features(i))`` over the windows of :func:`scale_plan`."""
    norms = []
    for i, rows in scale_plan(roidb, n_images, n_boxes, seed):
        x = features(i)
        if x.shape[0] != len(roidb[i]):
            raise ValueError(
                f"features({i}) (image {roidb[i].image_id}): expected {len(roidb[i])} rows, got {x.shape[0]}"
            )
        f = (layer_fn or _identity)(torch.as_tensor(x)[torch.from_numpy(rows)])
        norms.append(np.linalg.norm(_to_numpy(f), axis=1))
    return scale_from_norms(norms, target_norm)


def prune_overlapping(boxes: np.ndarray, candidates: np.ndarray, thresh: float) -> np.ndarray:
    """The paper's negative pruning: walk the candidate windows in roidb order (GT rows, then proposals in
    proposal order) and drop one whose IoU (+1 convention) with an already kept candidate is > ``thresh``.

    Returns a bool mask over all rows (True = kept candidate). This is NMS with "earlier first" as the score.
    """
    mask = np.zeros(len(boxes), dtype=bool)
    idx = np.flatnonzero(candidates)
    if len(idx):
        order = -np.arange(len(idx), dtype=np.float64)  # earlier rows rank higher
        mask[idx[nms(boxes[idx], order, thresh)]] = True
    return mask


def _fit(xp: np.ndarray, xn: np.ndarray, cfg: SVMConfig) -> tuple[np.ndarray, float, bool]:
    """One liblinear fit; returns (w (D,), b, converged)."""
    x = np.empty((len(xp) + len(xn), xp.shape[1]), dtype=np.float64)  # sklearn's liblinear wants float64
    x[: len(xp)] = xp
    x[len(xp) :] = xn
    y = np.concatenate([np.ones(len(xp), np.int64), -np.ones(len(xn), np.int64)])
    svc = LinearSVC(
        C=cfg.C,
        class_weight={1: cfg.pos_weight, -1: 1.0},
        loss="hinge",
        penalty="l2",
        dual=True,
        fit_intercept=True,
        intercept_scaling=cfg.bias_mult,
        tol=cfg.tol,
        max_iter=cfg.max_iter,
        random_state=cfg.seed,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        svc.fit(x, y)
    converged = not any(issubclass(c.category, ConvergenceWarning) for c in caught)
    if list(svc.classes_) != [-1, 1]:
        raise RuntimeError(f"LinearSVC classes {svc.classes_}, expected [-1, 1]")
    return svc.coef_[0].astype(np.float32), float(svc.intercept_[0]), converged


def svm_objective(zp: np.ndarray, zn: np.ndarray, w: np.ndarray, b: float, cfg: SVMConfig) -> float:
    """The authors' logged objective: C w1 Σ hinge(z+) + C Σ hinge(-z-) + ½‖w‖² + ½(b/B)²."""
    hp = np.maximum(0.0, 1.0 - zp.astype(np.float64)).sum()
    hn = np.maximum(0.0, 1.0 + zn.astype(np.float64)).sum()
    reg = 0.5 * float(np.dot(w.astype(np.float64), w)) + 0.5 * (b / cfg.bias_mult) ** 2
    return float(cfg.C * cfg.pos_weight * hp + cfg.C * hn + reg)
