"""Conv-map geometry of a trunk: its receptive field and the window -> conv5 cell mapping (Appendix A).

Used by detection (every window of an image pooled from its conv5 map) and by the multi-view test on feature maps
(section 3.1.5: a view is a window of the whole image's map).

Coordinates: boxes are ``x1, y1, x2, y2`` in 1-based inclusive pixels (VOC); cells come back 0-based and
inclusive ``(left, top, right, bottom)``.

Receptive field (:func:`receptive_field`): walking the convs and pools with jump ``j`` (product of strides so
far), size ``r`` and first-cell centre ``c`` (0-based pixel): ``r += (k - 1) j``, ``c += ((k - 1) / 2 - p) j``,
``j *= s`` (``k`` dilated). ``offset0 = c + 1`` is the 1-based pixel centre of conv cell 0. Ceil-mode pools only
add cells at the far end, so they do not move ``c``. ZF-5 as built: S 16, offset0 21, size 139 (authors' 21).

Mapping rules (:func:`map_windows`):

* ``"receptive_field"`` (the default; authors' ``spm_pool_caffe_mex.cpp``): 1-based cells
  ``left = floor((x1 - offset0 + offset)/S + 0.5) + 1``, ``right = ceil((x2 - offset0 - offset)/S - 0.5) + 1``:
  shrink the window by ``offset`` (6.5) px per side and snap each edge to the nearest cell centre.
* ``"paper"``: the v4 formula exactly as printed, ``x' = floor(x/S) + 1`` / ``ceil(x/S) - 1`` with
  1-based ``x`` and cells, i.e. cell ``x'`` centred at pixel ``S x'`` (true for ``floor(p/2)``-padded nets; for
  ZF-5 it sits 5 px off the real centres). ZF-5, x in [100, 300]: 1-based cells 7..18.
* ``"paper_offset"`` (arXiv v4 Appendix A with its "proper offset"): ``x' = floor(x/S) + 1`` (left/top), ``x' =
  ceil(x/S) - 1`` (right/bottom), stated for nets padded by ``floor(p/2)`` where "a response centered at x' has its
  receptive field centered at S x'". That holds only when ``x`` and ``x'`` are counted from the same origin, the
  centre of cell 0 (0-based pixels and 0-based cells; equivalently 1-based cells with cell 1 centred at pixel S: the
  formula moves by one cell per S px, so both readings give the same cells). Our nets are not ``floor(p/2)``-padded,
  so the paper's "proper offset" is added: ``x = x_box - offset0`` with the 1-based box coordinate. The rule then
  keeps the cells whose centres lie strictly inside the window (left: first centre > x1, right: last centre < x2).
  Example, ZF-5, x in [100, 300]: 0-based cells 5..17 for both rules (1-based 6..18). In 1-based cells this is
  ``floor((x1 - 5)/16) + 1`` / ``ceil((x2 - 5)/16) - 1``, next to v3's ``floor((x - 6.5)/16) + 1`` / ``ceil((x -
  5.5)/16) - 1``. The literal reading without offset (1-based x and cells, giving 1-based 7..18 for the example) is
  rule "paper".

Both rules then replace ``left > right`` by their integer mean (C division, in 1-based cells as the mex does) and
clamp to the map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from sppnet_exp.models.window_rules import MAPPING_RULES

__all__ = ["MAPPING_RULES", "RFGeometry", "box_array", "map_windows", "receptive_field"]


@dataclass(frozen=True)
class RFGeometry:
    """Conv-map geometry: total ``stride`` S, ``offset0`` = 1-based pixel centre of cell 0, receptive ``size``."""

    stride: int
    offset0: float
    size: int


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def receptive_field(features: nn.Module) -> RFGeometry:
    """Geometry of the last map of ``features`` from its Conv2d / MaxPool2d / AvgPool2d layers (in order).

    Other modules (ReLU, LRN, dropout) are taken as point-wise. Raises ``ValueError`` when the trunk has no
    conv/pool or when height and width differ in stride, offset or size.
    """
    axes = []
    for d in range(2):
        jump, size, centre, seen = 1, 1, 0.0, False
        for module in features.modules():
            if isinstance(module, nn.Conv2d):
                k, s, p, dil = (_pair(module.kernel_size)[d], _pair(module.stride)[d], module.padding, module.dilation)
                if isinstance(p, str):
                    raise ValueError(f"receptive_field: string padding {p!r} of {module} is not supported")
                p, dil = _pair(p)[d], _pair(dil)[d]
            elif isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
                k, s, p = _pair(module.kernel_size)[d], _pair(module.stride or module.kernel_size)[d], module.padding
                p = _pair(p)[d]
                dil = _pair(getattr(module, "dilation", 1))[d]
            else:
                continue
            seen = True
            eff = dil * (k - 1) + 1
            size += (eff - 1) * jump
            centre += ((eff - 1) / 2 - p) * jump
            jump *= s
        if not seen:
            raise ValueError("receptive_field: the module has no Conv2d or pooling layer")
        axes.append((jump, centre + 1.0, size))
    if axes[0] != axes[1]:
        raise ValueError(f"receptive_field: height and width geometries differ: {axes[0]} vs {axes[1]}")
    jump, offset0, size = axes[0]
    return RFGeometry(stride=jump, offset0=float(offset0), size=size)


def box_array(boxes: np.ndarray, name: str) -> np.ndarray:
    """``boxes`` as a float64 (K, 4) array; ``name`` (the caller) in the error for another shape, NaN or inf."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{name}: boxes must have shape (K, 4), got {b.shape}")
    if not np.isfinite(b).all():
        raise ValueError(f"{name}: boxes contain NaN or inf")
    return b


def _c_mean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a + b) / 2`` with C integer division (truncation toward zero)."""
    s = a + b
    return np.where(s >= 0, s // 2, -((-s) // 2))


def map_windows(
    boxes: np.ndarray,
    rule: str,
    geom: RFGeometry,
    map_h: int,
    map_w: int,
    offset: float = 6.5,
) -> np.ndarray:
    """Map 1-based boxes of the scaled image to 0-based inclusive conv cells ``(left, top, right, bottom)``.

    ``rule`` is "paper" (the v4 appendix formula as printed), "paper_offset" (the same with the "proper offset"
    ``offset0`` from ``geom``) or "receptive_field" (authors' code with ``offset0`` from ``geom`` and shrink
    ``offset``). The result is clamped to ``map_h x map_w`` and has
    ``left <= right``, ``top <= bottom``. See the module docstring for the derivation.
    """
    if rule not in MAPPING_RULES:
        raise ValueError(f"map_windows: rule must be one of {MAPPING_RULES}, got {rule!r}")
    if map_h < 1 or map_w < 1:
        raise ValueError(f"map_windows: map size must be positive, got {map_h}x{map_w}")
    b = box_array(boxes, "map_windows")
    S, o0 = float(geom.stride), float(geom.offset0)
    if rule == "paper":
        o0 = S  # the literal formula: cell x' (1-based) centred at pixel S x', as for floor(p/2)-padded nets
    lo, hi = b[:, 0:2], b[:, 2:4]  # (x1, y1), (x2, y2)
    if rule in ("paper", "paper_offset"):
        # 0-based cells; +1 turns them into the mex's 1-based cells for the shared fix-up below.
        first = np.floor((lo - o0) / S) + 1 + 1
        last = np.ceil((hi - o0) / S) - 1 + 1
    else:
        first = np.floor((lo - o0 + offset) / S + 0.5) + 1
        last = np.ceil((hi - o0 - offset) / S - 0.5) + 1
    first, last = first.astype(np.int64), last.astype(np.int64)
    swap = first > last
    mean = _c_mean(first, last)
    first, last = np.where(swap, mean, first), np.where(swap, mean, last)
    limit = np.array([map_w, map_h], dtype=np.int64)
    first = np.clip(first, 1, limit) - 1
    last = np.clip(last, 1, limit) - 1
    return np.stack([first[:, 0], first[:, 1], last[:, 0], last[:, 1]], axis=1).astype(np.int64)
