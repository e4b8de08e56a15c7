"""R-CNN's warped windows: each window warped with context to the net's input size by batched ``roi_align``.

Warping (R-CNN "warp" crop mode, ``rcnn_im_crop.m`` / Caffe ``window_data_layer``): the box is dilated about its
centre by ``size / (size - 2 * padding)`` so that, warped to ``size x size``, it keeps ``padding`` pixels of context
on each side; the part of the dilated box inside the image is warped (bilinear, no antialiasing) onto the matching
sub-rectangle of the output and the rest is the mean (0 after normalisation).

Two geometries:

* ``"paper"`` (default; R-CNN paper: "exactly p pixels of warped image context"): continuous coordinates, the box
  ``[x1 - 1, x2]`` (pixel i covers ``[i - 1, i]``) dilated about its true centre, no rounding. An output pixel is
  image when its centre maps inside the image.
* ``"rcnn"`` (the released code): integer rounding as in ``rcnn_im_crop.m``, centre ``x1 + w/2`` (so the dilated
  box sits about half a pixel right/down and is one pixel wider), the clipped crop resized to
  ``round(clipped * size / unclipped)`` pixels placed after ``round(pad * size / unclipped)`` mean pixels.
  With ``padding=0`` the box itself is resized (as ``rcnn_im_crop`` does), clipped to the image.

Sampling is one ``torchvision.ops.roi_align`` call per chunk of windows (aligned, one sample per output pixel =
bilinear resize), so there is no Python loop over windows or pixels. One difference from cropping first and then
resizing: when a window is enlarged (fewer crop pixels than output pixels), the output pixels within half a crop
pixel of the crop's edge interpolate towards the image pixel just outside the crop, where ``imresize`` on the crop
repeats the edge pixel. Shrunk windows (crop at least as large as the output) match crop-then-resize exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import roi_align

from sppnet_exp.data.transforms import normalize

__all__ = ["GEOMETRIES", "warp_geometry", "warp_windows"]

GEOMETRIES = ("paper", "rcnn")


def _matlab_round(x: np.ndarray) -> np.ndarray:
    """Round half away from zero (MATLAB ``round``, C ``round``)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _check_boxes(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"warp: boxes must have shape (K, 4), got {b.shape}")
    if not np.isfinite(b).all():
        raise ValueError("warp: boxes contain NaN or inf")
    bad = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
    if bad.any():
        raise ValueError(f"warp: {int(bad.sum())} boxes have x2 < x1 or y2 < y1 (first: {b[bad][0].tolist()})")
    return b


def _axis_rcnn(lo: np.ndarray, hi: np.ndarray, extent: int, size: int, padding: int) -> tuple[np.ndarray, ...]:
    """One axis of ``rcnn_im_crop``: (roi start, roi end, first image pixel, end image pixel) of the output."""
    if padding > 0:
        scale = size / (size - 2 * padding)
        half = (hi - lo + 1) / 2
        centre = lo + half
        lo, hi = _matlab_round(centre - half * scale), _matlab_round(centre + half * scale)
    else:
        lo, hi = _matlab_round(lo), _matlab_round(hi)
    unclipped = hi - lo + 1
    pad = np.maximum(0, 1 - lo)
    lo_c, hi_c = np.maximum(1, lo), np.minimum(extent, hi)
    clipped = hi_c - lo_c + 1
    if (clipped < 1).any():
        raise ValueError("warp: a box lies entirely outside the image")
    crop = _matlab_round(clipped * size / unclipped)
    pad = np.minimum(_matlab_round(pad * size / unclipped), size - 1)
    crop = np.clip(crop, 1, size - pad)  # rcnn_im_crop truncates crop to size - pad; >= 1 for degenerate boxes
    step = clipped / crop  # input pixels per output pixel on the warped crop
    start = (lo_c - 1) - pad * step  # continuous coordinate of output edge 0
    return start, start + size * step, pad, pad + crop


def _axis_paper(lo: np.ndarray, hi: np.ndarray, extent: int, size: int, padding: int) -> tuple[np.ndarray, ...]:
    """One axis in continuous coordinates: the box ``[lo - 1, hi]`` dilated about its centre, no rounding."""
    scale = size / (size - 2 * padding)
    centre, half = (lo - 1 + hi) / 2, (hi - lo + 1) / 2 * scale
    start, end = centre - half, centre + half
    step = (end - start) / size
    # Output pixel j (centre j + 0.5) maps to start + (j + 0.5) * step; it is image when that is in [0, extent].
    first = np.clip(np.ceil(-start / step - 0.5), 0, size)
    stop = np.clip(np.floor((extent - start) / step - 0.5) + 1, 0, size)
    if (stop <= first).any():
        raise ValueError("warp: a box lies entirely outside the image")
    return start, end, first, stop


def warp_geometry(
    boxes: np.ndarray, width: int, height: int, size: int, padding: int = 16, geometry: str = "paper"
) -> tuple[np.ndarray, np.ndarray]:
    """Sampling boxes and image sub-rectangles of the warped windows.

    Returns ``rois`` (K, 4) float64: the continuous region ``(x0, y0, x1, y1)`` (pixel i covers ``[i, i+1]``,
    0-based) that maps onto the whole ``size x size`` output, and ``inside`` (K, 4) int64: output pixel columns
    ``[inside[:,0], inside[:,2])`` and rows ``[inside[:,1], inside[:,3])`` that come from the image (the rest is
    the mean).
    """
    if geometry not in GEOMETRIES:
        raise ValueError(f"warp: geometry must be one of {GEOMETRIES}, got {geometry!r}")
    if padding < 0 or size - 2 * padding < 1:
        raise ValueError(f"warp: need 0 <= padding < size / 2, got size={size}, padding={padding}")
    b = _check_boxes(boxes)
    axis = _axis_paper if geometry == "paper" else _axis_rcnn
    x0, x1, fx, sx = axis(b[:, 0], b[:, 2], int(width), size, padding)
    y0, y1, fy, sy = axis(b[:, 1], b[:, 3], int(height), size, padding)
    rois = np.stack([x0, y0, x1, y1], axis=1)
    inside = np.stack([fx, fy, sx, sy], axis=1).astype(np.int64)
    return rois, inside


def _prepare(image: Tensor, device: torch.device | str | None) -> Tensor:
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"warp: image must be [3, H, W], got shape {tuple(image.shape)}")
    x = image.to(image.device if device is None else device, non_blocking=True)
    return normalize(x) if x.dtype == torch.uint8 else x.float()


def warp_windows(
    image: Tensor,
    boxes: np.ndarray,
    size: int,
    padding: int = 16,
    geometry: str = "paper",
    device: torch.device | str | None = None,
) -> Tensor:
    """Warp each box (1-based inclusive ``x1, y1, x2, y2``) with ``padding`` context pixels to ``size x size``.

    ``image`` is ``uint8 [3, H, W]`` (normalised here with ImageNet mean/std) or float (taken as already
    normalised). Returns ``float32 [K, 3, size, size]`` on ``device`` (default: the image's); regions outside
    the image are 0 (the mean).
    """
    x = _prepare(image, device)
    height, width = x.shape[-2:]
    rois, inside = warp_geometry(boxes, width, height, size, padding, geometry)
    k = len(rois)
    if k == 0:
        return x.new_zeros((0, 3, size, size))
    rois_t = torch.cat([torch.zeros(k, 1, dtype=torch.float64), torch.from_numpy(rois)], dim=1)
    # aligned=True: box coordinates are continuous (pixel i covers [i, i+1]); one sample per output pixel at its
    # centre, i.e. a bilinear resize without antialiasing (MATLAB imresize 'antialiasing' false, cv::resize).
    out = roi_align(x[None], rois_t.to(x), size, spatial_scale=1.0, sampling_ratio=1, aligned=True)
    j = torch.arange(size, device=x.device)
    ins = torch.from_numpy(inside).to(x.device)
    cols = (j[None] >= ins[:, 0:1]) & (j[None] < ins[:, 2:3])
    rows = (j[None] >= ins[:, 1:2]) & (j[None] < ins[:, 3:4])
    return out * (rows[:, :, None] & cols[:, None, :])[:, None].to(out.dtype)
