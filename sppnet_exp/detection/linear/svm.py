"""Per-class linear SVMs with hard-negative mining (paper §4.1; ``spp_train.m``, ``rcnn_train.m``).

The solver is liblinear through scikit-learn: ``LinearSVC(loss="hinge", dual=True)`` is liblinear type 3, the
L2-regularised L1-loss dual solver behind the authors' ``-s 3 -w1 2 -c 0.001 -B 10``. With
``intercept_scaling=B`` liblinear appends a constant feature of value B, so the bias is regularised as
``0.5 (b/B)^2``; sklearn's ``intercept_`` is already ``B * w_last``, so scores are ``X @ W + b``.

Samples: positives are the GT boxes of the class (difficult ones included, as in the authors' roidb); negatives are
windows (proposals, or GT of other classes) with IoU < 0.3 to every GT of the class. Negatives are thinned by the
paper's rule "removed if it overlaps another negative by more than 70%" (not in the released code; see
:func:`prune_overlapping`) and/or by a caller's mask (the authors' dedup of identical conv5 boxes).

Mining (one pass, class-parallel): the first image puts all its negatives in every class's cache and trains every
class; later images add negatives scoring above ``hard_thresh`` that are not cached yet. A class is retrained when
more than ``retrain_limit`` negatives were added since its last training, and after the last image. After each
training, cached negatives scoring below ``evict_thresh`` are dropped. Positives stay.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC
from torch import Tensor
from tqdm import tqdm

from sppnet_exp.detection.structures.boxes import nms
from sppnet_exp.detection.structures.roidb import ImageWindows
from sppnet_exp.utils.io import atomic_savez

__all__ = [
    "HardNegativeMiner",
    "LinearDetector",
    "SVMConfig",
    "feature_scale",
    "image_features",
    "prune_overlapping",
    "scale_from_norms",
    "scale_plan",
    "svm_objective",
    "train_svms",
]

log = logging.getLogger(__name__)

FeatureFn = Callable[[int], Tensor]
LayerFn = Callable[[Tensor], Tensor]


@dataclass
class SVMConfig:
    """Constants of ``spp_train.m`` (identical to ``rcnn_train.m``) and the paper's 70% negative pruning.

    ``tol`` 0.1 is liblinear's default stopping tolerance for ``-s 3`` (what the authors ran; sklearn's own
    default is 1e-4). ``hard_epochs`` > 1 repeats the mining pass (the authors use 1). ``max_negatives`` bounds
    each class's negative cache (None: unbounded, as the authors'): past it the easiest cached negatives (lowest
    score under the current model) are dropped first and counted; ``cache_dtype`` "float16" halves its memory
    (the liblinear fit still sees float64).
    """

    C: float = 1e-3
    pos_weight: float = 2.0
    bias_mult: float = 10.0
    target_norm: float = 20.0
    neg_iou: float = 0.3
    hard_thresh: float = -1.0001
    evict_thresh: float = -1.2
    retrain_limit: int = 2000
    neg_overlap_prune: float | None = 0.7
    hard_epochs: int = 1
    norm_images: int = 200
    norm_boxes: int = 200
    seed: int = 3
    max_iter: int = 10000
    tol: float = 0.1
    max_negatives: int | None = None
    cache_dtype: str = "float32"


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


class _NegCache:
    """Growable feature rows (float32 or float16) + int64 keys (image << 32 | window) of one class's cached
    negatives. Its arrays shrink when eviction leaves them less than a quarter full (the memory is released)."""

    def __init__(self, dim: int, dtype: str = "float32") -> None:
        self._x = np.empty((0, dim), dtype=np.dtype(dtype))
        self._keys = np.empty(0, dtype=np.int64)
        self.n = 0

    @property
    def x(self) -> np.ndarray:
        return self._x[: self.n]

    @property
    def keys(self) -> np.ndarray:
        return self._keys[: self.n]

    def add(self, x: np.ndarray, keys: np.ndarray) -> None:
        m = len(keys)
        if self.n + m > len(self._keys):
            cap = max(2 * len(self._keys), self.n + m, 256)
            grown = np.empty((cap, self._x.shape[1]), dtype=self._x.dtype)
            grown[: self.n] = self.x
            gkeys = np.empty(cap, dtype=np.int64)
            gkeys[: self.n] = self.keys
            self._x, self._keys = grown, gkeys
        self._x[self.n : self.n + m] = x
        self._keys[self.n : self.n + m] = keys
        self.n += m

    def keep(self, mask: np.ndarray) -> int:
        """Keep rows where ``mask`` (in place, order kept); returns the number dropped."""
        idx = np.flatnonzero(mask)
        dropped = self.n - len(idx)
        if dropped:
            self._x[: len(idx)] = self._x[idx]
            self._keys[: len(idx)] = self._keys[idx]
            self.n = len(idx)
        if len(self._keys) > 1024 and self.n < len(self._keys) // 4:
            cap = max(2 * self.n, 256)
            self._x, self._keys = self._x[:cap].copy(), self._keys[:cap].copy()
        return dropped

    @property
    def nbytes(self) -> int:
        return int(self._x.nbytes + self._keys.nbytes)


def _negative_candidates(
    w: ImageWindows, cfg: SVMConfig, keep: np.ndarray | None, trainable: np.ndarray
) -> tuple[np.ndarray, int]:
    """(K, N) bool negative candidates of every class after pruning, and the number pruned."""
    cand = w.overlaps < cfg.neg_iou
    if keep is not None:
        cand &= keep[:, None]
    cand &= trainable[None, :]
    before = int(cand.sum())
    if cfg.neg_overlap_prune is not None and len(w):
        shared: np.ndarray | None = None  # classes absent from the image share one candidate set
        present = set(int(c) for c in w.gt_classes[w.is_gt])
        for c in np.flatnonzero(trainable):
            if c + 1 in present:
                cand[:, c] = prune_overlapping(w.boxes, cand[:, c], cfg.neg_overlap_prune)
            else:
                if shared is None:
                    shared = prune_overlapping(w.boxes, cand[:, c], cfg.neg_overlap_prune)
                cand[:, c] = shared
    return cand, before - int(cand.sum())


def _collect_positives(
    roidb: Sequence[ImageWindows],
    features: FeatureFn,
    num_classes: int,
    layer_fn: LayerFn,
    scale: float,
    progress: bool,
) -> list[np.ndarray]:
    """GT rows of every image, grouped by class (one pass; only the first num_gt rows go through ``layer_fn``)."""
    per_class: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
    dim = None
    for i in tqdm(range(len(roidb)), desc="svm positives", disable=not progress, leave=False):
        w = roidb[i]
        g = w.num_gt
        if g == 0:
            continue
        if not w.is_gt[:g].all():
            raise ValueError(f"roidb[{i}] (image {w.image_id}): GT rows must come first")
        x = features(i)
        if x.shape[0] != len(w):
            raise ValueError(f"features({i}) (image {w.image_id}): expected {len(w)} rows, got {x.shape[0]}")
        f = _to_numpy(layer_fn(torch.as_tensor(x)[:g])) * np.float32(scale)
        dim = f.shape[1]
        for row, c in enumerate(w.gt_classes[:g]):
            if not 1 <= c <= num_classes:
                raise ValueError(f"roidb[{i}] (image {w.image_id}): GT class {c} outside 1..{num_classes}")
            per_class[c - 1].append(f[row])
    return [np.stack(p).astype(np.float32) if p else np.zeros((0, dim or 0), np.float32) for p in per_class]


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


class HardNegativeMiner:
    """State of the class-parallel mining (``spp_train.m``): positives, per-class negative caches, W and b.

    :func:`train_svms` is ``HardNegativeMiner(...).run()``; the object stays inspectable (``caches``) after it.
    """

    def __init__(
        self,
        roidb: Sequence[ImageWindows],
        features: FeatureFn | None,
        num_classes: int,
        cfg: SVMConfig | None = None,
        layer_fn: LayerFn | None = None,
        scale: float = 1.0,
        neg_keep: Callable[[int], np.ndarray] | None = None,
        progress: bool = True,
    ) -> None:
        self.roidb, self.features, self.num_classes = roidb, features, num_classes
        self.cfg = cfg or SVMConfig()
        self.layer_fn = layer_fn or _identity
        self.scale, self.neg_keep, self.progress = float(scale), neg_keep, progress
        self.pos: list[np.ndarray] = []
        self.caches: list[_NegCache] = []
        self.W = np.zeros((0, num_classes), dtype=np.float32)
        self.b = np.zeros(num_classes, dtype=np.float32)
        self.trainable = np.zeros(num_classes, dtype=bool)
        self.added = np.zeros(num_classes, dtype=np.int64)
        self.cls_stats = [
            {"pos": 0, "retrains": 0, "hard_added": 0, "evicted": 0, "not_converged": 0, "objective": None}
            for _ in range(num_classes)
        ]
        self.totals = {"images": len(roidb), "neg_candidates": 0, "neg_pruned": 0}

    def collect_positives(self) -> None:
        for i, w in enumerate(self.roidb):
            if w.overlaps.shape[1] != self.num_classes:
                raise ValueError(
                    f"roidb[{i}] (image {w.image_id}): overlaps have {w.overlaps.shape[1]} columns "
                    f"but train_svms was given {self.num_classes} classes"
                )
        self.set_positives(
            _collect_positives(self.roidb, self.features, self.num_classes, self.layer_fn, self.scale, self.progress)
        )

    def set_positives(self, pos: Sequence[np.ndarray]) -> None:
        """The scaled features of each class's GT boxes (class c -> ``pos[c - 1]``, (n_c, D)); sets up the caches."""
        dim = next((p.shape[1] for p in pos if p.shape[1]), None)
        if dim is None:
            raise ValueError("train_svms: the roidb has no GT boxes (no positives for any class)")
        self.pos = [np.asarray(p, np.float32) if p.shape[1] else np.zeros((0, dim), np.float32) for p in pos]
        self.trainable = np.array([len(p) > 0 for p in self.pos])
        self.W = np.zeros((dim, self.num_classes), dtype=np.float32)
        self.caches = [_NegCache(dim, self.cfg.cache_dtype) for _ in range(self.num_classes)]
        for s, p in zip(self.cls_stats, self.pos, strict=True):
            s["pos"] = len(p)

    def retrain(self, c: int) -> None:
        """Fit class c (column c) on its positives and cached negatives, then evict easy negatives."""
        cfg, cache, xp = self.cfg, self.caches[c], self.pos[c]
        xn = cache.x.astype(np.float32, copy=False)
        if len(xn) == 0:  # nothing to separate from yet: stays at w = 0, b = 0 (every negative is "hard")
            return
        w_c, b_c, ok = _fit(xp, xn, cfg)
        self.W[:, c], self.b[c] = w_c, b_c
        zp, zn = xp @ w_c + b_c, xn @ w_c + b_c
        s = self.cls_stats[c]
        s["retrains"] += 1
        s["not_converged"] += int(not ok)
        s["objective"] = svm_objective(zp, zn, w_c, b_c, cfg)
        s["pos_sv"] = int((zp < 1 + 1e-6).sum())
        s["neg_sv"] = int((zn > -1 - 1e-6).sum())
        n_before = cache.n
        s["evicted"] += cache.keep(zn >= cfg.evict_thresh)
        log.debug(
            "svm class %d: retrain %d, %d pos, %d neg -> %d after eviction, objective %.5f",
            c + 1,
            s["retrains"],
            len(xp),
            n_before,
            cache.n,
            s["objective"],
        )

    def candidates(self, i: int, epoch: int, count: bool = True) -> np.ndarray:
        """(K, N) bool negative candidates of image i (after pruning); counted in the first pass (``count``)."""
        win, cfg = self.roidb[i], self.cfg
        keep = None
        if self.neg_keep is not None:
            keep = np.asarray(self.neg_keep(i), dtype=bool).reshape(-1)
            if len(keep) != len(win):
                raise ValueError(f"neg_keep({i}) (image {win.image_id}): {len(keep)} entries for {len(win)} rows")
        cand, pruned = _negative_candidates(win, cfg, keep, self.trainable)
        if epoch == 0 and count:
            self.totals["neg_candidates"] += int(cand.sum())
            self.totals["neg_pruned"] += pruned
        return cand

    def add_negatives(self, i: int, x: np.ndarray, cand: np.ndarray, epoch: int, first: bool) -> None:
        """Cache image i's hard negatives (``x``: its scaled features, (K, D) float32) and bound the caches."""
        cfg = self.cfg
        if x.ndim != 2 or x.shape[0] != len(self.roidb[i]):
            raise ValueError(
                f"features of image {self.roidb[i].image_id}: expected {len(self.roidb[i])} rows, got {x.shape}"
            )
        hard = cand if first else cand & (x @ self.W + self.b > cfg.hard_thresh)
        for c in np.flatnonzero(hard.any(axis=0)):
            rows = np.flatnonzero(hard[:, c])
            keys = (np.int64(i) << 32) | rows.astype(np.int64)
            if epoch > 0:  # in the first pass image i cannot be cached yet
                new = ~np.isin(keys, self.caches[c].keys)
                rows, keys = rows[new], keys[new]
            self.caches[c].add(x[rows], keys)
            self.added[c] += len(rows)
            self.cls_stats[c]["hard_added"] += len(rows)
            if cfg.max_negatives is not None and self.caches[c].n > cfg.max_negatives:
                self._bound(c, cfg.max_negatives)

    def _bound(self, c: int, limit: int) -> None:
        """Keep the ``limit`` hardest cached negatives of class c (highest score; ties keep the earlier)."""
        cache = self.caches[c]
        z = cache.x.astype(np.float32, copy=False) @ self.W[:, c] + self.b[c]
        order = np.argsort(-z, kind="stable")
        mask = np.zeros(cache.n, dtype=bool)
        mask[order[:limit]] = True
        self.cls_stats[c]["bound_evicted"] = self.cls_stats[c].get("bound_evicted", 0) + cache.keep(mask)

    def retrain_due(self, first: bool, last: bool) -> None:
        """Retrain every class that is due (first image, more than ``retrain_limit`` added, last image)."""
        cfg = self.cfg
        for c in np.flatnonzero(self.trainable):
            if first or self.added[c] > cfg.retrain_limit or last:
                self.retrain(c)
                self.added[c] = 0

    def process_image(self, i: int, epoch: int, first: bool, last: bool, x: np.ndarray | None = None) -> None:
        """Add image i's (hard) negatives to the caches and retrain the classes that are due; ``x`` (its scaled
        features) is computed from ``features`` when not given, and only when it has negative candidates."""
        cand = self.candidates(i, epoch)
        if cand.any():
            if x is None:
                x = image_features(self.roidb, self.features, i, self.layer_fn, self.scale)
            self.add_negatives(i, x, cand, epoch, first)
        self.retrain_due(first, last)

    @property
    def cache_bytes(self) -> int:
        """Memory held by the negative caches."""
        return sum(c.nbytes for c in self.caches)

    def run(self) -> LinearDetector:
        t0 = time.perf_counter()
        cfg, n_img = self.cfg, len(self.roidb)
        self.collect_positives()
        first = True
        for epoch in range(cfg.hard_epochs):
            desc = f"svm mining {epoch + 1}/{cfg.hard_epochs}"
            for i in tqdm(range(n_img), desc=desc, disable=not self.progress):
                self.process_image(i, epoch, first, last=epoch == cfg.hard_epochs - 1 and i == n_img - 1)
                first = False
        return self.finish(time.perf_counter() - t0)

    def finish(self, seconds: float = 0.0) -> LinearDetector:
        """The trained detector (after the last image) with per-class statistics."""
        cfg = self.cfg
        b = self.b.copy()
        b[~self.trainable] = -np.inf  # no positives: never detect this class
        for c, s in enumerate(self.cls_stats):
            s["neg"] = self.caches[c].n
            log.info(
                "svm class %d: %d pos, %d neg cached, %d retrains, objective %s",
                c + 1,
                s["pos"],
                s["neg"],
                s["retrains"],
                s["objective"],
            )
        untrained = [c + 1 for c, s in enumerate(self.cls_stats) if s["retrains"] == 0]
        if untrained:
            log.warning("svm: classes %s were never trained (no positives or no negatives)", untrained)
        stats = {
            **self.totals,
            "classes": self.cls_stats,
            "untrained": untrained,
            "seconds": seconds,
            "cache_bytes": self.cache_bytes,
            "config": asdict(cfg),
        }
        return LinearDetector(self.W.copy(), b, self.scale, stats)


def train_svms(
    roidb: Sequence[ImageWindows],
    features: FeatureFn,
    num_classes: int,
    cfg: SVMConfig | None = None,
    layer_fn: LayerFn | None = None,
    scale: float = 1.0,
    neg_keep: Callable[[int], np.ndarray] | None = None,
    progress: bool = True,
) -> LinearDetector:
    """Train one SVM per class (1..N -> column c-1) with hard-negative mining over ``roidb``.

    ``features(i)`` gives the pool5 rows of image i (all windows, roidb order); ``layer_fn`` maps them to the SVM
    layer (e.g. ``FCHead.layer_fn("fc7")``) and ``scale`` (from :func:`feature_scale`) is applied after it.
    ``neg_keep(i)`` (bool, K_i) restricts the negatives of image i; it is applied before the 70% pruning, so pass
    ``cfg.neg_overlap_prune=None`` to use the mask alone (the authors' code). ``features`` is called once per image
    for the positives (only GT rows go through ``layer_fn``) and once per image per mining pass (skipped for an
    image without negative candidates).
    """
    return HardNegativeMiner(roidb, features, num_classes, cfg, layer_fn, scale, neg_keep, progress).run()
