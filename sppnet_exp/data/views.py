"""The test views of Table 4 as windows on resized images (paper section 3.1.5).

The multi-view test resizes an image to six scales s ∈ {224, 256, 300, 360, 448, 560} (shorter side s) and takes
224×224 views on each: "one at the center, four at the corners, and four on the middle of each side, with/without
flipping (when s = 224 there are 6 different views)" — 18 per scale, 6 at s = 224 (the shorter side equals the view,
so the nine positions fall on three along the longer side), 96 in all; the paper adds the two full-image views
(with flipping). The standard 10 views are the four corners and the centre at s = 256, with flips.

A view here is a window: its scale, its top-left corner on the image resized to that scale, its size and whether it
is taken from the mirrored image. Crops of the resized image (Tables 2-3) and windows pooled from the conv5 map of
the whole resized image (section 3.1.5: "we map this window to the feature maps ... then use SPP to pool the
features from this window") use the same list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sppnet_exp.data.transforms import five_positions, resized_size

__all__ = [
    "MAP_VIEWS",
    "MULTIVIEW_SCALES",
    "View",
    "map_view_windows",
    "multiview",
    "multiview_scales",
    "nine_positions",
    "ten_views",
]

MULTIVIEW_SCALES = (224, 256, 300, 360, 448, 560)
# The test views pooled from conv5 maps (``eval.views``): the standard 10 views, the 96 views of six scales, and
# those 96 with the two full-image views (the image at the full view's size and its mirror), Table 4's last row.
MAP_VIEWS = ("10view_maps", "multiview", "multiview_full")


@dataclass(frozen=True)
class View:
    """A ``size x size`` window at (``top``, ``left``) of the image resized to shorter side ``scale``; ``flip``: the
    window mirrored, as the 10-view test mirrors its crops (on the conv5 map of the mirrored image it is the window
    at ``left' = width - left - size``: :meth:`mirrored_left`)."""

    scale: int
    top: int
    left: int
    size: int
    flip: bool = False

    def box(self) -> tuple[int, int, int, int]:
        """(x1, y1, x2, y2), 0-based inclusive pixels on the resized image."""
        return self.left, self.top, self.left + self.size - 1, self.top + self.size - 1

    def mirrored_left(self, width: int) -> int:
        """The window's left edge on the mirrored resized image of ``width`` (where a flipped view is pooled)."""
        return width - self.left - self.size


def nine_positions(height: int, width: int, crop: int) -> list[tuple[int, int]]:
    """Distinct ``(top, left)`` of the centre, the four corners and the four side middles of a ``crop`` window on a
    ``height x width`` image (centre first, then corners, then side middles; coinciding windows counted once)."""
    if height < crop or width < crop:
        raise ValueError(f"image {height}x{width} is smaller than the view {crop}")
    b, r = height - crop, width - crop
    order = [(b // 2, r // 2), (0, 0), (0, r), (b, 0), (b, r), (0, r // 2), (b, r // 2), (b // 2, 0), (b // 2, r)]
    return list(dict.fromkeys(order))


def ten_views(height: int, width: int, scale: int = 256, crop: int = 224) -> list[View]:
    """The standard 10 views of an image of ``height x width``: the four corners and the centre of the image resized
    to shorter side ``scale``, and the same on the mirrored image (Tables 2, 4)."""
    h, w = resized_size(height, width, scale)
    positions = five_positions(h, w, crop)
    return [View(scale, t, left, crop, flip) for flip in (False, True) for t, left in positions]


def multiview(
    height: int, width: int, scales: Sequence[int] = MULTIVIEW_SCALES, crop: int = 224, flips: bool = True
) -> list[View]:
    """Table 4's multi-view test of an image of ``height x width``: the distinct nine-position views at every scale,
    with their mirrored copies (96 for a non-square image at the paper's six scales)."""
    views = []
    for s in scales:
        h, w = resized_size(height, width, int(s))
        for flip in (False, True) if flips else (False,):
            views += [View(int(s), t, left, crop, flip) for t, left in nine_positions(h, w, crop)]
    return views


def multiview_scales(crop: int, scales: Sequence[int] | None = None) -> tuple[int, ...]:
    """The multi-view scales for ``crop``-pixel views: ``scales`` as given, or the paper's six for its 224-pixel views
    scaled by ``crop / 224`` (half up; the embedded 112-pixel views: 112, 128, 150, 180, 224, 280)."""
    if scales is not None:
        out = tuple(int(s) for s in scales)
    else:
        out = tuple(int(s * crop / 224 + 0.5) for s in MULTIVIEW_SCALES)
    if not out or min(out) < crop:
        raise ValueError(f"multi-view scales must be a non-empty list of sizes >= the view ({crop}), got {list(out)}")
    return out


def map_view_windows(
    name: str, height: int, width: int, crop: int, ten_scale: int, scales: Sequence[int]
) -> list[View]:
    """The windows of map view ``name`` (one of :data:`MAP_VIEWS`) on an image of ``height x width``: the 10 views at
    ``ten_scale`` for ``"10view_maps"``, the multi-view windows at ``scales`` otherwise (the full views of
    ``"multiview_full"`` are whole maps, not windows)."""
    if name not in MAP_VIEWS:
        raise ValueError(f"map view must be one of {MAP_VIEWS}, got {name!r}")
    if name == "10view_maps":
        return ten_views(height, width, ten_scale, crop)
    return multiview(height, width, scales, crop)
