"""Window features of a roidb, computed on the fly: what the SVM, box-regression and test stages read.

A :class:`WindowFeatures` gives the pool5 vectors of image ``i``'s roidb windows (all, or a selection) as float32
on its device, computed when asked — nothing per window is written to disk:

* :class:`SPPFeatures` (SPP-net): the image's conv5 maps are read from the :class:`~.conv_cache.ConvCache` and
  its windows pooled by the one pooling path (:class:`~.pooling.WindowPooler`) on the device;
* :class:`RCNNFeatures` (the baseline): the image is decoded, its windows warped with context on the device
  (:func:`~.warping.warp_windows`, batched ``roi_align``) and sent through the whole trunk and pool;
* :class:`CachedFeatures`: any of them behind the optional per-window cache (:mod:`.window_cache`).

:meth:`WindowFeatures.stream` iterates over images with their inputs (conv5 maps read from disk, or decoded
images) loaded by DataLoader workers, so reading overlaps the device's work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from sppnet_exp.data.transforms import normalize
from sppnet_exp.detection.features.conv_cache import ConvCache
from sppnet_exp.detection.features.pooling import WindowPooler
from sppnet_exp.detection.features.warping import warp_windows
from sppnet_exp.detection.features.window_cache import WindowCache
from sppnet_exp.detection.structures.roidb import ImageWindows

__all__ = ["CachedFeatures", "RCNNFeatures", "SPPFeatures", "WindowFeatures"]

Selection = np.ndarray | None


class _Inputs(Dataset):
    """``load(i)`` for each requested image index, run in DataLoader workers."""

    def __init__(self, load: Callable[[int], Any], indices: Sequence[int]) -> None:
        self.load, self.indices = load, [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[int, Any]:
        return self.indices[k], self.load(self.indices[k])


def _as_is(item: Any) -> Any:
    """The sample unchanged (``batch_size=None``: no collation, arrays stay arrays)."""
    return item


class WindowFeatures:
    """Base of the feature sources: ``load(i)`` (host, picklable, may run in a worker) then ``compute(i,
    inputs, sel)`` (device). Subclasses set ``roidb``, ``device``, ``dim`` and ``workers``."""

    roidb: Sequence[ImageWindows]
    device: torch.device
    dim: int
    workers: int = 0

    def load(self, i: int) -> Any:
        raise NotImplementedError

    def compute(self, i: int, inputs: Any, sel: Selection = None) -> Tensor:
        raise NotImplementedError

    def rows(self, i: int, sel: Selection = None) -> Tensor:
        """(K, D) float32 pool5 of image i's windows (``sel``: indices into its roidb rows; None = all)."""
        return self.compute(i, self.load(i), sel)

    def stream(
        self, indices: Sequence[int], sel: Callable[[int], Selection] | None = None
    ) -> Iterator[tuple[int, Tensor]]:
        """``(i, rows(i, sel(i)))`` for ``indices`` in order, the inputs prefetched by ``workers`` processes."""
        indices = list(indices)
        if self.workers <= 0 or len(indices) < 2:
            for i in indices:
                yield i, self.rows(i, sel(i) if sel else None)
            return
        loader = DataLoader(
            _Inputs(self.load, indices), batch_size=None, collate_fn=_as_is, num_workers=self.workers, prefetch_factor=2
        )
        for i, inputs in loader:
            yield int(i), self.compute(int(i), inputs, sel(int(i)) if sel else None)


class SPPFeatures(WindowFeatures):
    """pool5 of roidb windows from the conv5 cache through :class:`~.pooling.WindowPooler` (windows at the scale
    the spec's rule picks)."""

    def __init__(
        self,
        cache: ConvCache,
        roidb: Sequence[ImageWindows],
        pooler: WindowPooler,
        device: str | torch.device = "cpu",
        workers: int = 0,
    ) -> None:
        missing = [s for s in pooler.spec.scales if s not in cache.scales]
        if missing:
            raise ValueError(f"SPPFeatures: scales {missing} are not in the conv cache {cache.dir} {cache.scales}")
        self.cache, self.roidb, self.pooler = cache, roidb, pooler
        self.device, self.workers = torch.device(device), int(workers)
        self._channels: int | None = None

    @property
    def dim(self) -> int:  # type: ignore[override]
        if self._channels is None:
            self._channels = int(self.cache.get(self.roidb[0].image_id, self.pooler.spec.scales[0]).shape[0])
        return self.pooler.output_dim(self._channels)

    def load(self, i: int) -> list[np.ndarray]:
        return self.cache.maps(self.roidb[i].image_id, self.pooler.spec.scales)

    def maps_on_device(self, maps: Sequence[np.ndarray]) -> list[Tensor]:
        return [torch.from_numpy(np.asarray(m)).to(self.device, non_blocking=True) for m in maps]

    def compute(self, i: int, inputs: list[np.ndarray], sel: Selection = None) -> Tensor:
        w = self.roidb[i]
        boxes = w.boxes if sel is None else w.boxes[sel]
        return self.pooler.pool(self.maps_on_device(inputs), boxes, w.width, w.height)

    def keys(self, i: int) -> np.ndarray:
        """(K, 5) ``(scale index, conv5 cells)`` of image i's windows (the authors' dedup of negatives)."""
        w = self.roidb[i]
        hw = [tuple(self.cache.get(w.image_id, s).shape[1:]) for s in self.pooler.spec.scales]
        return self.pooler.keys(w.boxes, w.width, w.height, hw)


class RCNNFeatures(WindowFeatures):
    """R-CNN pool5: every window warped to ``size`` with ``padding`` px of context on the device, then the
    model's trunk and pool (``batch_size`` windows at a time, eval mode, no grad)."""

    def __init__(
        self,
        model: torch.nn.Module,
        load_image: Callable[[int], Tensor],
        roidb: Sequence[ImageWindows],
        size: int,
        padding: int = 16,
        geometry: str = "paper",
        batch_size: int = 128,
        device: str | torch.device = "cpu",
        workers: int = 0,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.load_image, self.roidb = load_image, roidb
        self.size, self.padding, self.geometry = int(size), int(padding), geometry
        self.batch_size, self.workers = int(batch_size), int(workers)

    @property
    def dim(self) -> int:  # type: ignore[override]
        return int(self.model.pool.output_dim(self.model.out_channels))

    def load(self, i: int) -> Tensor:
        return self.load_image(i)

    @torch.no_grad()
    def compute(self, i: int, inputs: Tensor, sel: Selection = None) -> Tensor:
        boxes = self.roidb[i].boxes if sel is None else self.roidb[i].boxes[sel]
        x = normalize(inputs).to(self.device, non_blocking=True)
        out = torch.empty((len(boxes), self.dim), dtype=torch.float32, device=self.device)
        for s in range(0, len(boxes), self.batch_size):
            crops = warp_windows(x, boxes[s : s + self.batch_size], self.size, self.padding, self.geometry)
            out[s : s + len(crops)] = self.model.pool(self.model.features(crops)).flatten(1).float()
        return out


class CachedFeatures(WindowFeatures):
    """``inner``'s features of every roidb window, computed once into a :class:`~.window_cache.WindowCache`."""

    def __init__(self, inner: WindowFeatures, cache: WindowCache, progress: bool = False) -> None:
        self.inner, self.cache, self.roidb = inner, cache, inner.roidb
        self.device, self.workers = inner.device, 0
        ids = [w.image_id for w in self.roidb]
        stream = iter(inner.stream([i for i, image_id in enumerate(ids) if not cache.has(image_id)]))
        self.stats = cache.build(len(ids), ids, lambda i: _next_rows(stream, i), progress=progress)

    @property
    def dim(self) -> int:  # type: ignore[override]
        return int(self.cache.manifest()["dim"])

    def load(self, i: int) -> np.ndarray:
        return self.cache.get(i)

    def compute(self, i: int, inputs: np.ndarray, sel: Selection = None) -> Tensor:
        rows = np.asarray(inputs if sel is None else inputs[sel], dtype=np.float32)
        return torch.from_numpy(rows).to(self.device)


def _next_rows(stream: Iterator[tuple[int, Tensor]], i: int) -> Tensor:
    """The next item of an in-order stream, checked to be image i (the window cache builds in order)."""
    for j, rows in stream:
        if j == i:
            return rows
    raise RuntimeError(f"feature stream ended before image {i}")
