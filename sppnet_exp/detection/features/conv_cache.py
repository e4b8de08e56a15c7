"""Convolutions once per image: a conv5 cache over scales, window pooling from it and a pool5 cache.

* :class:`ConvCache`: conv maps per image and scale as float16 ``<root>/<tag>/s<scale>/<image_id>.npy``, written
  atomically (temp file + ``os.replace``), read memory-mapped; a half-built cache resumes where it stopped.
* :func:`build_conv_cache`: fills it with a Lightning predict loop (:class:`ConvFeatureWriter`), so under DDP each
  rank computes and writes its shard of the images; per-tag timing goes to ``meta.json``.
* :class:`SPPPooledSource`: ``(image index, boxes) -> pool5`` per window: scale choice, box scaling, window ->
  cells, batched window SPP on that scale's map (:mod:`.mapping`, :mod:`.window_spp`).
* :class:`PooledCache`: per-image pool5 matrices (K, D) float16 ``.npy`` built from any source, resumable.

Image preparation (authors' ``spp_features_convX.m``): shorter side := scale, bilinear, no antialiasing
(``interpolate(..., align_corners=False, antialias=False)``), then the network's input normalisation. The image is
normalised before it is resized (on the host, before the device transfer): bilinear weights sum to one, so this
equals normalising the resized image, up to float rounding.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from sppnet_exp.data.images import decode_file
from sppnet_exp.data.transforms import normalize
from sppnet_exp.detection.features.mapping import RFGeometry, choose_scales, map_windows, resized_hw, scale_boxes
from sppnet_exp.detection.features.window_spp import Scratch, WindowSPP
from sppnet_exp.utils.io import atomic_write_json, read_json

__all__ = [
    "ConvCache",
    "ConvFeatureWriter",
    "ImageItems",
    "PooledCache",
    "SPPPooledSource",
    "build_conv_cache",
]

_BAD_ID = re.compile(r"[/\\\x00]")


def _check_id(image_id: str) -> str:
    image_id = str(image_id)
    if not image_id or image_id.startswith(".") or _BAD_ID.search(image_id):
        raise ValueError(f"image id {image_id!r} cannot be used as a cache file name")
    return image_id


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """``np.save`` to a temp file beside ``path`` then ``os.replace``: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"cache file {path} does not exist (build the cache first)")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"cache file {path} is not a readable .npy array: {exc}") from exc


# --- conv5 cache ---------------------------------------------------------------------------------------------------


class ConvCache:
    """Conv maps (C, h, w) float16 per image and scale under ``<root>/<tag>/s<scale>/<image_id>.npy``."""

    def __init__(self, root: str | Path, scales: Sequence[int], tag: str) -> None:
        self.scales = tuple(int(s) for s in scales)
        if not self.scales or any(s < 2 for s in self.scales):
            raise ValueError(f"ConvCache: scales must be a non-empty list of sizes >= 2, got {list(scales)}")
        self.tag = _check_id(tag)
        self.dir = Path(root) / self.tag

    def path(self, image_id: str, scale: int) -> Path:
        """File of one image's map at one scale."""
        return self.dir / f"s{int(scale)}" / f"{_check_id(image_id)}.npy"

    def has(self, image_id: str, scales: Sequence[int] | None = None) -> bool:
        """All scales (default: the cache's) of the image are stored."""
        return all(self.path(image_id, s).is_file() for s in (self.scales if scales is None else scales))

    def missing(self, image_ids: Sequence[str], scales: Sequence[int] | None = None) -> list[str]:
        """Ids (in order) that lack at least one of the scales (default: the cache's)."""
        return [i for i in image_ids if not self.has(i, scales)]

    def put(self, image_id: str, scale: int, fmap: Tensor | np.ndarray) -> Path:
        """Store a (C, h, w) map as float16 (atomic)."""
        arr = fmap.detach().to("cpu", torch.float16).numpy() if isinstance(fmap, Tensor) else np.asarray(fmap)
        if arr.ndim != 3:
            raise ValueError(f"ConvCache.put: map of {image_id} at scale {scale} must be C x h x w, got {arr.shape}")
        path = self.path(image_id, scale)
        _save_npy_atomic(path, np.ascontiguousarray(arr, dtype=np.float16))
        return path

    def get(self, image_id: str, scale: int) -> np.ndarray:
        """The (C, h, w) float16 map, memory-mapped read-only."""
        if int(scale) not in self.scales:
            raise ValueError(f"ConvCache {self.dir}: scale {scale} is not one of {self.scales}")
        arr = _load_npy(self.path(image_id, scale))
        if arr.ndim != 3:
            raise ValueError(f"cache file {self.path(image_id, scale)} holds shape {arr.shape}, expected C x h x w")
        return arr

    def build(self, items: Sequence[tuple[str, str | Path]], features: nn.Module, **kwargs: Any) -> dict[str, Any]:
        """Fill the cache for ``(image_id, path)`` items: :func:`build_conv_cache` (same keyword arguments)."""
        return build_conv_cache(self, items, features, **kwargs)

    @property
    def meta_path(self) -> Path:
        return self.dir / "meta.json"

    def meta(self) -> dict[str, Any]:
        """Contents of ``meta.json`` (empty dict before the first build)."""
        return read_json(self.meta_path) if self.meta_path.is_file() else {}

    def record_run(self, run: dict[str, Any]) -> dict[str, Any]:
        """Append a build run's timing to ``meta.json`` (atomic) and update the totals."""
        meta = self.meta()
        runs = [*meta.get("runs", []), run]
        images = sum(r["images"] for r in runs)
        conv = sum(r["conv_seconds"] for r in runs)
        meta.update(
            tag=self.tag,
            scales=list(self.scales),
            runs=runs,
            images_computed=images,
            conv_seconds=conv,
            conv_seconds_per_image=conv / images if images else None,
        )
        atomic_write_json(self.meta_path, meta)
        return meta


class ImageItems(Dataset):
    """``(index, uint8 image [3, H, W])`` for a list of ``(image_id, path)``; ``flip`` mirrors each image."""

    def __init__(self, items: Sequence[tuple[str, str | Path]], flip: bool = False) -> None:
        self.items = [(_check_id(i), Path(p)) for i, p in items]
        self.flip = flip

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, Tensor]:
        img = decode_file(self.items[index][1])
        return index, img.flip(-1) if self.flip else img


class ConvFeatureWriter(L.LightningModule):
    """Predict-only module: for each image (batch of 1) and scale, resize, run ``features`` and store the map.

    Only the trunk runs (eval mode, no grad); ``predict_step`` returns the number of maps written. Per-rank times
    are summed over ranks at the end of the epoch and rank 0 records them in the cache's ``meta.json``.
    """

    def __init__(
        self, features: nn.Module, cache: ConvCache, image_ids: Sequence[str], scales: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        self.features = features
        self.cache = cache
        self.image_ids = list(image_ids)
        self.scales = _check_scales(cache, scales)
        self._times = [0.0, 0.0, 0.0]  # images, conv seconds, total seconds

    def on_predict_start(self) -> None:
        self._times = [0.0, 0.0, 0.0]
        self.features.eval()

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        index, img = batch
        return index, normalize(img)  # on the host, before the device transfer (see the module docstring)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0) -> int:
        index, img = batch
        if img.dim() != 4 or img.shape[0] != 1:
            raise ValueError(f"ConvFeatureWriter expects batches of one image, got shape {tuple(img.shape)}")
        image_id = self.image_ids[int(index[0])]
        start = time.perf_counter()
        conv = 0.0
        h, w = img.shape[-2:]
        for scale in self.scales:
            x = F.interpolate(img, size=resized_hw(h, w, scale), mode="bilinear", align_corners=False, antialias=False)
            self._sync()
            t0 = time.perf_counter()
            fmap = self.features(x)[0]
            self._sync()
            conv += time.perf_counter() - t0
            self.cache.put(image_id, scale, fmap)
        self._times[0] += 1
        self._times[1] += conv
        self._times[2] += time.perf_counter() - start
        return len(self.scales)  # maps written (not collected: build_conv_cache predicts without returns)

    def on_predict_epoch_end(self) -> None:
        totals = self.trainer.strategy.reduce(
            torch.tensor(self._times, dtype=torch.float64, device=self.device), reduce_op="sum"
        )
        images, conv, total = (float(v) for v in totals.cpu())
        if self.trainer.is_global_zero and images > 0:
            self.cache.record_run(
                {
                    "images": int(images),
                    "conv_seconds": conv,
                    "seconds": total,
                    "conv_seconds_per_image": conv / images,
                    "seconds_per_image": total / images,
                    "device": str(self.device),
                    "world_size": int(self.trainer.world_size),
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                }
            )


def _check_scales(cache: ConvCache, scales: Sequence[int] | None) -> tuple[int, ...]:
    out = cache.scales if scales is None else tuple(int(s) for s in scales)
    unknown = [s for s in out if s not in cache.scales]
    if unknown or not out:
        raise ValueError(f"scales {list(out)} must be a non-empty subset of the conv cache's {list(cache.scales)}")
    return out


def build_conv_cache(
    cache: ConvCache,
    items: Sequence[tuple[str, str | Path]],
    features: nn.Module,
    scales: Sequence[int] | None = None,
    trainer: L.Trainer | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
    num_workers: int = 0,
    flip: bool = False,
) -> dict[str, Any]:
    """Compute the maps (at ``scales``, default all of the cache's) of the ``(image_id, path)`` items not yet in
    ``cache`` with ``Trainer.predict``.

    Pass a ``trainer`` or ``trainer_kwargs`` (e.g. ``strategy="ddp", devices=4``: the distributed sampler splits
    the images over ranks and every rank writes its own). Returns ``computed`` / ``reused`` counts and ``seconds``.
    ``features`` is moved to the trainer's device and put in eval mode. ``flip`` mirrors the images (keep such
    maps under their own tag).
    """
    scales = _check_scales(cache, scales)
    todo_ids = set(cache.missing([i for i, _ in items], scales))
    todo = [(i, p) for i, p in items if i in todo_ids]
    stats: dict[str, Any] = {"computed": len(todo), "reused": len(items) - len(todo), "seconds": 0.0}
    if not todo:
        return stats
    if trainer is None:
        kwargs = {
            "accelerator": "auto",
            "devices": 1,
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
        }
        trainer = L.Trainer(**{**kwargs, **(trainer_kwargs or {})})
    dataset = ImageItems(todo, flip=flip)
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=num_workers)
    module = ConvFeatureWriter(features, cache, [i for i, _ in dataset.items], scales)
    start = time.perf_counter()
    trainer.predict(module, dataloaders=loader, return_predictions=False)
    stats["seconds"] = time.perf_counter() - start
    return stats


# --- pooling windows from the conv cache -------------------------------------------------------------------------


class SPPPooledSource:
    """pool5 of image windows from a :class:`ConvCache` (one scale per window, batched per scale).

    ``image_meta[index] = (image_id, width, height)`` of the original image; boxes are (K, 4) 1-based on it.
    ``scale_rule`` / ``target`` / ``sz_conv`` choose the scale (:func:`.mapping.choose_scales`, stride from
    ``geom``), ``mapping_rule`` / ``offset`` map the scaled window to cells (:func:`.mapping.map_windows`).
    The max is taken in the cache's float16 on ``device`` (exact) and returned as ``dtype``. With ``reuse_out``
    every call returns a view of one internal buffer that the next call overwrites (for streaming to disk, e.g.
    :class:`PooledCache`; saves the page faults of a fresh K x D tensor per image).
    """

    def __init__(
        self,
        cache: ConvCache,
        image_meta: Sequence[tuple[str, int, int]],
        scales: Sequence[int],
        geom: RFGeometry,
        levels: Sequence[int] = (1, 2, 3, 6),
        mapping_rule: str = "paper",
        scale_rule: str = "paper",
        target: int = 224,
        sz_conv: int = 13,
        offset: float = 6.5,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        chunk: int = 128,
        reuse_out: bool = False,
    ) -> None:
        self.cache = cache
        self.image_meta = [(_check_id(i), int(w), int(h)) for i, w, h in image_meta]
        self.scales = tuple(int(s) for s in scales)
        unknown = [s for s in self.scales if s not in cache.scales]
        if unknown:
            raise ValueError(f"SPPPooledSource: scales {unknown} are not in the conv cache {cache.dir} {cache.scales}")
        self.geom, self.mapping_rule, self.scale_rule = geom, mapping_rule, scale_rule
        self.target, self.sz_conv, self.offset = int(target), int(sz_conv), float(offset)
        self.dtype, self.device = dtype, torch.device(device)
        self.pooler = WindowSPP(levels, chunk)
        self.levels = self.pooler.levels
        self.reuse_out = reuse_out
        self.scratch = Scratch()
        self._channels: int | None = None

    def __len__(self) -> int:
        return len(self.image_meta)

    @property
    def dim(self) -> int:
        """Pooled feature length ``C * sum(n^2)`` (reads the header of image 0's first map)."""
        if self._channels is None:
            image_id = self.image_meta[0][0]
            self._channels = int(self.cache.get(image_id, self.scales[0]).shape[0])
        return self.pooler.output_dim(self._channels)

    def choose(self, index: int, boxes: np.ndarray) -> np.ndarray:
        """(K,) index into ``scales`` of each window's scale."""
        _, width, height = self.image_meta[index]
        return choose_scales(
            boxes, width, height, self.scales, self.scale_rule, self.target, self.geom.stride, self.sz_conv
        )

    def _map(self, index: int, boxes: np.ndarray, scale_idx: int) -> tuple[np.ndarray, np.ndarray]:
        image_id, width, height = self.image_meta[index]
        fmap = self.cache.get(image_id, self.scales[scale_idx])
        scaled = scale_boxes(boxes, min(width, height), self.scales[scale_idx])
        cells = map_windows(scaled, self.mapping_rule, self.geom, fmap.shape[1], fmap.shape[2], self.offset)
        return fmap, cells

    def cells(self, index: int, boxes: np.ndarray, scale_idx: np.ndarray | int | None = None) -> np.ndarray:
        """(K, 4) 0-based inclusive cells of each window on its scale's map (chosen scale by default)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        idx = self._scale_idx(index, boxes, scale_idx)
        out = np.zeros((len(boxes), 4), dtype=np.int64)
        for si in np.unique(idx):
            sel = np.flatnonzero(idx == si)
            out[sel] = self._map(index, boxes[sel], int(si))[1]
        return out

    def keys(self, index: int, boxes: np.ndarray) -> np.ndarray:
        """(K, 5) int64 ``(scale index, left, top, right, bottom)``: equal rows pool the same conv5 box."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        idx = self.choose(index, boxes)
        return np.concatenate([idx[:, None], self.cells(index, boxes, idx)], axis=1)

    def _scale_idx(self, index: int, boxes: np.ndarray, scale_idx: np.ndarray | int | None) -> np.ndarray:
        if scale_idx is None:
            return self.choose(index, boxes)
        idx = np.broadcast_to(np.asarray(scale_idx, dtype=np.int64), (len(boxes),))
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self.scales)):
            raise ValueError(f"SPPPooledSource: scale indices must be in [0, {len(self.scales)}), got {idx}")
        return idx

    def pooled_at_scale(self, index: int, boxes: np.ndarray, scale_idx: np.ndarray | int) -> Tensor:
        """(K, D) pool5 with the given scale index per window (an int for all, or (K,), e.g. random)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        idx = self._scale_idx(index, boxes, scale_idx)
        channels = self.cache.get(self.image_meta[index][0], self.scales[idx[0] if len(idx) else 0]).shape[0]
        shape = (len(boxes), self.pooler.output_dim(channels))
        template = torch.empty(0, dtype=self.dtype, device=self.device)
        out = self.scratch.get("out", template, *shape) if self.reuse_out else template.new_empty(shape)
        for si in np.unique(idx):
            sel = np.flatnonzero(idx == si)
            fmap, cells = self._map(index, boxes[sel], int(si))
            fmap_t = torch.from_numpy(np.array(fmap)).to(self.device)
            if len(sel) == len(boxes):
                self.pooler(fmap_t, cells, out=out)
            else:
                part = self.pooler(fmap_t, cells, out=self.scratch.get("part", template, len(sel), shape[1]))
                out[torch.from_numpy(sel).to(self.device)] = part
        return out

    def __call__(self, index: int, boxes: np.ndarray) -> Tensor:
        """(K, D) pool5 of each window at its chosen scale."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        return self.pooled_at_scale(index, boxes, self.choose(index, boxes))


# --- pool5 cache --------------------------------------------------------------------------------------------------


class PooledCache:
    """Per-image pool5 matrices (K, D) float16 in ``<root>/<image_id>.npy`` plus ``manifest.json`` (dim, count)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.manifest_path = self.root / "manifest.json"
        self._ids: list[str] | None = None

    def path(self, image_id: str) -> Path:
        return self.root / f"{_check_id(image_id)}.npy"

    def has(self, image_id: str) -> bool:
        return self.path(image_id).is_file()

    def manifest(self) -> dict[str, Any]:
        """``{"dim", "count", "rows", "dtype", "image_ids"}`` (empty before the first complete build)."""
        return read_json(self.manifest_path) if self.manifest_path.is_file() else {}

    @property
    def image_ids(self) -> list[str]:
        if self._ids is None:
            self._ids = list(self.manifest().get("image_ids", []))
        return self._ids

    def build(
        self,
        n_images: int,
        image_ids: Sequence[str],
        source: Callable[[int], Tensor | np.ndarray],
        progress: bool = True,
    ) -> dict[str, Any]:
        """Store ``source(i)`` for images ``0..n_images-1`` that are not yet stored; then write the manifest.

        Returns ``computed`` / ``reused`` counts, ``dim`` and ``seconds``. All matrices must share the width.
        """
        ids = [_check_id(i) for i in image_ids]
        if len(ids) != n_images:
            raise ValueError(f"PooledCache.build: {n_images} images but {len(ids)} image ids")
        if len(set(ids)) != len(ids):
            raise ValueError("PooledCache.build: image ids must be unique")
        self.root.mkdir(parents=True, exist_ok=True)
        dim = self.manifest().get("dim")
        stats: dict[str, Any] = {"computed": 0, "reused": 0, "seconds": 0.0}
        rows = 0
        start = time.perf_counter()
        for i in tqdm(range(n_images), desc=f"pool5 {self.root.name}", disable=not progress):
            path = self.path(ids[i])
            if path.is_file():
                shape = _load_npy(path).shape
                stats["reused"] += 1
            else:
                value = source(i)
                arr = value.detach().to("cpu", torch.float16).numpy() if isinstance(value, Tensor) else value
                arr = np.ascontiguousarray(arr, dtype=np.float16)
                if arr.ndim != 2:
                    raise ValueError(f"PooledCache.build: source({i}) for {ids[i]} gave shape {arr.shape}, not (K, D)")
                shape = arr.shape
                _save_npy_atomic(path, arr)
                stats["computed"] += 1
            if dim is None:
                dim = int(shape[1])
            elif shape[1] != dim:
                raise ValueError(f"PooledCache {self.root}: {path} has width {shape[1]}, the cache has {dim}")
            rows += int(shape[0])
        stats["seconds"] = time.perf_counter() - start
        stats["dim"] = dim
        atomic_write_json(
            self.manifest_path, {"dim": dim, "count": n_images, "rows": rows, "dtype": "float16", "image_ids": ids}
        )
        self._ids = ids
        return stats

    def get(self, index_or_id: int | str) -> np.ndarray:
        """(K, D) float16 matrix, memory-mapped, by image index (manifest order) or id."""
        if isinstance(index_or_id, int | np.integer):
            ids = self.image_ids
            if not 0 <= int(index_or_id) < len(ids):
                raise IndexError(f"PooledCache {self.root}: index {index_or_id} out of range ({len(ids)} images)")
            index_or_id = ids[int(index_or_id)]
        arr = _load_npy(self.path(index_or_id))
        if arr.ndim != 2:
            raise ValueError(f"cache file {self.path(index_or_id)} holds shape {arr.shape}, expected (K, D)")
        return arr
