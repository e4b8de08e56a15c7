"""Multi-view testing on feature maps (paper section 3.1.5, Table 4).

"We resize an image so min(w, h) = s ... compute the convolutional feature maps from the entire image. For the
usage of flipped views, we also compute the feature maps of the flipped image. Given any view (window) in the image,
we map this window to the feature maps (the way of mapping is in Appendix), and then use SPP to pool the features
from this window. The pooled features are then fed into the fc layers to compute the softmax score of this window.
These scores are averaged for the final prediction."

Views (:mod:`sppnet_exp.data.views`): ``10view_maps`` (the standard 10 views at ``s = ten_scale``), ``multiview``
(18 views per scale at the six multi-view scales, 6 at the smallest: 96) and ``multiview_full`` (those 96 and the two
full-image views, the whole map of the image and of its mirror at ``s = full_scale``: Table 4's "96+2full"). All
scores are averaged with equal weight.

Each view's window is mapped to conv5 cells by ``mapping``: one of Appendix A's rules
(:func:`sppnet_exp.models.geometry.map_windows`; ``receptive_field``, the default, is the authors' mex) or
``crop``, the cells a crop of the view would have as its own conv5 map (first cell ``round(left / S)``, as many as
the net gives a ``size x size`` input): with a trunk without padding and views on the stride's grid this is the crop
test exactly, window for window (the test of this module); with padding only the crop's border cells differ, as
they see zero padding where the map sees the image around the view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sppnet_exp.data.batches import to_float
from sppnet_exp.data.transforms import resize_short
from sppnet_exp.data.views import MULTIVIEW_SCALES, View, map_view_windows, multiview_scales
from sppnet_exp.models.geometry import map_windows, receptive_field
from sppnet_exp.models.net import SPPNet
from sppnet_exp.models.window_rules import MAPPING_RULES

__all__ = ["VIEW_MAPPINGS", "MapViewSettings", "MapViewTester"]

VIEW_MAPPINGS = (*MAPPING_RULES, "crop")


@dataclass(frozen=True)
class MapViewSettings:
    """The geometry of the map views: ``crop``-pixel views, the 10 views at ``ten_scale``, the full views at
    ``full_scale``, the multi-view ``scales`` (None: the paper's six times ``crop / 224``), the window -> cell
    ``mapping`` (:data:`VIEW_MAPPINGS`) and the receptive-field rule's ``offset``."""

    crop: int = 224
    ten_scale: int = 256
    full_scale: int = 256
    scales: tuple[int, ...] | None = MULTIVIEW_SCALES
    mapping: str = "receptive_field"
    offset: float = 6.5

    def __post_init__(self) -> None:
        if self.mapping not in VIEW_MAPPINGS:
            raise ValueError(f"eval.map.mapping must be one of {VIEW_MAPPINGS}, got {self.mapping!r}")
        if self.ten_scale < self.crop:
            raise ValueError(f"map views: ten_scale {self.ten_scale} must be >= the view {self.crop}")
        if self.full_scale < 1:
            raise ValueError(f"map views: full_scale must be a positive size, got {self.full_scale}")
        object.__setattr__(self, "scales", multiview_scales(self.crop, self.scales))


class MapViewTester:
    """Scores of map views for one network (an SPP head: windows of any size are pooled to its fixed length).

    ``logits(img, name)`` gives one row per view of an ``uint8 [3,H,W]`` image; ``scores`` averages their softmax
    (sigmoid for multi-label nets). Conv5 is computed once per scale, for the image and its mirror together.
    """

    def __init__(self, net: SPPNet, settings: MapViewSettings) -> None:
        if net.head != "spp":
            raise ValueError(f"map views pool windows of any size: they need an SPP head, {net.name} is {net.head}")
        self.net, self.settings = net, settings
        self.geometry = receptive_field(net.features)
        self.crop_cells = net.feature_map_size(settings.crop, settings.crop)

    def views(self, name: str, height: int, width: int) -> list[View]:
        """The windows of view ``name`` for an ``height x width`` image (its full views are not windows)."""
        st = self.settings
        return map_view_windows(name, height, width, st.crop, st.ten_scale, st.scales)

    def cells(self, views: Sequence[View], map_h: int, map_w: int, width: int) -> np.ndarray:
        """0-based inclusive ``(left, top, right, bottom)`` conv cells of each view on the ``map_h x map_w`` map of
        its (mirrored, for a flipped view) image, ``width`` pixels wide at the views' scale."""
        lefts = np.array([v.mirrored_left(width) if v.flip else v.left for v in views], dtype=np.int64)
        tops = np.array([v.top for v in views], dtype=np.int64)
        sizes = np.array([v.size for v in views], dtype=np.int64)
        if self.settings.mapping == "crop":
            stride = self.geometry.stride
            first = np.stack([np.floor(lefts / stride + 0.5), np.floor(tops / stride + 0.5)], 1).astype(np.int64)
            count = np.array([self.crop_cells[1], self.crop_cells[0]], dtype=np.int64)
            if (sizes != self.settings.crop).any():
                raise ValueError(f"mapping 'crop' takes views of the crop size {self.settings.crop} only")
            limit = np.array([map_w - 1, map_h - 1], dtype=np.int64)
            lo, hi = np.minimum(first, limit), np.minimum(first + count - 1, limit)
            return np.concatenate([lo, hi], 1)
        boxes = np.stack([lefts + 1, tops + 1, lefts + sizes, tops + sizes], 1).astype(np.float64)
        return map_windows(boxes, self.settings.mapping, self.geometry, map_h, map_w, self.settings.offset)

    def pool(self, fmap: Tensor, cells: np.ndarray) -> Tensor:
        """The net's SPP of each window ``cells`` of one conv map ``C x h x w``: ``K x D``."""
        return torch.cat([self.net.pool(fmap[None, :, t : b + 1, lft : r + 1]).flatten(1) for lft, t, r, b in cells])

    def _head(self, pooled: Tensor) -> Tensor:
        return self.net.classifier(self.net.fc(pooled))

    def logits(self, img: Tensor, name: str) -> Tensor:
        """Logits ``V x K`` of every view of ``name`` for the ``uint8 [3,H,W]`` image ``img`` (on the net's device)."""
        h, w = int(img.shape[-2]), int(img.shape[-1])
        views = self.views(name, h, w)  # checks the name
        out = []
        for scale in dict.fromkeys(v.scale for v in views):
            group = [v for v in views if v.scale == scale]
            resized = resize_short(img, scale)
            flips = sorted({v.flip for v in group})
            batch = torch.stack([resized.flip(-1) if f else resized for f in flips])
            maps = self.net.features(to_float(batch))
            width = int(resized.shape[-1])
            for i, flip in enumerate(flips):
                mine = [v for v in group if v.flip == flip]
                cells = self.cells(mine, int(maps.shape[-2]), int(maps.shape[-1]), width)
                out.append(self._head(self.pool(maps[i], cells)))
        if name == "multiview_full":
            full = resize_short(img, self.settings.full_scale)
            out.append(self.net(to_float(torch.stack([full, full.flip(-1)]))))
        return torch.cat(out)

    def scores(self, images: Sequence[Tensor], name: str, multilabel: bool = False) -> Tensor:
        """``B x K``: the mean over the views of ``name`` of each image's softmax (sigmoid if ``multilabel``)."""
        rows = []
        for img in images:
            logits = self.logits(img, name)
            rows.append((logits.sigmoid() if multilabel else logits.softmax(-1)).mean(0))
        return torch.stack(rows)
