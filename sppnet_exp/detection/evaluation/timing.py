"""Per-image timing of SPP-net (1 and 5 scales) and R-CNN, side by side on one device (Tables 9/10's rows).

Conv time: the conv layers (SPP: the whole image at each scale; R-CNN: every warped window). fc time: fc6 and fc7
of every window. Other: resizing, window mapping and pyramid pooling (SPP) or warping (R-CNN). Proposals are
excluded, as in the paper. Each phase is synchronised on CUDA; the first ``warmup`` images are not counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from sppnet_exp.data.transforms import normalize
from sppnet_exp.detection.features.heads import FCHead
from sppnet_exp.detection.features.mapping import resized_hw
from sppnet_exp.detection.features.pooling import WindowPooler
from sppnet_exp.utils.timing import synced_clock

__all__ = ["MethodTiming", "time_rcnn", "time_rcnn_image", "time_spp", "time_spp_image", "timing_table"]


@dataclass
class MethodTiming:
    """Seconds per image of one method (means over the timed images)."""

    conv: list[float] = field(default_factory=list)
    fc: list[float] = field(default_factory=list)
    other: list[float] = field(default_factory=list)
    windows: list[int] = field(default_factory=list)

    def add(self, image: dict[str, float]) -> None:
        """Append one image's figures (as :func:`time_spp_image` / :func:`time_rcnn_image` return them)."""
        self.conv.append(image["conv_s"])
        self.fc.append(image["fc_s"])
        self.other.append(image["other_s"])
        self.windows.append(int(image["windows"]))

    def summary(self) -> dict[str, float]:
        conv, fc, other = (float(np.mean(x)) if x else float("nan") for x in (self.conv, self.fc, self.other))
        return {
            "conv_s": conv,
            "fc_s": fc,
            "other_s": other,
            "total_s": conv + fc + other,
            "windows": float(np.mean(self.windows)) if self.windows else 0.0,
            "images": float(len(self.conv)),
        }


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
def time_spp(
    features: torch.nn.Module,
    head: FCHead,
    images: Sequence[torch.Tensor],
    boxes: Sequence[np.ndarray],
    pooler: WindowPooler,
    device: torch.device | str = "cpu",
    warmup: int = 1,
) -> MethodTiming:
    """Time SPP-net on ``images`` (uint8 [3,H,W]) with their windows; the first ``warmup`` are not counted."""
    device = torch.device(device)
    out = MethodTiming()
    features, head = features.to(device).eval(), head.to(device).eval()
    for n, (img, bx) in enumerate(zip(images, boxes, strict=True)):
        t = time_spp_image(features, head, img, bx, pooler, device)
        if n >= warmup:
            out.add(t)
    return out


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


@torch.no_grad()
def time_rcnn(
    net: torch.nn.Module,
    images: Sequence[torch.Tensor],
    boxes: Sequence[np.ndarray],
    warp: Callable[[torch.Tensor, np.ndarray], torch.Tensor],
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    warmup: int = 1,
) -> MethodTiming:
    """Time R-CNN on ``images`` with their windows (see :func:`time_rcnn_image`); ``warmup`` images not counted."""
    device = torch.device(device)
    out = MethodTiming()
    net = net.to(device).eval()
    head = FCHead.from_fc(net.fc).to(device).eval()
    for n, (img, bx) in enumerate(zip(images, boxes, strict=True)):
        t = time_rcnn_image(net, head, img, bx, warp, batch_size, device)
        if n >= warmup:
            out.add(t)
    return out


def timing_table(results: dict[str, MethodTiming], baseline: str = "rcnn") -> dict[str, dict[str, float]]:
    """Summaries per method plus speed-ups over ``baseline`` (total and conv only)."""
    summary = {k: v.summary() for k, v in results.items()}
    base = summary.get(baseline)
    for k, s in summary.items():
        if base is not None and k != baseline:
            s["speedup"] = base["total_s"] / s["total_s"] if s["total_s"] > 0 else float("nan")
            s["conv_speedup"] = base["conv_s"] / s["conv_s"] if s["conv_s"] > 0 else float("nan")
    return summary
