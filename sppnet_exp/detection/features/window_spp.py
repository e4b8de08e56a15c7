"""Spatial pyramid pooling of many windows of one conv map in one batched computation.

Bins: the authors' rule (``spm_pool_caffe_mex.cpp``, = ``adaptive_max_pool2d`` = :func:`spp_bins`): on a window of
``w`` cells starting at ``left``, bin ``i`` of ``n`` is ``[left + floor(i w/n), left + ceil((i+1) w/n))``.

Method: a 2-D sparse table (range-max query). ``T[a, b, y, x, :]`` is the max over rows ``y .. y + 2^a - 1`` and
columns ``x .. x + 2^b - 1``; a bin of ``L_r x L_c`` cells with ``a = floor(log2 L_r)``, ``b = floor(log2 L_c)``
is the max of the four overlapping ``2^a x 2^b`` blocks anchored at its corners, each one gathered C-vector
(max is idempotent, so the overlap is harmless and the result is exact). Only the table depth needed by the
largest bin is built.

Coarser levels from finer ones: if ``n = g m`` then bin ``j`` of ``m`` is exactly the union of bins
``j g .. j g + g - 1`` of ``n``. The first of them starts at ``floor(j g w/n) = floor(j w/m)``, the last ends at
``ceil((j+1) g w/n) = ceil((j+1) w/m)``, and consecutive bins leave no gap (``ceil((i+1) w/n) >= floor((i+1)
w/n)``, the next start). The union of row-range x column-range products is the product of the unions, so the
max over a ``g x g`` group of level-``n`` bins is the level-``m`` bin, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from sppnet_exp.models.spp import SpatialPyramidPooling

__all__ = ["Scratch", "WindowSPP", "window_spp", "window_spp_reference"]


def _levels(levels: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(n) for n in levels)
    if not out or any(n < 1 for n in out):
        raise ValueError(f"window_spp: levels must be a non-empty sequence of positive ints, got {levels}")
    return out


def _cells(fmap: Tensor, cells: Tensor | np.ndarray) -> Tensor:
    if fmap.dim() != 3:
        raise ValueError(f"window_spp: fmap must be C x H x W, got shape {tuple(fmap.shape)}")
    c = torch.as_tensor(np.asarray(cells) if not isinstance(cells, Tensor) else cells)
    if c.numel() == 0:
        return torch.zeros(0, 4, dtype=torch.long, device=fmap.device)
    if c.dim() != 2 or c.shape[1] != 4:
        raise ValueError(f"window_spp: cells must have shape (K, 4), got {tuple(c.shape)}")
    if c.is_floating_point():
        raise ValueError("window_spp: cells must be integer (0-based inclusive left, top, right, bottom)")
    c = c.to(device=fmap.device, dtype=torch.long)
    _, h, w = fmap.shape
    left, top, right, bottom = c.unbind(1)
    bad = (left < 0) | (top < 0) | (right >= w) | (bottom >= h) | (left > right) | (top > bottom)
    if bool(bad.any()):
        k = int(torch.nonzero(bad)[0, 0])
        raise ValueError(
            f"window_spp: window {k} has cells {c[k].tolist()} outside the {h}x{w} map or with left>right / top>bottom"
        )
    return c


def _bins(start: Tensor, length: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """(K, n) bin starts and lengths for windows ``[start, start + length)`` (authors' floor/ceil rule)."""
    i = torch.arange(n, device=start.device)
    lo = (i[None, :] * length[:, None]) // n
    hi = -((-(i[None, :] + 1) * length[:, None]) // n)
    return start[:, None] + lo, hi - lo


def _log2_floor(x: Tensor) -> Tensor:
    """floor(log2(x)) for positive int64 tensors (exact)."""
    out = torch.zeros_like(x)
    y = x.clone()
    for shift in (32, 16, 8, 4, 2, 1):
        big = y >= (1 << shift)
        out += big * shift
        y = torch.where(big, y >> shift, y)
    return out


def _sparse_table(fmap: Tensor, depth_r: int, depth_c: int, table: Tensor) -> Tensor:
    """Fill ``table`` (depth_r, depth_c, H, W, C): ``T[a, b, y, x] = max(fmap[:, y:y+2^a, x:x+2^b])``.

    Anchors past the map edge (``y > H - 2^a`` or ``x > W - 2^b``) are never read; they hold the smaller block.
    """
    _, h, w = fmap.shape
    table[0, 0] = fmap.permute(1, 2, 0)
    for a in range(1, depth_r):
        half = 1 << (a - 1)
        torch.maximum(table[a - 1, 0, : h - half], table[a - 1, 0, half:], out=table[a, 0, : h - half])
        table[a, 0, h - half :] = table[a - 1, 0, h - half :]
    for b in range(1, depth_c):
        half = 1 << (b - 1)
        torch.maximum(table[:, b - 1, :, : w - half], table[:, b - 1, :, half:], out=table[:, b, :, : w - half])
        table[:, b, :, w - half :] = table[:, b - 1, :, w - half :]
    return table


class Scratch:
    """Named flat scratch tensors, grown on demand and reused (fresh large allocations cost page faults)."""

    def __init__(self) -> None:
        self.store: dict[tuple[str, torch.device, torch.dtype], Tensor] = {}

    def get(self, name: str, like: Tensor, *shape: int) -> Tensor:
        numel = int(np.prod(shape))
        key = (name, like.device, like.dtype)
        buf = self.store.get(key)
        if buf is None or buf.numel() < numel:
            buf = self.store[key] = like.new_empty(numel)
        return buf[:numel].view(*shape)


def _group_max(parent: Tensor, n: int, scratch: Scratch) -> Tensor:
    """(k, N, N, C) bins of level N -> (k, n, n, C) bins of level n (n divides N): max over g x g groups."""
    k, big, _, c = parent.shape
    g = big // n
    cols = parent.reshape(k * big * n, g, c)
    red = scratch.get("group", parent, k * big * n, c)
    torch.maximum(cols[:, 0], cols[:, 1], out=red)
    for j in range(2, g):
        torch.maximum(red, cols[:, j], out=red)
    rows = red.view(k * n, g, n * c)
    out = scratch.get(f"level{n}", parent, k * n, n * c)
    torch.maximum(rows[:, 0], rows[:, 1], out=out)
    for j in range(2, g):
        torch.maximum(out, rows[:, j], out=out)
    return out.view(k, n, n, c)


def _plan(levels: tuple[int, ...]) -> dict[int, int]:
    """For each distinct level (finest first), the finer level it is grouped from (itself when computed directly)."""
    plan: dict[int, int] = {}
    for n in sorted(set(levels), reverse=True):
        parents = [m for m in plan if m % n == 0]
        plan[n] = min(parents) if parents else n
    return plan


class WindowSPP:
    """Reusable :func:`window_spp` for fixed ``levels``; keeps its scratch buffers between calls (not thread-safe)."""

    def __init__(self, levels: Sequence[int] = (1, 2, 3, 6), chunk: int = 128) -> None:
        self.levels = _levels(levels)
        if chunk < 1:
            raise ValueError(f"window_spp: chunk must be positive, got {chunk}")
        self.chunk = int(chunk)
        self.plan = _plan(self.levels)
        self.direct = sorted(n for n in self.plan if self.plan[n] == n)
        self.scratch = Scratch()

    def output_dim(self, channels: int) -> int:
        """Pooled length for ``channels`` channels, ``channels * sum(n^2)``."""
        return channels * sum(n * n for n in self.levels)

    def single(self, window: Tensor) -> Tensor:
        """The pyramid of ONE window given as its own cells ``(C, h, w)``: the directly computed levels by
        ``adaptive_max_pool2d`` (the authors' bins), the others grouped from them as in :meth:`__call__`; no
        table is built (cheaper than the batched path for one or two windows on a map). Returns ``(D,)``."""
        if window.dim() != 3 or min(window.shape[1:]) < 1:
            raise ValueError(f"WindowSPP.single: window must be C x h x w with h, w >= 1, got {tuple(window.shape)}")
        c = window.shape[0]
        pooled: dict[int, Tensor] = {}
        for n in self.direct:
            pooled[n] = torch.nn.functional.adaptive_max_pool2d(window[None], n)[0]  # (C, n, n)
        for n, parent in self.plan.items():
            if parent != n:
                g = parent // n
                pooled[n] = pooled[parent].view(c, n, g, n, g).amax(dim=(2, 4))
        return torch.cat([pooled[n].reshape(-1) for n in self.levels])

    def __call__(self, fmap: Tensor, cells: Tensor | np.ndarray, out: Tensor | None = None) -> Tensor:
        """See :func:`window_spp`."""
        c = _cells(fmap, cells)
        channels, h, w = fmap.shape
        dim, k = self.output_dim(channels), c.shape[0]
        if out is None:
            out = fmap.new_empty((k, dim))
        elif tuple(out.shape) != (k, dim) or out.device != fmap.device or (k > 0 and out.stride(1) != 1):
            raise ValueError(f"window_spp: out must be a ({k}, {dim}) tensor on {fmap.device} with contiguous rows")
        if k == 0:
            return out
        left, top, right, bottom = c.unbind(1)
        width, height = right - left + 1, bottom - top + 1
        # Largest bin of any directly computed level: ceil(a/n) + 1 bounds a bin of n over a cells.
        max_r = min(h, max(int(torch.max(-((-height) // n))) + 1 for n in self.direct))
        max_c = min(w, max(int(torch.max(-((-width) // n))) + 1 for n in self.direct))
        depth_r, depth_c = max_r.bit_length(), max_c.bit_length()
        table = self.scratch.get("table", fmap, depth_r, depth_c, h, w, channels)
        table = _sparse_table(fmap, depth_r, depth_c, table).view(-1, channels)
        corners: dict[int, Tensor] = {}  # n -> (4, K, n*n): table rows of the four corner blocks of every bin
        for n in self.direct:
            r0, rl = _bins(top, height, n)
            c0, cl = _bins(left, width, n)
            a, b = _log2_floor(rl), _log2_floor(cl)  # (K, n)
            r1, c1 = r0 + rl - (1 << a), c0 + cl - (1 << b)
            base = (a[:, :, None] * depth_c + b[:, None, :]) * h  # (K, n, n)
            corners[n] = torch.stack(
                [((base + r[:, :, None]) * w + q[:, None, :]).view(k, n * n) for r in (r0, r1) for q in (c0, c1)]
            )
        offsets, pos = [], 0
        for n in self.levels:
            offsets.append((n, pos))
            pos += channels * n * n
        for s in range(0, k, self.chunk):
            e = min(k, s + self.chunk)
            kc = e - s
            pooled: dict[int, Tensor] = {}  # n -> (kc, n, n, C)
            for n in self.direct:
                idx = corners[n][:, s:e].reshape(4, kc * n * n)
                res = self.scratch.get(f"level{n}", fmap, kc * n * n, channels)
                got = self.scratch.get("gather", fmap, kc * n * n, channels)
                torch.index_select(table, 0, idx[0], out=res)
                for i in range(1, 4):
                    torch.index_select(table, 0, idx[i], out=got)
                    torch.maximum(res, got, out=res)
                pooled[n] = res.view(kc, n, n, channels)
            for n, parent in self.plan.items():
                if parent != n:
                    pooled[n] = _group_max(pooled[parent], n, self.scratch)
            for n, p in offsets:
                out[s:e, p : p + channels * n * n].view(kc, channels, n, n).copy_(pooled[n].permute(0, 3, 1, 2))
        return out


def window_spp(
    fmap: Tensor,
    cells: Tensor | np.ndarray,
    levels: Sequence[int] = (1, 2, 3, 6),
    chunk: int = 128,
    out: Tensor | None = None,
) -> Tensor:
    """Pool every window of ``fmap`` (C x H x W) into ``K x C * sum(n^2)`` (max, authors' bins).

    ``cells``: (K, 4) 0-based inclusive ``(left, top, right, bottom)`` inside the map. Per window the levels are
    concatenated in the given order, each flattened as (C, n, n): identical to
    ``SpatialPyramidPooling(levels)`` on ``fmap[:, top:bottom+1, left:right+1]``. The max is taken in ``fmap``'s
    dtype on its device; ``chunk`` windows are processed at a time (bounds the scratch memory). ``out`` (K x D,
    any float dtype, same device, contiguous rows) receives the result instead of a new tensor of ``fmap``'s dtype.
    """
    return WindowSPP(levels, chunk)(fmap, cells, out)


def window_spp_reference(fmap: Tensor, cells: Tensor | np.ndarray, levels: Sequence[int] = (1, 2, 3, 6)) -> Tensor:
    """Loop over windows: crop ``fmap[:, top:bottom+1, left:right+1]`` and apply ``SpatialPyramidPooling``."""
    levels = _levels(levels)
    c = _cells(fmap, cells)
    spp = SpatialPyramidPooling(levels)
    if c.shape[0] == 0:
        return fmap.new_zeros((0, spp.output_dim(fmap.shape[0])))
    rows = [spp(fmap[None, :, t : b + 1, lft : r + 1]) for lft, t, r, b in c.tolist()]
    return torch.cat(rows, dim=0)
