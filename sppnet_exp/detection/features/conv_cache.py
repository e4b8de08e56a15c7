"""conv5 once per image and scale: SPP-net's only per-image feature cache (and the authors' release's).

* :class:`ConvCache`: conv maps ``(C, h, w)`` float16 per image, scale and orientation under
  ``<root>/<tag>/s<scale>[_flip]/<image_id>.npy``, written atomically (temp file + ``os.replace``), read
  memory-mapped; a half-built cache resumes where it stopped. Maps of the mirrored image (``flip``) are what
  fine-tuning's flip augmentation pools from (``Script_spp_voc.m``: ``flip_finetune``).
* :func:`build_conv_cache`: fills it with a Lightning predict loop (:class:`ConvFeatureWriter`), so under DDP each
  rank computes and writes its shard of the images. Several processes sharing one cache folder (two array jobs)
  split the work through per-entry claims (:mod:`sppnet_exp.utils.claims`): an entry another live process is
  computing is skipped, then waited for; an entry whose owner died is computed here.

Image preparation (authors' ``spp_features_convX.m``): shorter side := scale, bilinear, no antialiasing
(``interpolate(..., align_corners=False, antialias=False)``), then the network's input normalisation. The image is
normalised before it is resized (on the host, before the device transfer): bilinear weights sum to one, so this
equals normalising the resized image, up to float rounding.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from sppnet_exp.data.images import decode_file
from sppnet_exp.data.transforms import normalize
from sppnet_exp.detection.features.mapping import image_scales, resized_hw
from sppnet_exp.utils.claims import try_claim, wait_for
from sppnet_exp.utils.io import atomic_save_npy, atomic_write_json, read_json
from sppnet_exp.utils.timing import sync

__all__ = ["ConvCache", "ConvFeatureWriter", "ImageItems", "build_conv_cache", "check_id", "load_npy"]

_BAD_ID = re.compile(r"[/\\\x00]")


def check_id(image_id: str) -> str:
    """An image id usable as a cache file name (no path separators, not hidden)."""
    image_id = str(image_id)
    if not image_id or image_id.startswith(".") or _BAD_ID.search(image_id):
        raise ValueError(f"image id {image_id!r} cannot be used as a cache file name")
    return image_id


def load_npy(path: Path) -> np.ndarray:
    """A cached ``.npy`` array, memory-mapped read-only; a clear error when it is missing or unreadable."""
    if not path.is_file():
        raise FileNotFoundError(f"cache file {path} does not exist (build the cache first)")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"cache file {path} is not a readable .npy array: {exc}") from exc


class ConvCache:
    """Conv maps (C, h, w) float16 per image, scale and orientation (see the module docstring)."""

    def __init__(self, root: str | Path, scales: Sequence[int], tag: str) -> None:
        self.scales = image_scales(scales, "ConvCache")
        self.tag = check_id(tag)
        self.dir = Path(root) / self.tag

    def path(self, image_id: str, scale: int, flip: bool = False) -> Path:
        """File of one image's map at one scale (of the mirrored image when ``flip``)."""
        return self.dir / f"s{int(scale)}{'_flip' if flip else ''}" / f"{check_id(image_id)}.npy"

    def has(self, image_id: str, scales: Sequence[int] | None = None, flip: bool = False) -> bool:
        """All scales (default: the cache's) of the image are stored."""
        return all(self.path(image_id, s, flip).is_file() for s in (self.scales if scales is None else scales))

    def missing(self, image_ids: Sequence[str], scales: Sequence[int] | None = None, flip: bool = False) -> list[str]:
        """Ids (in order) that lack at least one of the scales (default: the cache's)."""
        return [i for i in image_ids if not self.has(i, scales, flip)]

    def put(self, image_id: str, scale: int, fmap: Tensor | np.ndarray, flip: bool = False) -> Path:
        """Store a (C, h, w) map as float16 (atomic)."""
        arr = fmap.detach().to("cpu", torch.float16).numpy() if isinstance(fmap, Tensor) else np.asarray(fmap)
        if arr.ndim != 3:
            raise ValueError(f"ConvCache.put: map of {image_id} at scale {scale} must be C x h x w, got {arr.shape}")
        return atomic_save_npy(self.path(image_id, scale, flip), np.ascontiguousarray(arr, dtype=np.float16))

    def get(self, image_id: str, scale: int, flip: bool = False) -> np.ndarray:
        """The (C, h, w) float16 map, memory-mapped read-only."""
        if int(scale) not in self.scales:
            raise ValueError(f"ConvCache {self.dir}: scale {scale} is not one of {self.scales}")
        path = self.path(image_id, scale, flip)
        arr = load_npy(path)
        if arr.ndim != 3:
            raise ValueError(f"cache file {path} holds shape {arr.shape}, expected C x h x w")
        return arr

    def maps(self, image_id: str, scales: Sequence[int] | None = None, flip: bool = False) -> list[np.ndarray]:
        """The image's maps at ``scales`` (default: all), read into memory (one sequential read per file)."""
        return [np.array(self.get(image_id, s, flip)) for s in (self.scales if scales is None else scales)]

    def bytes(self, image_ids: Sequence[str], scales: Sequence[int] | None = None, flip: bool = False) -> int:
        """Bytes on disk of the stored maps of ``image_ids`` (missing files count 0)."""
        total = 0
        for i in image_ids:
            for s in self.scales if scales is None else scales:
                p = self.path(i, s, flip)
                total += p.stat().st_size if p.is_file() else 0
        return total

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
        """Append a build run's timing to ``meta.json`` (atomic, under a claim) and update the totals."""
        for _ in range(600):
            claim = try_claim(self.meta_path, stale_s=60.0)
            if claim is not None:
                break
            time.sleep(0.1)
        try:
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
        finally:
            if claim is not None:
                claim.release()
        return meta


class ImageItems(Dataset):
    """``(index, uint8 image [3, H, W])`` for a list of ``(image_id, path, flip)``; flipped items are mirrored."""

    def __init__(self, items: Sequence[tuple[str, str | Path, bool]]) -> None:
        self.items = [(check_id(i), Path(p), bool(f)) for i, p, f in items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, Tensor]:
        _, path, flip = self.items[index]
        img = decode_file(path)
        return index, img.flip(-1) if flip else img


class ConvFeatureWriter(L.LightningModule):
    """Predict-only module: for each image (batch of 1) and scale, resize, run ``features`` and store the map.

    Only the trunk runs (eval mode, no grad). Before an item is computed it is claimed; an item another live
    process holds is skipped (``skipped`` lists them for :func:`build_conv_cache` to wait for). Per-rank times are
    summed over ranks at the end of the epoch and rank 0 records them in the cache's ``meta.json``.
    """

    def __init__(
        self,
        features: nn.Module,
        cache: ConvCache,
        items: Sequence[tuple[str, str | Path, bool]],
        scales: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.features = features
        self.cache = cache
        self.items = [(check_id(i), Path(p), bool(f)) for i, p, f in items]
        self.scales = _check_scales(cache, scales)
        self.skipped: list[int] = []
        self._times = [0.0, 0.0, 0.0]  # images, conv seconds, total seconds

    def on_predict_start(self) -> None:
        self._times = [0.0, 0.0, 0.0]
        self.skipped = []
        self.features.eval()

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        index, img = batch
        return index, normalize(img)  # on the host, before the device transfer (see the module docstring)

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx: int = 0) -> int:
        index, img = batch
        if img.dim() != 4 or img.shape[0] != 1:
            raise ValueError(f"ConvFeatureWriter expects batches of one image, got shape {tuple(img.shape)}")
        k = int(index[0])
        image_id, _, flip = self.items[k]
        if self.cache.has(image_id, self.scales, flip):  # written by another process since the list was made
            return 0
        claim = try_claim(self.cache.path(image_id, self.scales[0], flip))
        if claim is None:
            self.skipped.append(k)
            return 0
        if self.cache.has(image_id, self.scales, flip):  # its owner finished and released between the two checks
            claim.release()
            return 0
        with claim:
            start = time.perf_counter()
            conv = write_maps(self.features, self.cache, image_id, img, self.scales, flip)
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


def write_maps(
    features: nn.Module, cache: ConvCache, image_id: str, img: Tensor, scales: Sequence[int], flip: bool
) -> float:
    """Resize the normalised image ``img`` (1, 3, H, W) to each scale, run ``features`` and store the maps;
    returns the seconds spent in ``features`` (CUDA synchronised)."""
    conv = 0.0
    h, w = img.shape[-2:]
    for scale in scales:
        x = F.interpolate(img, size=resized_hw(h, w, scale), mode="bilinear", align_corners=False, antialias=False)
        sync(img.device)
        t0 = time.perf_counter()
        fmap = features(x)[0]
        sync(img.device)
        conv += time.perf_counter() - t0
        cache.put(image_id, scale, fmap, flip)
    return conv


@torch.no_grad()
def _write_local(
    features: nn.Module, cache: ConvCache, items: Sequence[tuple[str, Path, bool]], scales: Sequence[int]
) -> int:
    """Compute ``items`` in this process on ``features``' device, no Trainer (the entries other processes left)."""
    device = next(features.parameters()).device
    features.eval()
    done = 0
    for image_id, path, flip in items:
        claim = try_claim(cache.path(image_id, scales[0], flip))
        if claim is None or cache.has(image_id, scales, flip):
            if claim is not None:
                claim.release()
            continue
        with claim:
            img = ImageItems([(image_id, path, flip)])[0][1]
            write_maps(features, cache, image_id, normalize(img)[None].to(device), scales, flip)
            done += 1
    return done


def _check_scales(cache: ConvCache, scales: Sequence[int] | None) -> tuple[int, ...]:
    out = cache.scales if scales is None else tuple(int(s) for s in scales)
    unknown = [s for s in out if s not in cache.scales]
    if unknown or not out:
        raise ValueError(f"scales {list(out)} must be a non-empty subset of the conv cache's {list(cache.scales)}")
    return out


def _quiet_trainer(trainer_kwargs: dict[str, Any] | None) -> L.Trainer:
    from sppnet_exp.utils.trainer import quiet_trainer

    return quiet_trainer(**(trainer_kwargs or {}))


def build_conv_cache(
    cache: ConvCache,
    items: Sequence[tuple[str, str | Path] | tuple[str, str | Path, bool]],
    features: nn.Module,
    scales: Sequence[int] | None = None,
    trainer: L.Trainer | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
    num_workers: int = 0,
    flip: bool | Sequence[bool] = False,
    wait_timeout_s: float | None = None,
) -> dict[str, Any]:
    """Compute the maps (at ``scales``, default all of the cache's) of the ``(image_id, path)`` items not yet in
    ``cache`` with one ``Trainer.predict``; ``flip`` says which orientations of them: ``False`` the image as
    given, ``True`` the mirrored one, ``(False, True)`` both. An item ``(image_id, path, flip)`` names its own.

    Pass a ``trainer`` or ``trainer_kwargs`` (e.g. ``strategy="ddp", devices=4``: the distributed sampler splits
    the images over ranks and every rank writes its own). Entries claimed by another process are waited for
    (``wait_timeout_s``) and computed here if their owner dies. Returns ``computed`` / ``reused`` / ``waited``
    counts and ``seconds``. ``features`` is moved to the trainer's device and put in eval mode.
    """
    scales = _check_scales(cache, scales)
    orientations = (bool(flip),) if isinstance(flip, bool) else tuple(bool(f) for f in flip)
    jobs = [(it[0], it[1], f) for f in orientations for it in items if len(it) == 2]
    jobs += [(it[0], it[1], bool(it[2])) for it in items if len(it) == 3]
    todo = [(i, p, f) for i, p, f in jobs if not cache.has(i, scales, f)]
    stats: dict[str, Any] = {"computed": 0, "reused": len(jobs) - len(todo), "waited": 0, "seconds": 0.0}
    start = time.perf_counter()
    if todo:
        runner = trainer or _quiet_trainer({"accelerator": "auto", "devices": 1, **(trainer_kwargs or {})})
        dataset = ImageItems(todo)
        loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=num_workers)
        module = ConvFeatureWriter(features, cache, dataset.items, scales)
        runner.predict(module, dataloaders=loader, return_predictions=False)
        skipped = [dataset.items[k] for k in module.skipped]
        launcher = getattr(runner.strategy, "launcher", None)
        spawned = type(launcher).__name__ == "_MultiProcessingLauncher"  # ddp_spawn: the counts stayed in the ranks
        stats["computed"] = len(todo) if spawned else int(module._times[0])
        while skipped:  # claimed by other processes: wait, then compute what their owners left (no collectives)
            stats["waited"] += len(skipped)
            by_target = {cache.path(i, scales[0], f): (i, p, f) for i, p, f in skipped}
            done = lambda t, m=by_target: cache.has(m[t][0], scales, m[t][2])  # noqa: E731
            orphans = [by_target[t] for t in wait_for(list(by_target), done=done, timeout_s=wait_timeout_s)]
            stats["computed"] += _write_local(features, cache, orphans, scales)
            skipped = [o for o in orphans if not cache.has(o[0], scales, o[2])]
    stats["seconds"] = time.perf_counter() - start
    return stats
