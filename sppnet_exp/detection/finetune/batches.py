"""Mini-batches of window features for fc fine-tuning: pooled on the fly from conv5 (SPP-net), or read from
precomputed per-image rows (the optional per-window cache, and the tests).

:class:`PooledWindows` is SPP-net's: it follows the authors' ``spp_finetune_voc.m`` — a chunk of iterations
(``steps_per_chunk``, their 500) draws its windows from a random subset of ``images_per_chunk`` training images,
whose conv5 maps (every scale, and the mirrored image's when ``flip``) are read once per chunk; each sampled
window is pooled at a uniformly random scale of the cache's (``random_scale``, their ``random_scale = 1``) or at
the one the scale rule picks, from the mirrored image with probability 0.5 (``flip``, ``Script_spp_voc.m``:
``flip_finetune``). Pooling runs in the DataLoader workers through the one pooling path
(:class:`~sppnet_exp.detection.features.pooling.WindowPooler`), so the training step never waits on reads.

Every stream depends on its seed, the DDP rank and the worker id only; worker ``w`` of ``n`` makes its share of
the ``steps``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

from sppnet_exp.detection.features.conv_cache import ConvCache
from sppnet_exp.detection.features.pooling import PoolingSpec, WindowPooler
from sppnet_exp.detection.finetune.sampling import WindowSampler
from sppnet_exp.detection.structures.boxes import flip_boxes
from sppnet_exp.detection.structures.roidb import ImageWindows
from sppnet_exp.utils.dist import current_rank

__all__ = ["CachedRows", "FineTuneWindows", "PooledWindowBatches", "PooledWindows", "gather_rows"]

PooledFn = Callable[[int], np.ndarray]


def _worker_share(steps: int | None) -> tuple[int, int | None]:
    """(worker id, this worker's number of steps) for a stream of ``steps`` batches."""
    info = get_worker_info()
    wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
    return wid, None if steps is None else steps // nw + (1 if wid < steps % nw else 0)


def gather_rows(pooled: PooledFn, img: np.ndarray, row: np.ndarray, sizes: Sequence[int] | None = None) -> np.ndarray:
    """float32 (B, D) features of (image, row) pairs; each image is read once, rows in increasing order."""
    out: np.ndarray | None = None
    for i in np.unique(img):
        pos = np.flatnonzero(img == i)
        order = np.argsort(row[pos], kind="stable")
        arr = pooled(int(i))
        if sizes is not None and arr.shape[0] != sizes[i]:
            raise ValueError(f"pooled({i}): {arr.shape[0]} rows, the roidb has {sizes[i]} windows")
        vals = np.asarray(arr[row[pos][order]], dtype=np.float32)
        if out is None:
            out = np.empty((len(img), vals.shape[1]), dtype=np.float32)
        out[pos[order]] = vals
    return out if out is not None else np.zeros((0, 0), np.float32)


class FineTuneWindows(IterableDataset):
    """Endless (or ``steps``-long) stream of ``(features float32 (B, D), labels int64 (B,))`` from precomputed
    rows: ``pooled(i)`` is image i's (K_i, D) matrix. Use with ``DataLoader(batch_size=None)``. Worker w of rank r
    draws with seed ``seed + 1000 r + w``."""

    def __init__(
        self,
        roidb: Sequence[ImageWindows],
        pooled: PooledFn,
        sampler: WindowSampler,
        steps: int | None = None,
        seed: int = 0,
    ) -> None:
        self.pooled, self.sampler, self.steps, self.seed = pooled, sampler, steps, seed
        self.sizes = [len(w) for w in roidb]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        wid, n = _worker_share(self.steps)
        self.sampler.reseed(self.seed + 1000 * current_rank() + wid)
        done = 0
        while n is None or done < n:
            img, row, lab = self.sampler.sample()
            x = gather_rows(self.pooled, img, row, self.sizes)
            yield torch.from_numpy(x), torch.from_numpy(lab)
            done += 1


class CachedRows:
    """A batch source over precomputed per-image rows (``pooled(i)`` -> (K_i, D))."""

    def __init__(self, pooled: PooledFn) -> None:
        self.pooled = pooled

    def dim(self, roidb: Sequence[ImageWindows]) -> int:
        return int(self.pooled(0).shape[1])

    def batches(
        self,
        roidb: Sequence[ImageWindows],
        images: np.ndarray,
        sampler_kw: Mapping[str, Any],
        steps: int | None,
        seed: int,
        train: bool = True,
    ) -> IterableDataset:
        sampler = WindowSampler(roidb, images=images, seed=seed, **sampler_kw)
        return FineTuneWindows(roidb, self.pooled, sampler, steps=steps, seed=seed)


class PooledWindowBatches(IterableDataset):
    """``(features float32 (B, D), labels (B,))`` pooled on the fly from conv5 (see the module docstring)."""

    def __init__(
        self,
        cache: ConvCache,
        roidb: Sequence[ImageWindows],
        spec: PoolingSpec,
        images: np.ndarray,
        sampler_kw: Mapping[str, Any],
        steps: int | None,
        seed: int,
        random_scale: bool,
        flip: bool,
        images_per_chunk: int,
        steps_per_chunk: int,
    ) -> None:
        if images_per_chunk < 1 or steps_per_chunk < 1:
            raise ValueError(f"PooledWindowBatches: bad chunk {images_per_chunk} images x {steps_per_chunk} steps")
        self.cache, self.roidb, self.spec = cache, roidb, spec
        self.images = np.asarray(images, dtype=np.int64)
        self.sampler_kw, self.steps, self.seed = dict(sampler_kw), steps, int(seed)
        self.random_scale, self.flip = bool(random_scale), bool(flip)
        self.images_per_chunk, self.steps_per_chunk = int(images_per_chunk), int(steps_per_chunk)
        usable = [i for i in self.images if len(roidb[i])]
        if not usable:
            raise ValueError("PooledWindowBatches: no training image has windows")

    def _chunk(self, rng: np.random.Generator) -> tuple[WindowSampler, dict[tuple[int, bool], list[Tensor]]]:
        """A random image subset (at least one with a foreground window), its sampler and its maps."""
        k = min(self.images_per_chunk, len(self.images))
        for _ in range(100):
            picked = np.sort(rng.choice(self.images, size=k, replace=False))
            try:
                sampler = WindowSampler(self.roidb, images=picked, seed=int(rng.integers(2**31)), **self.sampler_kw)
            except ValueError:  # no foreground or background window in this subset: draw another
                continue
            if sampler.num_fg or k == len(self.images):
                break
        maps: dict[tuple[int, bool], list[Tensor]] = {}
        for i in picked:
            for f in (False, True) if self.flip else (False,):
                arrays = self.cache.maps(self.roidb[int(i)].image_id, self.spec.scales, flip=f)
                maps[(int(i), f)] = [torch.from_numpy(a) for a in arrays]
        return sampler, maps

    def draw(self, sampler: WindowSampler, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """One batch's windows: (image, row, label, scale index or -1 for the rule's, flipped) arrays."""
        img, row, lab = sampler.sample()
        n_scales = len(self.spec.scales)
        flips = rng.random(len(img)) < 0.5 if self.flip else np.zeros(len(img), dtype=bool)
        if self.random_scale and n_scales > 1:
            scales = rng.integers(n_scales, size=len(img))
        else:
            scales = np.full(len(img), -1, dtype=np.int64)
        return img, row, lab, scales, flips

    def pool_draws(
        self,
        pooler: WindowPooler,
        maps: dict[tuple[int, bool], list[Tensor]],
        draws: tuple[np.ndarray, ...],
        out: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """``(features (B, D), labels (B,))`` of drawn windows: each pooled from its image's maps (the mirrored
        image's, with the mirrored box, when flipped) at its scale (or the rule's)."""
        img, row, lab, scales, flips = draws
        for i, f in sorted({(int(a), bool(b)) for a, b in zip(img, flips, strict=True)}):
            sel = np.flatnonzero((img == i) & (flips == f))
            w = self.roidb[i]
            boxes = flip_boxes(w.boxes[row[sel]], w.width) if f else w.boxes[row[sel]]
            idx = scales[sel] if scales[sel[0]] >= 0 else None
            out[torch.from_numpy(sel)] = pooler.pool(maps[(i, f)], boxes, w.width, w.height, idx)
        return out.clone(), torch.from_numpy(lab)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if get_worker_info() is not None:  # one thread per worker: the workers are the parallelism
            torch.set_num_threads(1)
        wid, n = _worker_share(self.steps)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, current_rank(), wid]))
        pooler = WindowPooler(self.spec)
        done = 0
        out: Tensor | None = None
        while n is None or done < n:
            sampler, maps = self._chunk(rng)
            if out is None:
                channels = int(next(iter(maps.values()))[0].shape[0])
                out = torch.empty((sampler.batch_size, pooler.output_dim(channels)), dtype=torch.float32)
            for _ in range(self.steps_per_chunk):
                if n is not None and done >= n:
                    break
                yield self.pool_draws(pooler, maps, self.draw(sampler, rng), out)
                done += 1


class PooledWindows:
    """SPP-net's batch source: windows pooled on the fly from the conv5 cache (:class:`PooledWindowBatches`).

    Validation batches (held-out images) use the rule's scale and no flip, as the authors' do.
    """

    def __init__(
        self,
        cache: ConvCache,
        spec: PoolingSpec,
        random_scale: bool = True,
        flip: bool = True,
        images_per_chunk: int = 160,
        steps_per_chunk: int = 500,
    ) -> None:
        self.cache, self.spec = cache, spec
        self.random_scale, self.flip = bool(random_scale), bool(flip)
        self.images_per_chunk, self.steps_per_chunk = int(images_per_chunk), int(steps_per_chunk)

    def dim(self, roidb: Sequence[ImageWindows]) -> int:
        channels = int(self.cache.get(roidb[0].image_id, self.spec.scales[0]).shape[0])
        return WindowPooler(self.spec).output_dim(channels)

    def batches(
        self,
        roidb: Sequence[ImageWindows],
        images: np.ndarray,
        sampler_kw: Mapping[str, Any],
        steps: int | None,
        seed: int,
        train: bool = True,
    ) -> IterableDataset:
        return PooledWindowBatches(
            self.cache,
            roidb,
            self.spec,
            images,
            sampler_kw,
            steps,
            seed,
            random_scale=self.random_scale and train,
            flip=self.flip and train,
            images_per_chunk=self.images_per_chunk,
            steps_per_chunk=self.steps_per_chunk,
        )
