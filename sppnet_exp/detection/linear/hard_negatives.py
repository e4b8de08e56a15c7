"""Hard-negative mining (``spp_train.m``, ``rcnn_train.m``): per-class negative caches and the class-parallel miner.

Positives are the GT boxes of each class; negatives are windows with IoU < 0.3 to every GT of the class, thinned by
the paper's 70% overlap rule and/or a caller's mask. One pass over the images: the first image puts all its
negatives in every cache and trains every class; later images add the negatives scoring above ``hard_thresh``
that are not cached yet. A class is retrained when more than ``retrain_limit`` negatives were added since its last
training, and after the last image; after each training, cached negatives scoring below ``evict_thresh`` are
dropped (and their memory released), and ``max_negatives`` bounds each cache (easiest first).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict

import numpy as np
import torch
from tqdm import tqdm

from sppnet_exp.detection.linear.svm import (
    FeatureFn,
    LayerFn,
    LinearDetector,
    SVMConfig,
    _fit,
    _identity,
    _to_numpy,
    image_features,
    prune_overlapping,
    svm_objective,
)
from sppnet_exp.detection.structures.roidb import ImageWindows

__all__ = ["HardNegativeMiner", "train_svms"]

log = logging.getLogger(__name__)


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
