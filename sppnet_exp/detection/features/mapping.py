"""Detection's window geometry on top of the nets' (:mod:`sppnet_exp.models.geometry`): box scaling to an image
scale, the scale list, box areas and the per-window scale choice (section 4.1, ``spm_expected_scale.m``).

Coordinates: boxes are ``x1, y1, x2, y2`` in 1-based inclusive pixels (VOC).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sppnet_exp.detection.settings import SCALE_RULES
from sppnet_exp.models.geometry import box_array

__all__ = ["SCALE_RULES", "box_areas_plus1", "choose_scales", "image_scales", "resized_hw", "scale_boxes"]


def image_scales(scales: Sequence[int], who: str, least: int = 2) -> tuple[int, ...]:
    """``scales`` (image sizes s: the shorter side, section 2.3) as a tuple of ints; ``who`` names the caller in
    the error when the list is empty or holds a size under ``least`` (2 for an image; the scale choice alone
    takes any positive size)."""
    out = tuple(int(s) for s in scales)
    if not out or any(s < least for s in out):
        raise ValueError(f"{who}: scales must be a non-empty list of image sizes >= {least}, got {list(scales)}")
    return out


def scale_boxes(boxes: np.ndarray, min_side: int, scale: int) -> np.ndarray:
    """Boxes on the image resized to shorter side ``scale``: ``(b - 1)(scale - 1)/(min_side - 1) + 1`` (authors)."""
    if min_side < 2 or scale < 2:
        raise ValueError(f"scale_boxes: min_side and scale must be >= 2, got {min_side} and {scale}")
    b = box_array(boxes, "scale_boxes")
    return (b - 1.0) * ((scale - 1.0) / (min_side - 1.0)) + 1.0


def resized_hw(h: int, w: int, scale: int) -> tuple[int, int]:
    """Size after resizing the shorter side to ``scale``; the longer is ``round(long * scale / short)`` (half up)."""
    if h < 1 or w < 1 or scale < 1:
        raise ValueError(f"resized_hw: sizes must be positive, got h={h}, w={w}, scale={scale}")
    short, long = min(h, w), max(h, w)
    other = max(1, int(math.floor(long * scale / short + 0.5)))
    return (scale, other) if h <= w else (other, scale)


def box_areas_plus1(boxes: np.ndarray) -> np.ndarray:
    """Areas ``(x2 - x1 + 1)(y2 - y1 + 1)`` (at least 1 px per side)."""
    b = box_array(boxes, "box_areas_plus1")
    w = np.maximum(b[:, 2] - b[:, 0] + 1, 1)
    h = np.maximum(b[:, 3] - b[:, 1] + 1, 1)
    return w * h


def choose_scales(
    boxes: np.ndarray,
    width: int,
    height: int,
    scales: Sequence[int],
    rule: str = "paper",
    target: int = 224,
    stride: int = 16,
    sz_conv: int = 13,
) -> np.ndarray:
    """Index into ``scales`` of the scale used for each window (boxes 1-based on the original image).

    "paper": the scale whose scaled window has the pixel count closest to ``target**2``, i.e. argmin
    ``|area (s/min_side)^2 - target^2|``. "authors" (``spm_expected_scale.m``): ``expected = round(sz_conv *
    stride * min_side / sqrt(area))``, argmin ``|s - expected|``. Areas use +1 widths; ties go to the smaller scale.
    """
    if rule not in SCALE_RULES:
        raise ValueError(f"choose_scales: rule must be one of {SCALE_RULES}, got {rule!r}")
    sc = np.asarray(image_scales(scales, "choose_scales", least=1), dtype=np.float64)
    if width < 1 or height < 1:
        raise ValueError(f"choose_scales: image size must be positive, got {width}x{height}")
    area = box_areas_plus1(boxes)
    min_side = float(min(width, height))
    if rule == "paper":
        cost = np.abs(area[:, None] * (sc[None, :] / min_side) ** 2 - float(target) ** 2)
    else:
        expected = np.floor(sz_conv * stride * min_side / np.sqrt(area) + 0.5)
        cost = np.abs(sc[None, :] - expected[:, None])
    # Ties -> smaller scale: visit scales in ascending order, argmin takes the first minimum.
    order = np.argsort(sc, kind="stable")
    return order[np.argmin(cost[:, order], axis=1)].astype(np.int64) if len(area) else np.zeros(0, np.int64)
