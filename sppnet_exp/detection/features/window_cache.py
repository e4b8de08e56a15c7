"""The optional per-window feature cache: every window's pooled vector of every image, float16 on disk.

Off at the paper's scale (VOC07 at 2,000 windows per image is ~51 MB per image, ~510 GB per configuration) and
on where it is small (the embedded default's R-CNN cells, which would otherwise warp and run every window once
per pass). :func:`window_cache_bytes` is the size a cache will take, printed before it starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from sppnet_exp.detection.features.conv_cache import check_id, load_npy
from sppnet_exp.utils.io import atomic_save_npy, atomic_write_json, read_json

__all__ = ["WindowCache", "window_cache_bytes"]


def window_cache_bytes(windows: int, dim: int, bytes_per_value: int = 2) -> int:
    """Disk bytes of a window cache holding ``windows`` rows of ``dim`` values (float16 by default)."""
    return int(windows) * int(dim) * int(bytes_per_value)


class WindowCache:
    """Per-image window features (K, D) float16 in ``<root>/<image_id>.npy`` plus ``manifest.json`` (dim, count)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.manifest_path = self.root / "manifest.json"
        self._ids: list[str] | None = None

    def path(self, image_id: str) -> Path:
        return self.root / f"{check_id(image_id)}.npy"

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
        ids = [check_id(i) for i in image_ids]
        if len(ids) != n_images:
            raise ValueError(f"WindowCache.build: {n_images} images but {len(ids)} image ids")
        if len(set(ids)) != len(ids):
            raise ValueError("WindowCache.build: image ids must be unique")
        self.root.mkdir(parents=True, exist_ok=True)
        dim = self.manifest().get("dim")
        stats: dict[str, Any] = {"computed": 0, "reused": 0, "seconds": 0.0}
        rows = 0
        start = time.perf_counter()
        for i in tqdm(range(n_images), desc=f"pool5 {self.root.name}", disable=not progress):
            path = self.path(ids[i])
            if path.is_file():
                shape = load_npy(path).shape
                stats["reused"] += 1
            else:
                value = source(i)
                arr = value.detach().to("cpu", torch.float16).numpy() if isinstance(value, Tensor) else value
                arr = np.ascontiguousarray(arr, dtype=np.float16)
                if arr.ndim != 2:
                    raise ValueError(f"WindowCache.build: source({i}) for {ids[i]} gave shape {arr.shape}, not (K, D)")
                shape = arr.shape
                atomic_save_npy(path, arr)
                stats["computed"] += 1
            if dim is None:
                dim = int(shape[1])
            elif shape[1] != dim:
                raise ValueError(f"WindowCache {self.root}: {path} has width {shape[1]}, the cache has {dim}")
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
                raise IndexError(f"WindowCache {self.root}: index {index_or_id} out of range ({len(ids)} images)")
            index_or_id = ids[int(index_or_id)]
        arr = load_npy(self.path(index_or_id))
        if arr.ndim != 2:
            raise ValueError(f"cache file {self.path(index_or_id)} holds shape {arr.shape}, expected (K, D)")
        return arr
