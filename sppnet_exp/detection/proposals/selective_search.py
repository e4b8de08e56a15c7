"""Selective search (OpenCV ximgproc), seeded per image so that an image's boxes never depend on the process.

Boxes are float32 ``(K, 4)`` ``x1, y1, x2, y2`` in VOC 1-based inclusive pixels of the original image, in the
proposal method's ranking order.

Selective search modes (see the detection facts, section 4):

- ``fast`` / ``quality`` / ``single``: OpenCV's ``switchToSelectiveSearchFast`` / ``...Quality`` /
  ``switchToSingleStrategy`` (HSV+Lab, k = 150, 300, 450, min_size 100, CFTS+FTS for fast);
- ``rcnn``: the parameters of R-CNN's ``selective_search_boxes.m`` fast mode rebuilt from OpenCV parts (HSV+Lab,
  k = 50, 100 with min_size = k, sigma 0.8, strategies CTSF and TSF). OpenCV's features (Scharr texture) and
  ranking are kept, so boxes do not match the MATLAB code bit for bit.

OpenCV ranks regions with C ``rand()``; :func:`selective_search` seeds it (and OpenCV's RNG) before every image so
that an image's proposals do not depend on which process computed it or on what it computed before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import warnings
from typing import Any

import cv2
import numpy as np

from sppnet_exp.detection.structures.boxes import clip_boxes

__all__ = ["SS_MODES", "selective_search"]

SS_MODES = ("fast", "quality", "single", "rcnn")


_LIBC: Any = None
_LIBC_TRIED = False


def _libc() -> Any:
    """The C runtime whose ``srand`` seeds OpenCV's ``rand()`` (None where it cannot be found)."""
    global _LIBC, _LIBC_TRIED
    if not _LIBC_TRIED:
        _LIBC_TRIED = True
        for name in (None, ctypes.util.find_library("c"), "ucrtbase", "msvcrt"):
            try:
                lib = ctypes.CDLL(name)
                lib.srand.argtypes = [ctypes.c_uint]
                _LIBC = lib
                break
            except (OSError, AttributeError, TypeError):
                continue
        if _LIBC is None:
            warnings.warn(
                "cannot load the C runtime to seed rand(); selective-search rankings then depend on the process "
                "history and are not reproducible per image",
                RuntimeWarning,
                stacklevel=3,
            )
    return _LIBC


def _seed_rngs(seed: int) -> None:
    cv2.setRNGSeed(int(seed))
    lib = _libc()
    if lib is not None:
        lib.srand(int(seed) & 0xFFFFFFFF)


def _configure(ss: Any, bgr: np.ndarray, mode: str) -> None:
    """Set up a SelectiveSearchSegmentation object for ``mode``."""
    seg = cv2.ximgproc.segmentation
    if mode == "fast":
        ss.setBaseImage(bgr)
        ss.switchToSelectiveSearchFast()
    elif mode == "quality":
        ss.setBaseImage(bgr)
        ss.switchToSelectiveSearchQuality()
    elif mode == "single":
        ss.setBaseImage(bgr)
        ss.switchToSingleStrategy()
    elif mode == "rcnn":
        ss.addImage(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV))
        ss.addImage(cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab))
        for k in (50, 100):
            ss.addGraphSegmentation(seg.createGraphSegmentation(0.8, float(k), k))
        ss.addStrategy(
            seg.createSelectiveSearchSegmentationStrategyMultiple(
                seg.createSelectiveSearchSegmentationStrategyColor(),
                seg.createSelectiveSearchSegmentationStrategyTexture(),
                seg.createSelectiveSearchSegmentationStrategySize(),
                seg.createSelectiveSearchSegmentationStrategyFill(),
            )
        )
        ss.addStrategy(
            seg.createSelectiveSearchSegmentationStrategyMultiple(
                seg.createSelectiveSearchSegmentationStrategyTexture(),
                seg.createSelectiveSearchSegmentationStrategySize(),
                seg.createSelectiveSearchSegmentationStrategyFill(),
            )
        )
    else:
        raise ValueError(f"unknown selective-search mode {mode!r}; expected one of {SS_MODES}")


def selective_search(image: np.ndarray, mode: str = "fast", max_side: int | None = None, seed: int = 0) -> np.ndarray:
    """Selective-search boxes of an RGB ``uint8`` ``H x W x 3`` image: float32 ``(K, 4)`` 1-based inclusive.

    With ``max_side`` the image is first shrunk (INTER_AREA) so that its longer side is at most ``max_side`` (as
    R-CNN's demo resizes to width 500); boxes are mapped back with ``(b - 1) * scale + 1`` and clipped.
    """
    if mode not in SS_MODES:
        raise ValueError(f"unknown selective-search mode {mode!r}; expected one of {SS_MODES}")
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or min(img.shape[:2]) < 1:
        raise ValueError(f"selective_search expects an H x W x 3 uint8 RGB image, got {img.shape} {img.dtype}")
    height, width = img.shape[:2]
    sx = sy = 1.0
    if max_side is not None and max(height, width) > max_side:
        if max_side < 1:
            raise ValueError(f"max_side must be >= 1, got {max_side}")
        f = max_side / max(height, width)
        new_w, new_h = max(1, round(width * f)), max(1, round(height * f))
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_AREA)
        sx, sy = width / new_w, height / new_h
    bgr = np.ascontiguousarray(img[:, :, ::-1])
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    _configure(ss, bgr, mode)
    _seed_rngs(seed)
    rects = np.asarray(ss.process(), dtype=np.float64).reshape(-1, 4)
    boxes = np.empty_like(rects)
    boxes[:, 0] = rects[:, 0] + 1
    boxes[:, 1] = rects[:, 1] + 1
    boxes[:, 2] = rects[:, 0] + rects[:, 2]
    boxes[:, 3] = rects[:, 1] + rects[:, 3]
    if sx != 1.0 or sy != 1.0:
        boxes[:, [0, 2]] = (boxes[:, [0, 2]] - 1) * sx + 1
        boxes[:, [1, 3]] = (boxes[:, [1, 3]] - 1) * sy + 1
        boxes = clip_boxes(boxes, width, height)
    return boxes.astype(np.float32)
