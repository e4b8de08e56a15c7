"""Per-image timing of SPP-net (1 and 5 scales) and R-CNN, side by side on one device (Tables 9/10's rows).

Conv time: the conv layers (SPP: the whole image at each scale; R-CNN: every warped window). fc time: fc6 and fc7
of every window. Other: resizing, window mapping and pyramid pooling (SPP) or warping (R-CNN). Proposals are
excluded, as in the paper. Each phase is synchronised on CUDA. The timing cell and ``make bench`` run these in
paired rounds (:mod:`.timing_pairs`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from sppnet_exp.data.transforms import normalize
from sppnet_exp.detection.features.heads import FCHead
from sppnet_exp.detection.features.mapping import resized_hw
from sppnet_exp.detection.features.pooling import WindowPooler
from sppnet_exp.utils.timing import synced_clock

__all__ = ["time_rcnn_image", "time_spp_image"]


class _Clock:
    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __call__(self) -> float:
        return synced_clock(self.device)


@torch.no_grad()
def time_spp_image(
    features: torch.nn.Module,
    head: FCHead,
    image: torch.Tensor,
    boxes: np.ndarray,
    pooler: WindowPooler,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """SPP-net on one image (uint8 [3,H,W]) and its windows (1-based boxes): ``conv_s`` (the trunk at every
    scale of ``pooler.spec``), ``fc_s`` (fc6 + fc7 of every window), ``other_s`` (resizing + ``pool_s``: the one
    pooling path, :class:`~sppnet_exp.detection.features.pooling.WindowPooler`), ``windows``. ``features`` and
    ``head`` must already be on ``device`` in eval mode."""
    device = torch.device(device)
    clock = _Clock(device)
    h, w = image.shape[-2:]
    t0 = clock()
    x = normalize(image.to(device))[None]
    resized = []
    for s in pooler.spec.scales:
        rh, rw = resized_hw(h, w, s)
        resized.append(F.interpolate(x, size=(rh, rw), mode="bilinear", align_corners=False, antialias=False))
    t1 = clock()
    maps = [features(r)[0] for r in resized]
    t2 = clock()
    pooled = pooler.pool(maps, boxes, w, h)
    t3 = clock()
    head.layer_features(pooled, "fc7")
    t4 = clock()
    return {
        "conv_s": t2 - t1,
        "fc_s": t4 - t3,
        "other_s": (t1 - t0) + (t3 - t2),
        "pool_s": t3 - t2,
        "windows": float(len(boxes)),
    }


@torch.no_grad()
def time_rcnn_image(
    net: torch.nn.Module,
    head: FCHead,
    image: torch.Tensor,
    boxes: np.ndarray,
    warp: Callable[[torch.Tensor, np.ndarray], torch.Tensor],
    batch_size: int = 128,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """R-CNN on one image: ``warp(image, boxes) -> [K,3,S,S]`` (``other_s``), conv + pool5 (``conv_s``) and
    fc6/fc7 (``fc_s``) of every window, ``batch_size`` windows at a time. ``net``/``head`` on ``device``, eval."""
    clock = _Clock(torch.device(device))
    conv = fc = other = 0.0
    for start in range(0, len(boxes), batch_size):
        t0 = clock()
        crops = warp(image, boxes[start : start + batch_size]).to(device)
        t1 = clock()
        pooled = net.pool(net.features(crops)).flatten(1)
        t2 = clock()
        head.layer_features(pooled, "fc7")
        t3 = clock()
        other, conv, fc = other + (t1 - t0), conv + (t2 - t1), fc + (t3 - t2)
    return {"conv_s": conv, "fc_s": fc, "other_s": other, "windows": float(len(boxes))}
