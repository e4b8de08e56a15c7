"""A cell's feature stage: SPP-net's conv5 cache and pooling spec, or R-CNN's warped-window features.

SPP-net: conv5 of every image at every scale (and of the mirrored training images when fine-tuning flips) is
computed once into the shared :class:`~sppnet_exp.detection.features.conv_cache.ConvCache` — the only stage that
shards over DDP ranks / SLURM tasks; the other ranks leave right after it. Window features are then pooled on the
fly (:class:`~sppnet_exp.detection.features.windows.SPPFeatures`). R-CNN: windows are warped and sent through the
net when asked (:class:`~sppnet_exp.detection.features.windows.RCNNFeatures`), behind a per-window cache when
``features.window_cache`` says so (``auto``: when it is smaller than ``features.window_cache_max_gb``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sppnet_exp.detection.cells.common import CellData, conv5_tag, conv_trainer_kwargs, window_tag
from sppnet_exp.detection.cells.disk import check_free_space, conv5_bytes
from sppnet_exp.detection.features.conv_cache import ConvCache, build_conv_cache
from sppnet_exp.detection.features.pooling import PoolingSpec, WindowPooler
from sppnet_exp.detection.features.window_cache import WindowCache, window_cache_bytes
from sppnet_exp.detection.features.windows import CachedFeatures, RCNNFeatures, SPPFeatures, WindowFeatures
from sppnet_exp.detection.settings import PoolingRules
from sppnet_exp.engine.wiring import resolve_device
from sppnet_exp.models.geometry import receptive_field
from sppnet_exp.models.net import SPPNet
from sppnet_exp.utils.dist import is_primary

log = logging.getLogger(__name__)

__all__ = ["SPPStage", "net_spec", "rcnn_features", "spp_features", "spp_spec"]


@dataclass
class SPPStage:
    """SPP-net's features: the conv5 cache, the pooling spec and the train/test window sources."""

    cache: ConvCache
    spec: PoolingSpec
    train: SPPFeatures
    test: SPPFeatures


def spp_spec(cfg: DictConfig, net: SPPNet) -> PoolingSpec:
    """The pooling spec of ``cfg.detector`` for ``net``: its scales and rules (``detector.pooling``), the net's own
    pyramid (fc6 expects it, in its order), and for the authors' scale rule its conv5 size at its training crop
    (ZF-5 at 224: 13 cells; Overfeat: 18)."""
    det = cfg.detector
    levels = tuple(det.levels) if det.levels else tuple(net.levels)
    if tuple(levels) != tuple(net.levels):
        raise ValueError(
            f"detector.levels {list(levels)} differ from the pretrained net's pyramid {list(net.levels)}; "
            "fc6 expects the net's own levels in its order"
        )
    return net_spec(net, det.scales, OmegaConf.to_object(det.pooling))  # type: ignore[arg-type]


def net_spec(net: SPPNet, scales: Sequence[int], rules: PoolingRules) -> PoolingSpec:
    """The pooling spec of ``net`` (its trunk's geometry, pyramid and conv5 size at its input size) at ``scales``
    under ``rules``."""
    sz_conv = int(net.feature_map_size(net.input_size, net.input_size)[0])
    return PoolingSpec.from_rules(receptive_field(net.features), tuple(net.levels), scales, rules, sz_conv)


def spp_features(cfg: DictConfig, data: CellData, net: SPPNet, flips: bool, info: dict) -> SPPStage:
    """Build (or reuse) the conv5 cache of every image — and of the mirrored training images when ``flips`` —
    sharded over the ranks, then return the window sources. Ranks other than 0 exit after their shard."""
    spec = spp_spec(cfg, net)
    cache = ConvCache(Path(cfg.cache_dir) / "conv5", spec.scales, conv5_tag(cfg))
    records = [(split, r) for split in (data.train, data.test) for r in split.records]
    items: list[tuple[str, Any, bool]] = [(r.image_id, r.path, False) for _, r in records]
    if flips:
        items += [(r.image_id, r.path, True) for r in data.train.records]
    if is_primary():
        channels = int(net.out_channels)
        needs = {
            "conv5": conv5_bytes(
                cache,
                [(r.image_id, r.width, r.height) for _, r in records],
                net.feature_map_size,
                channels,
                spec.scales,
            )
        }
        if flips:
            train = [(r.image_id, r.width, r.height) for r in data.train.records]
            needs["conv5_flipped"] = conv5_bytes(cache, train, net.feature_map_size, channels, spec.scales, flip=True)
        info["disk"] = check_free_space(cfg.cache_dir, needs, enabled=bool(cfg.disk_check))
    t = time.time()
    stats = build_conv_cache(cache, items, net.features, spec.scales, trainer_kwargs=conv_trainer_kwargs(cfg))
    if not is_primary():
        log.info("DDP rank > 0: conv5 shard written, leaving the rest of the detector to rank 0")
        raise SystemExit(0)
    info["stages"]["conv5_s"] = round(time.time() - t, 1)
    info["conv5"] = {**stats, "dir": str(cache.dir), "flipped_train": bool(flips)}
    device, workers = resolve_device(cfg), int(cfg.features.workers)
    return SPPStage(
        cache,
        spec,
        SPPFeatures(cache, data.roidb_train, WindowPooler(spec), device, workers),
        SPPFeatures(cache, data.roidb_test, WindowPooler(spec), device, workers),
    )


def rcnn_features(
    cfg: DictConfig, data: CellData, net: SPPNet, info: dict, which: str
) -> tuple[WindowFeatures, WindowFeatures]:
    """R-CNN's train/test pool5 sources of ``net`` (``which``: "pre" or "ft"), cached per window when the
    ``features.window_cache`` option says so."""
    det, f = cfg.detector, cfg.features
    size = int(det.input_size or net.input_size)
    geometry = str(det.geometry)
    device, workers = resolve_device(cfg), int(f.workers)
    sources = [
        RCNNFeatures(net, split.load_image, roidb, size, int(det.padding), geometry, device=device, workers=workers)
        for split, roidb in ((data.train, data.roidb_train), (data.test, data.roidb_test))
    ]
    windows = sum(len(w) for w in data.roidb_train) + sum(len(w) for w in data.roidb_test)
    nbytes = window_cache_bytes(windows, sources[0].dim)
    mode = str(f.window_cache)
    use = mode == "true" or (mode == "auto" and nbytes <= float(f.window_cache_max_gb) * 1e9)
    if mode not in ("auto", "true", "false"):
        raise ValueError(f"features.window_cache must be auto, true or false, got {mode!r}")
    info.setdefault("window_cache", {})[which] = {"used": use, "gb": round(nbytes / 1e9, 3)}
    if not use:
        log.info(f"R-CNN {which} features: recomputed per pass (a window cache would take {nbytes / 1e9:.1f} GB)")
        return sources[0], sources[1]
    root = Path(cfg.cache_dir) / "windows" / window_tag(cfg, which, size, geometry)
    log.info(f"R-CNN {which} features: per-window cache of {nbytes / 1e9:.2f} GB in {root}")
    info["disk"] = check_free_space(root, {f"windows_{which}": nbytes}, enabled=bool(cfg.disk_check))
    progress = bool(cfg.progress)
    t = time.time()
    cached = [CachedFeatures(src, WindowCache(root / name), progress) for src, name in zip(sources, ("train", "test"))]
    info["stages"][f"windows_{which}_s"] = round(time.time() - t, 1)
    return cached[0], cached[1]
