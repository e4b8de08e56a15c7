"""Foreground/background window pools over a roidb and seeded mini-batch draws (paper §4.1, ``spp_finetune_voc.m``).

A batch holds ``batch_size`` windows (128), ``fg_fraction`` (25%) foreground — max IoU with a GT box >= 0.5,
labelled with that box's class, GT rows included — and the rest background, max IoU in [0.1, 0.5), label 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sppnet_exp.detection.structures.roidb import ImageWindows

__all__ = ["WindowSampler"]


class _Cycler:
    """Endless draws from range(n): walk a seeded permutation, reshuffle when it runs out."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.n, self.rng = n, rng
        self.perm = rng.permutation(n)
        self.pos = 0

    def take(self, k: int) -> np.ndarray:
        out = []
        while k > 0:
            if self.pos == self.n:
                self.perm, self.pos = self.rng.permutation(self.n), 0
            m = min(k, self.n - self.pos)
            out.append(self.perm[self.pos : self.pos + m])
            self.pos += m
            k -= m
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


class WindowSampler:
    """Foreground/background window pools over a roidb and seeded mini-batch draws.

    Each batch takes ``round(fg_fraction * batch_size)`` fg windows (fewer when the whole pool is smaller, the rest
    filled with bg) and bg for the remainder; with no bg at all the batch is all fg. Each pool is walked through a
    random permutation, reshuffled when used up, so windows repeat only across cycles.
    """

    def __init__(
        self,
        roidb: Sequence[ImageWindows],
        batch_size: int = 128,
        fg_fraction: float = 0.25,
        fg_thresh: float = 0.5,
        bg_thresh: tuple[float, float] = (0.1, 0.5),
        images: Sequence[int] | None = None,
        seed: int = 0,
    ) -> None:
        if batch_size < 1 or not 0 <= fg_fraction <= 1:
            raise ValueError(f"WindowSampler: bad batch_size {batch_size} or fg_fraction {fg_fraction}")
        self.batch_size = batch_size
        self.fg_per_batch = int(round(fg_fraction * batch_size))
        fg_img, fg_row, fg_lab, bg_img, bg_row = [], [], [], [], []
        for i in range(len(roidb)) if images is None else images:
            w = roidb[i]
            mo, mc = w.max_overlaps, w.max_classes
            fg = np.flatnonzero(mo >= fg_thresh)
            bg = np.flatnonzero((mo >= bg_thresh[0]) & (mo < bg_thresh[1]))
            fg_img.append(np.full(len(fg), i, np.int64))
            fg_row.append(fg)
            fg_lab.append(mc[fg])
            bg_img.append(np.full(len(bg), i, np.int64))
            bg_row.append(bg)
        cat = lambda parts: np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)  # noqa: E731
        self.fg_img, self.fg_row, self.fg_label = cat(fg_img), cat(fg_row), cat(fg_lab)
        self.bg_img, self.bg_row = cat(bg_img), cat(bg_row)
        if len(self.fg_img) == 0 and len(self.bg_img) == 0:
            raise ValueError("WindowSampler: no foreground or background windows in the roidb")
        if len(self.fg_img) and self.fg_label.min() < 1:
            raise ValueError("WindowSampler: a foreground window has no class (overlaps inconsistent)")
        self.reseed(seed)

    @property
    def num_fg(self) -> int:
        return len(self.fg_img)

    @property
    def num_bg(self) -> int:
        return len(self.bg_img)

    def reseed(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self._fg = _Cycler(self.num_fg, rng) if self.num_fg else None
        self._bg = _Cycler(self.num_bg, rng) if self.num_bg else None

    def composition(self) -> tuple[int, int]:
        """(fg, bg) windows per batch."""
        if self.num_bg == 0:
            return self.batch_size, 0
        n_fg = min(self.fg_per_batch, self.num_fg)
        return n_fg, self.batch_size - n_fg

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One batch: (image index, row index, label) arrays, fg first."""
        n_fg, n_bg = self.composition()
        f = self._fg.take(n_fg) if n_fg else np.zeros(0, np.int64)
        b = self._bg.take(n_bg) if n_bg else np.zeros(0, np.int64)
        img = np.concatenate([self.fg_img[f], self.bg_img[b]])
        row = np.concatenate([self.fg_row[f], self.bg_row[b]])
        lab = np.concatenate([self.fg_label[f], np.zeros(len(b), np.int64)])
        return img, row, lab
