"""The one pooling path of SPP-net: windows of an image -> pool5 vectors from its conv5 maps, on the maps' device.

Every stage that needs window features of SPP-net calls :class:`WindowPooler` — fine-tuning (random scale, flip),
SVM training, box regression, testing, the timing rows and the benchmarks — so the scale choice, the window ->
cell mapping and the pyramid are the same everywhere. Per call:

1. each window gets a scale (:func:`~.mapping.choose_scales`: the paper's "closest to 224²" rule or the authors'
   ``spm_expected_scale.m``), or the caller's (fine-tuning draws one at random, ``spp_finetune_voc.m``);
2. per scale, the windows are rescaled to that image size (``(b - 1)(s - 1)/(min_side - 1) + 1``) and mapped to
   0-based inclusive conv5 cells (:func:`~.mapping.map_windows`);
3. per map, the cheaper of two exact ways (a cost model measured on this code: :func:`direct_is_cheaper`): many
   windows — every window of an image at test time — the map is cropped to the union of their cells, converted
   to float32 and pooled by :class:`~.window_spp.WindowSPP` (all windows in one batched call over a range-max
   table); a few — as fine-tuning draws them, one or two per image and scale — each window's cells are pooled
   directly (:meth:`~.window_spp.WindowSPP.single`: adaptive max pooling, no table to build). Both give the
   exact max over the authors' bins, levels in the net's order (tested equal).

Maps are ``(C, h, w)`` tensors of any float dtype (the cache stores float16; the max is exact in any precision,
the arithmetic here is float32). Boxes are 1-based ``x1, y1, x2, y2`` on the original image; for a flipped image
pass the flipped maps and the flipped boxes (:func:`~sppnet_exp.detection.structures.boxes.flip_boxes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sppnet_exp.detection.features.mapping import choose_scales, image_scales, scale_boxes
from sppnet_exp.detection.features.window_spp import WindowSPP
from sppnet_exp.detection.settings import PoolingRules
from sppnet_exp.models.geometry import RFGeometry, map_windows

__all__ = ["PoolingSpec", "WindowPooler", "direct_is_cheaper"]


@dataclass(frozen=True)
class PoolingSpec:
    """Everything that decides which conv5 cells a window pools and into what: the trunk's geometry, the
    pyramid ``levels`` (fc6's order), the image ``scales``, the mapping and scale-choice rules and their
    constants (``target``: the paper's 224, the training crop; ``sz_conv``: the authors' standard window in cells,
    the net's conv5 size at its training crop — ZF-5 at 224: 13; ``offset``: the authors' 6.5 px shrink). The rule
    defaults are :class:`~sppnet_exp.detection.settings.PoolingRules`' (the receptive-field mapping: what Appendix A
    asks for with this net's paddings); :meth:`from_rules` builds a spec from a config's rules."""

    geom: RFGeometry
    levels: tuple[int, ...]
    scales: tuple[int, ...]
    mapping_rule: str = PoolingRules.mapping
    scale_rule: str = PoolingRules.scale_rule
    target: int = PoolingRules.target_size
    sz_conv: int = 13
    offset: float = PoolingRules.offset

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", image_scales(self.scales, "PoolingSpec"))
        object.__setattr__(self, "levels", tuple(int(n) for n in self.levels))

    @classmethod
    def from_rules(
        cls, geom: RFGeometry, levels: Sequence[int], scales: Sequence[int], rules: PoolingRules, sz_conv: int
    ) -> PoolingSpec:
        """The spec of a net (``geom``, ``levels``, ``sz_conv``) at ``scales`` under a config's ``rules``."""
        return cls(geom, tuple(levels), tuple(scales), rules.mapping, rules.scale_rule, rules.target_size, sz_conv,
                   rules.offset)  # fmt: skip

    def choose(self, boxes: np.ndarray, width: int, height: int) -> np.ndarray:
        """(K,) index into ``scales`` of each window's scale (1-based boxes on the ``width x height`` image)."""
        return choose_scales(
            boxes, width, height, self.scales, self.scale_rule, self.target, self.geom.stride, self.sz_conv
        )

    def cells(self, boxes: np.ndarray, min_side: int, scale: int, map_h: int, map_w: int) -> np.ndarray:
        """(K, 4) 0-based inclusive cells of ``boxes`` (original image) on the map of image size ``scale``."""
        scaled = scale_boxes(boxes, min_side, scale)
        return map_windows(scaled, self.mapping_rule, self.geom, map_h, map_w, self.offset)


def direct_is_cheaper(cells: np.ndarray, finest: int) -> bool:
    """Whether pooling these windows one by one costs less than one batched call over their union's table.

    Fitted on 256-channel maps, one thread (ms): direct ~ 0.6 per window + 1.5e-3 per window cell; batched ~ 1 +
    0.1 per window + 3e-4 per union cell x table depth (rows x columns, from the largest bin of the ``finest``
    directly computed level).
    """
    w = cells[:, 2] - cells[:, 0] + 1
    h = cells[:, 3] - cells[:, 1] + 1
    union = float((cells[:, 2].max() - cells[:, 0].min() + 1) * (cells[:, 3].max() - cells[:, 1].min() + 1))
    depth = int(h.max() // finest + 2).bit_length() * int(w.max() // finest + 2).bit_length()
    direct = 0.6 * len(cells) + 1.5e-3 * float((w * h).sum())
    batched = 1.0 + 0.1 * len(cells) + 3e-4 * union * depth
    return direct < batched


class WindowPooler:
    """pool5 of windows from an image's conv maps at its scales (see the module docstring). Not thread-safe: it
    keeps the pyramid's scratch buffers between calls. ``path`` forces one way ("table" / "direct"; tests)."""

    def __init__(self, spec: PoolingSpec, chunk: int = 128, path: str = "auto") -> None:
        if path not in ("auto", "table", "direct"):
            raise ValueError(f"WindowPooler: path must be auto, table or direct, got {path!r}")
        self.spec = spec
        self.spp = WindowSPP(spec.levels, chunk)
        self.path = path
        self.finest = min(self.spp.direct)

    def output_dim(self, channels: int) -> int:
        """Length of a pooled vector, ``channels * sum(n^2)``."""
        return self.spp.output_dim(channels)

    def keys(self, boxes: np.ndarray, width: int, height: int, map_hw: Sequence[tuple[int, int]]) -> np.ndarray:
        """(K, 5) int64 ``(scale index, left, top, right, bottom)``: equal rows pool the same conv5 box (the
        authors' negative dedup). ``map_hw[k]`` is the map size at scale k."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        idx = self.spec.choose(b, width, height)
        out = np.zeros((len(b), 5), dtype=np.int64)
        out[:, 0] = idx
        for k in np.unique(idx):
            sel = np.flatnonzero(idx == k)
            out[sel, 1:] = self.spec.cells(b[sel], min(width, height), self.spec.scales[k], *map_hw[k])
        return out

    @torch.no_grad()
    def pool(
        self,
        maps: Sequence[Tensor],
        boxes: np.ndarray,
        width: int,
        height: int,
        scale_idx: np.ndarray | int | None = None,
        out: Tensor | None = None,
    ) -> Tensor:
        """(K, D) float32 pool5 of ``boxes`` on the device of ``maps`` (one ``(C, h, w)`` map per scale of the
        spec, in order; maps of scales no window uses may be ``None``). ``scale_idx``: one index for all windows,
        one per window, or None for the spec's rule. ``out``: a (K, D) float32 tensor to fill instead."""
        spec = self.spec
        if len(maps) != len(spec.scales):
            raise ValueError(f"WindowPooler.pool: {len(maps)} maps for the {len(spec.scales)} scales {spec.scales}")
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if scale_idx is None:
            idx = spec.choose(b, width, height)
        else:
            idx = np.broadcast_to(np.asarray(scale_idx, dtype=np.int64), (len(b),))
            if len(idx) and (idx.min() < 0 or idx.max() >= len(spec.scales)):
                raise ValueError(f"WindowPooler.pool: scale indices must be in [0, {len(spec.scales)}), got {idx}")
        ref = next((m for m in maps if m is not None), None)
        if ref is None:
            raise ValueError("WindowPooler.pool: no map given")
        dim = self.output_dim(int(ref.shape[0]))
        if out is None:
            out = torch.empty((len(b), dim), dtype=torch.float32, device=ref.device)
        elif tuple(out.shape) != (len(b), dim) or out.dtype != torch.float32:
            raise ValueError(f"WindowPooler.pool: out must be a ({len(b)}, {dim}) float32 tensor")
        min_side = min(int(width), int(height))
        for k in np.unique(idx):
            sel = np.flatnonzero(idx == k)
            fmap = maps[int(k)]
            if fmap is None:
                raise ValueError(f"WindowPooler.pool: windows use scale {spec.scales[int(k)]} but its map is None")
            cells = spec.cells(b[sel], min_side, spec.scales[int(k)], int(fmap.shape[1]), int(fmap.shape[2]))
            direct = self.path == "direct" or (self.path == "auto" and direct_is_cheaper(cells, self.finest))
            if direct:
                for row, (left, top, right, bottom) in zip(sel, cells.tolist(), strict=True):
                    out[int(row)] = self.spp.single(fmap[:, top : bottom + 1, left : right + 1].float())
                continue
            lo, hi = cells[:, :2].min(axis=0), cells[:, 2:].max(axis=0)  # union of the windows: (left, top)
            crop = fmap[:, int(lo[1]) : int(hi[1]) + 1, int(lo[0]) : int(hi[0]) + 1].float()
            shifted = torch.from_numpy(cells - np.concatenate([lo, lo])).to(crop.device)
            if len(sel) == len(b):
                self.spp(crop, shifted, out=out)
            else:
                out[torch.from_numpy(sel).to(out.device)] = self.spp(crop, shifted)
        return out
