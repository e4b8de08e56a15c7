"""The timing cell of Tables 9/10: SPP 1-scale, SPP 5-scale and R-CNN timed on the same test images and device."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from sppnet_exp.config import config_dir
from sppnet_exp.detection.cells.common import load_proposals, resolve_device, setup_data
from sppnet_exp.detection.cells.pretrained import load_pretrained
from sppnet_exp.detection.evaluation.timing import time_rcnn, time_spp, timing_table
from sppnet_exp.detection.features.heads import FCHead
from sppnet_exp.detection.features.mapping import receptive_field
from sppnet_exp.detection.features.pooling import PoolingSpec, WindowPooler
from sppnet_exp.detection.features.warping import warp_windows

log = logging.getLogger(__name__)


def _pretrained_group(name: str) -> DictConfig:
    path = Path(config_dir()) / "pretrained" / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"unknown pretrained option {name!r} (no {path})")
    return OmegaConf.load(path)  # type: ignore[return-value]


def run_timing(cfg: DictConfig) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Time every method on the first ``scale.timing.images`` test images (+ warm-up) with their proposals."""

    device = resolve_device(cfg)
    spp_net, spp_info = load_pretrained(cfg)
    rcnn_net, rcnn_info = load_pretrained(cfg, _pretrained_group(str(cfg.detector.rcnn_pretrained)))
    dm = setup_data(cfg)
    n = int(cfg.scale.timing.images)
    warmup = int(cfg.scale.timing.warmup)
    split = dm.test
    count = min(len(split), n + warmup)
    if count <= warmup:
        raise ValueError(f"timing needs more than {warmup} test images, the split has {len(split)}")
    props = load_proposals(cfg, split)
    images = [split.load_image(i) for i in range(count)]
    boxes = [np.asarray(props[split.records[i].image_id], dtype=np.float32) for i in range(count)]
    geom = receptive_field(spp_net.features)
    head = FCHead.from_fc(spp_net.fc)
    results = {}
    torch.set_grad_enabled(False)
    for name, key in (("spp_1scale", "scales_1"), ("spp_5scale", "scales_5")):
        spec = PoolingSpec(
            geom, tuple(spp_net.levels), tuple(int(s) for s in cfg.scale[key]), target=int(cfg.scale.target_size)
        )
        results[name] = time_spp(
            spp_net.features, head, images, boxes, WindowPooler(spec), device=device, warmup=warmup
        )
    rcnn_group = OmegaConf.merge(cfg, {"pretrained": _pretrained_group(str(cfg.detector.rcnn_pretrained))})
    size, padding = int(rcnn_group.pretrained.get("warp_size") or rcnn_net.input_size), int(cfg.scale.rcnn_padding)
    rcnn_key = f"rcnn_{rcnn_net.name}"

    def warp(img: torch.Tensor, bx: np.ndarray) -> torch.Tensor:
        return warp_windows(img, bx, size, padding)

    results[rcnn_key] = time_rcnn(rcnn_net, images, boxes, warp, device=device, warmup=warmup)
    table = timing_table(results, baseline=rcnn_key)
    for k, v in table.items():
        log.info(f"timing {k}: " + ", ".join(f"{m}={x:.4f}" for m, x in v.items()))
    info = {"device": str(device), "spp_pretrained": spp_info, "rcnn_pretrained": rcnn_info, "images": count - warmup}
    return table, info
