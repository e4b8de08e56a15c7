"""SVM training that streams over the training images: every row (pool5, fc6, ftfc6, ftfc7) mines in one pass.

Per image the pool5 features of its windows are computed once on the device (conv5 pooled on the fly for
SPP-net, warped windows through the trunk for R-CNN; :mod:`sppnet_exp.detection.features.windows`), every row's
layer is applied to them, and each row's :class:`~.svm.HardNegativeMiner` takes its hard negatives. Nothing per
window is kept but the positives (GT boxes only) and the bounded negative caches. The result equals
:func:`~.svm.train_svms` run row by row on precomputed features (the same windows, order and arithmetic).

Passes over the training images: the feature scale of each row (the windows of :func:`~.svm.scale_plan`), the
positives (GT rows only), then ``hard_epochs`` mining passes (images without a negative candidate are skipped).
Rows that read the same pool5 (SPP-net's four; R-CNN's pool5/fc6 and ftfc6/ftfc7) share one feature source.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor
from tqdm import tqdm

from sppnet_exp.detection.features.windows import WindowFeatures
from sppnet_exp.detection.linear.hard_negatives import HardNegativeMiner
from sppnet_exp.detection.linear.svm import LinearDetector, SVMConfig, _to_numpy, scale_from_norms, scale_plan
from sppnet_exp.detection.structures.roidb import ImageWindows

__all__ = ["SVMRow", "mine_svms", "row_scales"]

log = logging.getLogger(__name__)


@dataclass
class SVMRow:
    """One table row's SVM input: its pool5 source and the layer applied to pool5 on the device."""

    name: str
    features: WindowFeatures
    layer: Callable[[Tensor], Tensor]


def _groups(rows: Sequence[SVMRow]) -> list[tuple[WindowFeatures, list[SVMRow]]]:
    """Rows grouped by their pool5 source (in order of first appearance)."""
    out: list[tuple[WindowFeatures, list[SVMRow]]] = []
    for r in rows:
        for src, members in out:
            if src is r.features:
                members.append(r)
                break
        else:
            out.append((r.features, [r]))
    return out


def _zip_streams(
    groups: Sequence[tuple[WindowFeatures, list[SVMRow]]],
    indices: Sequence[int],
    sel: Callable[[int], np.ndarray | None] | None = None,
) -> Iterator[tuple[int, list[Tensor]]]:
    """``(i, [pool5 of each group])`` over ``indices``: one pass, every source streaming the same images."""
    streams = [src.stream(indices, sel) for src, _ in groups]
    for items in zip(*streams, strict=True):
        i = items[0][0]
        if any(j != i for j, _ in items):
            raise RuntimeError(f"feature streams out of step: images {[j for j, _ in items]}")
        yield i, [x for _, x in items]


def row_scales(
    roidb: Sequence[ImageWindows], rows: Sequence[SVMRow], cfg: SVMConfig, progress: bool = False
) -> dict[str, float]:
    """Each row's feature scale (``target_norm`` / mean norm over :func:`~.svm.scale_plan`'s windows)."""
    plan = dict(scale_plan(roidb, cfg.norm_images, cfg.norm_boxes, cfg.seed))
    groups = _groups(rows)
    norms: dict[str, list[np.ndarray]] = {r.name: [] for r in rows}
    stream = _zip_streams(groups, list(plan), plan.get)
    for _, pooled in tqdm(stream, total=len(plan), desc="svm feature scale", disable=not progress, leave=False):
        for (_, members), p5 in zip(groups, pooled, strict=True):
            for r in members:
                norms[r.name].append(np.linalg.norm(_to_numpy(r.layer(p5)), axis=1))
    return {name: scale_from_norms(n, cfg.target_norm) for name, n in norms.items()}


def mine_svms(
    roidb: Sequence[ImageWindows],
    rows: Sequence[SVMRow],
    num_classes: int,
    cfg: SVMConfig | None = None,
    neg_keep: Callable[[int], np.ndarray] | None = None,
    scales: dict[str, float] | None = None,
    progress: bool = True,
) -> dict[str, LinearDetector]:
    """Train every row's per-class SVMs with hard-negative mining in shared passes; ``{row name: detector}``.

    ``neg_keep(i)`` restricts image i's negatives (the authors' conv5 dedup); ``scales`` skips the scale pass.
    """
    cfg = cfg or SVMConfig()
    t0 = time.perf_counter()
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"mine_svms: row names must be unique, got {names}")
    for i, w in enumerate(roidb):
        if w.overlaps.shape[1] != num_classes:
            cols = w.overlaps.shape[1]
            raise ValueError(f"roidb[{i}] (image {w.image_id}): overlaps have {cols} columns but {num_classes} classes")
    scales = dict(scales) if scales is not None else row_scales(roidb, rows, cfg, progress)
    groups = _groups(rows)
    miners = {
        r.name: HardNegativeMiner(roidb, None, num_classes, cfg, scale=scales[r.name], neg_keep=neg_keep) for r in rows
    }

    # positives: the GT rows of every image, through every row's layer
    pos: dict[str, list[list[np.ndarray]]] = {r.name: [[] for _ in range(num_classes)] for r in rows}
    with_gt = [i for i, w in enumerate(roidb) if w.num_gt]
    for i, w in enumerate(roidb):
        if w.num_gt and not w.is_gt[: w.num_gt].all():
            raise ValueError(f"roidb[{i}] (image {w.image_id}): GT rows must come first")
    gt_rows = lambda i: np.arange(roidb[i].num_gt)  # noqa: E731
    stream = _zip_streams(groups, with_gt, gt_rows)
    for i, pooled in tqdm(stream, total=len(with_gt), desc="svm positives", disable=not progress, leave=False):
        labels = roidb[i].gt_classes[: roidb[i].num_gt]
        if labels.min() < 1 or labels.max() > num_classes:
            raise ValueError(f"roidb[{i}] (image {roidb[i].image_id}): GT class outside 1..{num_classes}")
        for (_, members), p5 in zip(groups, pooled, strict=True):
            for r in members:
                f = _to_numpy(r.layer(p5)) * np.float32(scales[r.name])
                for row, c in enumerate(labels):
                    pos[r.name][c - 1].append(f[row])
    for r in rows:
        dim = next((len(v[0]) for v in pos[r.name] if v), 0)
        miners[r.name].set_positives([np.stack(v) if v else np.zeros((0, dim), np.float32) for v in pos[r.name]])

    # mining: one pass per epoch, every row's miner fed from the same pooled features
    first, ref = True, miners[rows[0].name]
    n_img = len(roidb)
    for epoch in range(cfg.hard_epochs):
        need = [i for i in range(n_img) if ref.candidates(i, epoch, count=False).any()]
        stream = _zip_streams(groups, need)
        nxt = next(stream, None)
        desc = f"svm mining {epoch + 1}/{cfg.hard_epochs}"
        for i in tqdm(range(n_img), desc=desc, disable=not progress):
            last = epoch == cfg.hard_epochs - 1 and i == n_img - 1
            feats: dict[str, np.ndarray] = {}
            if nxt is not None and nxt[0] == i:
                for (_, members), p5 in zip(groups, nxt[1], strict=True):
                    for r in members:
                        feats[r.name] = _to_numpy(r.layer(p5)) * np.float32(scales[r.name])
                nxt = next(stream, None)
            for name, miner in miners.items():
                cand = miner.candidates(i, epoch)
                if cand.any():
                    miner.add_negatives(i, feats[name], cand, epoch, first)
                miner.retrain_due(first, last)
            first = False
    seconds = time.perf_counter() - t0
    out = {name: miner.finish(seconds) for name, miner in miners.items()}
    log.info(
        "svm rows %s mined in one pass: %.1f s, negative caches %.1f MB",
        names,
        seconds,
        sum(m.cache_bytes for m in miners.values()) / 2**20,
    )
    return out
