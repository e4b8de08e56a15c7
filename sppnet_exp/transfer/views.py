"""The image views of Tables 6-7 (paper section 3.2): what part of an image, at what size, a feature is taken from.

* ``crop``: the image resized so its shorter side is ``s``, then its centre ``s x s`` crop (Table 6/7 (a), (b));
* ``full``: the whole image resized so its shorter side is ``s`` (Table 6/7 (c)-(e); only an SPP net takes it);
* ``warp``: the whole image resized to ``s x s``, aspect ratio lost (section 3.3: 89.91% vs 91.44% full).

Normalised as the nets were trained (:func:`sppnet_exp.data.transforms.normalize`).
"""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as F

from sppnet_exp.data.transforms import normalize, resize_short

__all__ = ["VIEWS", "view"]

VIEWS = ("crop", "full", "warp")


def view(img: torch.Tensor, kind: str, size: int) -> torch.Tensor:
    """``uint8 [3,H,W]`` → the normalised float ``[3,h,w]`` view ``kind`` at size ``size`` (s)."""
    if kind not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {kind!r}")
    if kind == "warp":
        out = F.resize(img, [size, size], antialias=True)
    else:
        out = resize_short(img, size)
        if kind == "crop":
            h, w = out.shape[-2:]
            top, left = (h - size) // 2, (w - size) // 2
            out = out[:, top : top + size, left : left + size]
    return normalize(out.contiguous())
