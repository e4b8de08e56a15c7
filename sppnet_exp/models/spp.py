"""Spatial pyramid pooling (SPP) layer and the one place that defines its bin rule.

Bin rule (authors' released code, ``spm_pool_caffe_mex.cpp``, and paper Appendix A): on an axis of
length ``a`` with ``n`` bins, bin ``i`` covers the half-open cell range ``[floor(i*a/n), ceil((i+1)*a/n))``.
This gives exactly ``n`` non-empty bins for every ``a >= 1`` (cells repeat when ``a < n``) and equals
PyTorch adaptive pooling.

The paper's section 2.3 instead describes each level as cuda-convnet sliding pooling with window
``ceil(a/n)`` and stride ``floor(a/n)``. That only yields ``n`` bins for some ``a`` (right for a=13 and
{6,3,2,1}; 9 bins for a=10, n=6; stride 0 for a<n), so it is offered as ``impl="cudaconvnet"`` and raises
wherever it would not give the n x n bins of the rule above.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SpatialPyramidPooling", "cudaconvnet_window", "spp_bins"]

_MODES = ("max", "avg")
_IMPLS = ("adaptive", "cudaconvnet")


def spp_bins(a: int, n: int) -> list[tuple[int, int]]:
    """Bins of one pyramid level on an axis of ``a`` cells: ``[(start, end), ...]``, 0-based, end exclusive.

    ``start = floor(i*a/n)``, ``end = ceil((i+1)*a/n)`` for ``i = 0..n-1`` (integer arithmetic, exact).
    """
    if a < 1 or n < 1:
        raise ValueError(f"spp_bins needs a >= 1 and n >= 1, got a={a}, n={n}")
    return [((i * a) // n, -((-(i + 1) * a) // n)) for i in range(n)]


def cudaconvnet_window(a: int, n: int) -> tuple[int, int]:
    """Paper's sliding level (window ``ceil(a/n)``, stride ``floor(a/n)``); raises unless it gives n bins.

    The level is accepted only when the plain sliding pooling yields exactly ``n`` windows that cover all
    ``a`` cells (otherwise it would silently drop cells or change the output length).
    """
    win, stride = -(-a // n), a // n
    if stride == 0:
        raise ValueError(
            f'impl="cudaconvnet" cannot pool a={a} cells into n={n} bins (stride floor(a/n)=0 as a < n); '
            'use impl="adaptive"'
        )
    count = (a - win) // stride + 1
    covered = (count - 1) * stride + win
    if count != n or covered != a:
        raise ValueError(
            f'impl="cudaconvnet" (window ceil(a/n)={win}, stride floor(a/n)={stride}) gives {count} bins '
            f'covering {covered} of a={a} cells, not n={n} bins covering all; use impl="adaptive" '
            "(the authors' bin rule)"
        )
    return win, stride


class SpatialPyramidPooling(nn.Module):
    """Pool an N x C x H x W map (any H, W >= 1) into N x (C * sum(n^2)) with one n x n grid per level.

    Each level is flattened as (C, row, col) and the levels are concatenated in the given order.
    ``mode`` is "max" (paper) or "avg"; ``impl`` is "adaptive" (authors' code, any size) or "cudaconvnet"
    (paper's window/stride formulation, raises ``ValueError`` for sizes where it does not give n x n bins).
    """

    def __init__(self, levels: Sequence[int] = (6, 3, 2, 1), mode: str = "max", impl: str = "adaptive") -> None:
        super().__init__()
        levels = tuple(int(n) for n in levels)
        if not levels or any(n < 1 for n in levels):
            raise ValueError(f"levels must be a non-empty sequence of positive ints, got {levels}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if impl not in _IMPLS:
            raise ValueError(f"impl must be one of {_IMPLS}, got {impl!r}")
        self.levels, self.mode, self.impl = levels, mode, impl

    @property
    def num_bins(self) -> int:
        """Total number of bins per channel, ``sum(n^2)``."""
        return sum(n * n for n in self.levels)

    def output_dim(self, channels: int) -> int:
        """Length of the pooled vector for a map with ``channels`` channels."""
        return channels * self.num_bins

    def pool_level(self, x: Tensor, n: int) -> Tensor:
        """One level: the ``n x n`` bins of ``x`` (N x C x H x W) as N x (C * n^2), the layout ``forward`` uses
        (the 6x6 level alone is the "pool5/7 (6x6)" feature of Tables 6-7)."""
        return self._pool_level(x, n).flatten(1)

    def _pool_level(self, x: Tensor, n: int) -> Tensor:
        if self.impl == "adaptive":
            pool = F.adaptive_max_pool2d if self.mode == "max" else F.adaptive_avg_pool2d
            return pool(x, n)
        (kh, sh), (kw, sw) = cudaconvnet_window(x.shape[-2], n), cudaconvnet_window(x.shape[-1], n)
        pool = F.max_pool2d if self.mode == "max" else F.avg_pool2d
        return pool(x, (kh, kw), (sh, sw))

    def forward(self, x: Tensor) -> Tensor:
        """Return the concatenated pyramid features, shape N x (C * sum(n^2))."""
        if x.dim() != 4:
            raise ValueError(f"SpatialPyramidPooling expects N x C x H x W, got shape {tuple(x.shape)}")
        if x.shape[-2] < 1 or x.shape[-1] < 1:
            raise ValueError(f"SpatialPyramidPooling needs H, W >= 1, got {tuple(x.shape)}")
        return torch.cat([self._pool_level(x, n).flatten(1) for n in self.levels], dim=1)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, mode={self.mode!r}, impl={self.impl!r}"
