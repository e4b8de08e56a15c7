"""Region proposals of a split from one of three sources, one dispatch (:func:`get_proposals`).

- ``selective_search``: computed once per image into a resumable cache (:mod:`.cache`, :mod:`.selective_search`);
- ``rcnn_mat``: the selective-search boxes R-CNN published for VOC 2007 (:mod:`.formats`);
- ``array_dir``: a folder of per-image ``.npy`` / ``.txt`` arrays.

Boxes come back clipped and filtered (:mod:`.filters`), float32 ``(K, 4)`` ``x1, y1, x2, y2`` 1-based inclusive.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from sppnet_exp.detection.proposals.cache import ProposalCache, _Split
from sppnet_exp.detection.proposals.filters import filter_proposals
from sppnet_exp.detection.proposals.formats import load_array_dir, load_rcnn_mat
from sppnet_exp.detection.settings import ProposalSettings

__all__ = ["get_proposals"]

log = logging.getLogger(__name__)


def get_proposals(
    split: _Split,
    source: str = ProposalSettings.source,
    path: str | Path | None = ProposalSettings.path,
    cache_root: str | Path = Path("data") / "proposals",
    mode: str = ProposalSettings.mode,
    max_side: int | None = ProposalSettings.max_side,
    min_size: float = ProposalSettings.min_size,
    max_proposals: int | None = ProposalSettings.max_proposals,
    dedup: bool = True,
    workers: int | None = None,
    progress: bool = True,
    seed: int = 0,
    stats: dict | None = None,
    layout: str = ProposalSettings.layout,
) -> dict[str, np.ndarray]:
    """Proposals of every image of ``split`` as ``{image_id: (K, 4) float32}``, clipped and filtered.

    ``source``: ``selective_search`` (computed once into ``cache_root``), ``rcnn_mat`` (R-CNN's published .mat
    at ``path``, or Fast R-CNN's per-image files: ``layout``) or ``array_dir`` (``path/<image_id>.npy|.txt``).
    ``stats``, when given, is updated with counts. The defaults are
    :class:`~sppnet_exp.detection.settings.ProposalSettings`' (the ``proposals`` config node).
    """
    records = list(split.records)
    ids = [str(r.image_id) for r in records]
    t0 = time.perf_counter()
    if source == "selective_search":
        cache = ProposalCache(cache_root, f"ss_{mode}", {"max_side": max_side, "seed": seed})
        run_stats = cache.compute(split, workers=workers, progress=progress)
        raw = {i: cache.get(i, min_size=0, max_proposals=None, dedup=False) for i in ids}
        if stats is not None:
            stats.update(run_stats)
    elif source in ("rcnn_mat", "array_dir"):
        if path is None:
            raise ValueError(f"proposal source {source!r} needs a path")
        raw = load_rcnn_mat(path, ids, layout) if source == "rcnn_mat" else load_array_dir(path, ids)
    else:
        raise ValueError(f"unknown proposal source {source!r}; expected selective_search, rcnn_mat or array_dir")
    out: dict[str, np.ndarray] = {}
    outside = 0
    for rec in records:
        b = raw[str(rec.image_id)]
        if len(b) and (
            b[:, :2].min() < 1 - 1e-3 or b[:, 2].max() > rec.width + 1e-3 or b[:, 3].max() > rec.height + 1e-3
        ):
            outside += 1
        out[str(rec.image_id)] = filter_proposals(b, rec.width, rec.height, min_size, max_proposals, dedup)
    if outside:
        log.warning(
            "%d of %d images had proposals outside the image (clipped); check the source %s",
            outside,
            len(records),
            path,
        )
    counts = [len(b) for b in out.values()]
    summary = {
        "source": source,
        "images": len(out),
        "mean_proposals": float(np.mean(counts)) if counts else 0.0,
        "min_proposals": int(min(counts)) if counts else 0,
        "images_outside": outside,
        "total_seconds": time.perf_counter() - t0,
    }
    log.info("proposals: %s", summary)
    if stats is not None:
        stats.update(summary)
    return out
