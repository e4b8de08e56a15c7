"""Bounding-box regression on pool5 features (paper §4.1; ``spp_train_bbox_regressor.m``, R-CNN appendix C).

Examples are every window (GT rows included) whose max IoU with any GT is >= ``min_overlap``; the target is the
best-overlapping GT (first on ties), and the example trains that GT's class only when the IoU is strictly >
``min_overlap`` (the authors collect with >= and select with >). Targets (dx, dy, dw, dh) come from
:func:`~.boxes.encode_boxes` (widths without +1), are centred and whitened per class
(``T = V diag(1/sqrt(D + 0.001)) V^T`` from the 4x4 covariance), and four ridge regressions are solved on
``[scale * x, 1]`` (the bias column is regularised too) by a Cholesky factorisation. SPP: lambda 4000, overlap 0.5;
R-CNN: lambda 1000, overlap 0.6.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from sppnet_exp.detection.features.windows import WindowFeatures
from sppnet_exp.detection.linear.svm import _identity, _to_numpy, feature_scale
from sppnet_exp.detection.structures.boxes import box_iou, decode_boxes, encode_boxes
from sppnet_exp.detection.structures.roidb import ImageWindows
from sppnet_exp.utils.io import atomic_savez

__all__ = [
    "BoxRegressor",
    "collect_examples",
    "fit_regressors",
    "ridge_fit",
    "ridge_solve",
    "train_bbox_regressors",
    "train_bbox_regressors_streaming",
    "whitening",
]

log = logging.getLogger(__name__)

WHITEN_EPS = 0.001


@dataclass
class BoxRegressor:
    """Per-class regressors: ``beta`` (N, D+1, 4) on ``[scale * x, 1]``, whitening ``mu`` (N, 4), ``T_inv``
    (N, 4, 4); ``trained`` (N,) is False for classes without examples (their boxes pass through unchanged)."""

    beta: np.ndarray
    mu: np.ndarray
    T_inv: np.ndarray
    trained: np.ndarray
    scale: float = 1.0
    stats: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.trained)

    @property
    def dim(self) -> int:
        return self.beta.shape[1] - 1

    def deltas(self, pool5: Tensor | np.ndarray, cls: int, scaled: bool = True) -> np.ndarray:
        """(K, 4) predicted (dx, dy, dw, dh) of class ``cls`` (1..N); zeros for an untrained class. ``pool5`` as
        in :meth:`predict`."""
        x = _to_numpy(pool5).astype(np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"BoxRegressor: expected pool5 features (K, {self.dim}), got {x.shape}")
        c = self._check_class(cls)
        if not self.trained[c]:
            return np.zeros((len(x), 4))
        if not scaled:
            x = x * self.scale
        beta = self.beta[c].astype(np.float64)
        y = x @ beta[:-1] + beta[-1]
        return y @ self.T_inv[c] + self.mu[c]

    def predict(
        self, pool5: Tensor | np.ndarray, boxes: np.ndarray, cls: int | np.ndarray, scaled: bool = True
    ) -> np.ndarray:
        """Regressed boxes (K, 4) float32 (not clipped). ``pool5``: the windows' features already multiplied by
        ``self.scale`` (``scaled=False``: raw cached features, scaled here); ``cls``: one class 1..N or one per row."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        x = _to_numpy(pool5)
        if len(x) != len(boxes):
            raise ValueError(f"BoxRegressor.predict: {len(x)} feature rows but {len(boxes)} boxes")
        classes = np.broadcast_to(np.asarray(cls, dtype=np.int64), (len(boxes),))
        out = boxes.copy()
        for c in np.unique(classes):
            rows = np.flatnonzero(classes == c)
            if self.trained[self._check_class(int(c))]:
                out[rows] = decode_boxes(boxes[rows], self.deltas(x[rows], int(c), scaled))
        return out

    def _check_class(self, cls: int) -> int:
        if not 1 <= cls <= self.num_classes:
            raise ValueError(f"BoxRegressor: class {cls} outside 1..{self.num_classes}")
        return cls - 1

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write an ``.npz`` atomically."""
        return atomic_savez(
            path,
            beta=self.beta,
            mu=self.mu,
            T_inv=self.T_inv,
            trained=self.trained,
            scale=np.float64(self.scale),
            stats=np.str_(json.dumps(self.stats)),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BoxRegressor:
        with np.load(path, allow_pickle=False) as z:
            missing = {"beta", "mu", "T_inv", "trained", "scale", "stats"} - set(z.files)
            if missing:
                raise ValueError(f"{path}: not a BoxRegressor file (missing {sorted(missing)})")
            reg = cls(z["beta"], z["mu"], z["T_inv"], z["trained"].astype(bool), float(z["scale"]))
            reg.stats = json.loads(str(z["stats"]))
        n = len(reg.trained)
        if reg.beta.shape[0] != n or reg.beta.shape[2] != 4 or reg.mu.shape != (n, 4) or reg.T_inv.shape != (n, 4, 4):
            raise ValueError(f"{path}: inconsistent BoxRegressor arrays")
        return reg


def whitening(y: np.ndarray, eps: float = WHITEN_EPS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mu, T, T_inv) of targets y (n, 4): ``(y - mu) @ T`` is whitened, ``z @ T_inv + mu`` undoes it."""
    y = np.asarray(y, dtype=np.float64)
    mu = y.mean(axis=0)
    yc = y - mu
    cov = yc.T @ yc / len(y)
    d, v = np.linalg.eigh(cov)
    d = np.maximum(d, 0.0)  # round-off can make a zero eigenvalue slightly negative
    return mu, (v / np.sqrt(d + eps)) @ v.T, (v * np.sqrt(d + eps)) @ v.T


def ridge_solve(a: np.ndarray, y: np.ndarray, lam: float, device: str | torch.device = "cpu") -> np.ndarray:
    """argmin ||a b - y||^2 + lam ||b||^2 by Cholesky, in float64 (primal (D x D) or dual (n x n), the smaller;
    both give the same b)."""
    A = torch.as_tensor(a, dtype=torch.float64, device=device)
    Y = torch.as_tensor(y, dtype=torch.float64, device=device)
    n, d = A.shape
    if n >= d:
        L = torch.linalg.cholesky(A.T @ A + lam * torch.eye(d, dtype=A.dtype, device=A.device))
        beta = torch.cholesky_solve(A.T @ Y, L)
    else:
        L = torch.linalg.cholesky(A @ A.T + lam * torch.eye(n, dtype=A.dtype, device=A.device))
        beta = A.T @ torch.cholesky_solve(Y, L)
    return beta.cpu().numpy()


def collect_examples(
    roidb: Sequence[ImageWindows],
    features: Callable[[int], Tensor],
    min_overlap: float = 0.5,
    layer_fn: Callable[[Tensor], Tensor] | None = None,
    scale: float = 1.0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X scaled (n, D) float32, targets (n, 4), IoU with the assigned GT (n,), its class 1..N (n,)) over all
    windows whose max IoU with any GT is >= ``min_overlap`` (``get_examples`` of the authors)."""
    xs, ys, os_, cs = [], [], [], []
    for i in tqdm(range(len(roidb)), desc="bbox examples", disable=not progress, leave=False):
        w = roidb[i]
        gt = w.is_gt
        if not gt.any():
            continue
        sel = np.flatnonzero(w.max_overlaps >= min_overlap)
        if len(sel) == 0:
            continue
        iou = box_iou(w.boxes[sel], w.boxes[gt])
        assign = iou.argmax(axis=1)  # first best GT, as MATLAB's max
        x = features(i)
        if x.shape[0] != len(w):
            raise ValueError(f"features({i}) (image {w.image_id}): expected {len(w)} rows, got {x.shape[0]}")
        f = _to_numpy((layer_fn or _identity)(torch.as_tensor(x)[torch.from_numpy(sel)]))
        xs.append(f * np.float32(scale))
        ys.append(encode_boxes(w.boxes[sel], w.boxes[gt][assign]))
        os_.append(iou[np.arange(len(sel)), assign])
        cs.append(w.gt_classes[gt][assign])
    if not xs:
        return np.zeros((0, 0), np.float32), np.zeros((0, 4)), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(os_), np.concatenate(cs)


def ridge_fit(
    x: np.ndarray, y: np.ndarray, lam: float, device: str | torch.device = "cpu", chunk: int = 8192
) -> tuple[np.ndarray, float]:
    """Ridge on ``[x, 1]`` (the bias regularised too) in float64 without forming ``[x, 1]`` in float64: the
    primal normal equations are accumulated ``chunk`` rows at a time (memory ``(D+1)^2``, on ``device``); with
    fewer rows than columns the dual is solved. ``x`` may be float16 (a compact example store). Returns
    ``(beta (D+1, k), mean squared residual / 2)``; equals :func:`ridge_solve` up to float rounding."""
    n, d = x.shape[0], x.shape[1] + 1
    dev = torch.device(device)
    Y = torch.as_tensor(np.asarray(y, dtype=np.float64), device=dev)

    def rows(s: int, e: int) -> torch.Tensor:
        part = torch.as_tensor(np.asarray(x[s:e]), device=dev).double()
        return torch.cat([part, torch.ones((e - s, 1), dtype=torch.float64, device=dev)], dim=1)

    if n < d:
        beta = torch.as_tensor(ridge_solve(rows(0, n).cpu().numpy(), y, lam, device), device=dev)
    else:
        G = lam * torch.eye(d, dtype=torch.float64, device=dev)
        Aty = torch.zeros((d, Y.shape[1]), dtype=torch.float64, device=dev)
        for s in range(0, n, chunk):
            a = rows(s, min(n, s + chunk))
            G.addmm_(a.T, a)
            Aty.addmm_(a.T, Y[s : s + len(a)])
        beta = torch.cholesky_solve(Aty, torch.linalg.cholesky(G))
    sq = 0.0
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        sq += float(((rows(s, e) @ beta - Y[s:e]) ** 2).sum())
    return beta.cpu().numpy(), 0.5 * sq / max(1, n * Y.shape[1])


def fit_regressors(
    xs: np.ndarray,
    ys: np.ndarray,
    ov: np.ndarray,
    cl: np.ndarray,
    num_classes: int,
    lam: float,
    min_overlap: float,
    scale: float,
    device: str | torch.device = "cpu",
    collected: np.ndarray | None = None,
) -> BoxRegressor:
    """Per class: whiten the targets of its examples (IoU > ``min_overlap``) and solve the ridge (:func:`ridge_fit`).

    ``xs`` are the scaled pool5 rows (any float dtype), ``ys`` the targets, ``ov`` the IoU with the assigned GT,
    ``cl`` its class 1..N; ``collected[c-1]`` the examples of class c with IoU >= ``min_overlap`` (for the stats).
    """
    t0 = time.perf_counter()
    dim = xs.shape[1]
    beta = np.zeros((num_classes, dim + 1, 4), dtype=np.float32)
    mu = np.zeros((num_classes, 4))
    T_inv = np.tile(np.eye(4), (num_classes, 1, 1))
    trained = np.zeros(num_classes, dtype=bool)
    per_class = []
    for c in range(1, num_classes + 1):
        idx = np.flatnonzero((ov > min_overlap) & (cl == c))
        got = int(collected[c - 1]) if collected is not None else int((cl == c).sum())
        entry = {"collected": got, "examples": len(idx), "loss": None}
        if len(idx):
            m, T, Ti = whitening(ys[idx])
            yw = (ys[idx] - m) @ T
            b, entry["loss"] = ridge_fit(xs[idx], yw, lam, device)
            beta[c - 1], mu[c - 1], T_inv[c - 1], trained[c - 1] = b, m, Ti, True
        per_class.append(entry)
        log.info("bbox reg class %d: %d examples (%d collected)", c, entry["examples"], entry["collected"])
    untrained = [c + 1 for c in range(num_classes) if not trained[c]]
    stats = {
        "classes": per_class,
        "untrained": untrained,
        "lambda": lam,
        "min_overlap": min_overlap,
        "examples_bytes": int(xs.nbytes),
        "seconds": time.perf_counter() - t0,
    }
    if untrained:
        log.warning("bbox reg: classes %s have no examples; their boxes are left unchanged", untrained)
    return BoxRegressor(beta, mu, T_inv, trained, float(scale), stats)


def train_bbox_regressors(
    roidb: Sequence[ImageWindows],
    features: Callable[[int], Tensor],
    num_classes: int,
    lam: float = 4000.0,
    min_overlap: float = 0.5,
    scale: float | None = None,
    layer_fn: Callable[[Tensor], Tensor] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> BoxRegressor:
    """Train the per-class regressors on precomputed features (``features(i)``: all rows of image i). ``scale``
    defaults to :func:`~.svm.feature_scale` of these features (200 images x 200 windows, seed 3, norm 20), the
    regressor's own scale as in the authors' code."""
    if scale is None:
        scale = feature_scale(roidb, features, layer_fn)
    xs, ys, ov, cl = collect_examples(roidb, features, min_overlap, layer_fn, scale, progress)
    if not len(xs):
        xs = np.zeros((0, int(features(0).shape[1]) if len(roidb) else 0), np.float32)
    return fit_regressors(xs, ys, ov, cl, num_classes, lam, min_overlap, float(scale), device)


def train_bbox_regressors_streaming(
    roidb: Sequence[ImageWindows],
    features: WindowFeatures,
    num_classes: int,
    lam: float = 4000.0,
    min_overlap: float = 0.5,
    scale: float = 1.0,
    store_dtype: str = "float32",
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> BoxRegressor:
    """The same regressors from a streaming feature source: only the windows trained on (IoU with their
    assigned GT > ``min_overlap``) are pooled and kept, as ``store_dtype`` rows (float16 halves the store: at
    VOC07 size 150k-450k x 12,800 values); each class is then solved in bounded memory (:func:`ridge_fit`)."""
    collected = np.zeros(num_classes, dtype=np.int64)
    plans: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    for i, w in enumerate(roidb):
        gt = w.is_gt
        if not gt.any():
            continue
        sel = np.flatnonzero(w.max_overlaps >= min_overlap)
        if not len(sel):
            continue
        iou = box_iou(w.boxes[sel], w.boxes[gt])
        assign = iou.argmax(axis=1)
        ov = iou[np.arange(len(sel)), assign]
        cls = w.gt_classes[gt][assign]
        np.add.at(collected, cls - 1, 1)
        keep = ov > min_overlap
        if keep.any():
            plans[i] = (sel[keep], encode_boxes(w.boxes[sel[keep]], w.boxes[gt][assign[keep]]), ov[keep], cls[keep])
    n = sum(len(p[0]) for p in plans.values())
    dim = int(features.dim)
    xs = np.empty((n, dim), dtype=np.dtype(store_dtype))
    log.info("bbox reg: %d examples x %d, %.1f MB of %s", n, dim, xs.nbytes / 2**20, store_dtype)
    pos = 0
    stream = features.stream(list(plans), lambda i: plans[i][0])
    for i, x in tqdm(stream, total=len(plans), desc="bbox examples", disable=not progress, leave=False):
        k = len(plans[i][0])
        xs[pos : pos + k] = _to_numpy(x) * np.float32(scale)
        pos += k
    ys = np.concatenate([p[1] for p in plans.values()]) if plans else np.zeros((0, 4))
    ov = np.concatenate([p[2] for p in plans.values()]) if plans else np.zeros(0, np.float32)
    cl = np.concatenate([p[3] for p in plans.values()]) if plans else np.zeros(0, np.int64)
    return fit_regressors(xs, ys, ov, cl, num_classes, lam, min_overlap, float(scale), device, collected)
