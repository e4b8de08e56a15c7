"""Decoding on the device (``data.decode=gpu``): workers read file bytes, the main process decodes batches.

Workers (:class:`EncodedImageList`) read each file, check from its header that the device can decode it (a
JPEG in RGB or grayscale that ends with its EOI marker) and draw the training decisions (:class:`TrainPlan`)
from the header's size, in the order of the CPU path; files the device cannot decode (PNG, CMYK or truncated
JPEGs, ...) are decoded and cropped on the CPU in the worker, as in the CPU path. The batch
(:class:`EncodedBatch`) reaches the LightningModule's ``on_before_batch_transfer`` hook, which calls
:meth:`EncodedBatch.decode`: one batched ``torchvision.io.decode_jpeg(..., device=...)`` call (nvJPEG on
CUDA, libjpeg-turbo on the CPU, where the same code path runs in the tests), then resize, crop and flip on
the device, giving the uint8 batches of :mod:`sppnet_exp.data.batches`.

Corrupt files keep the CPU path's policy: in training they are skipped, logged and counted (``n_skipped``); in
evaluation they raise :class:`~sppnet_exp.data.images.ImageDecodeError` naming the file. A file the batched
decode rejects is retried alone on the device, then on the CPU, before it counts as corrupt.

On the CPU the decoded pixels equal the CPU path's, so the batches are identical. On CUDA, nvJPEG's IDCT
and the float antialiased resize (rounded back to uint8) differ from libjpeg-turbo and the CPU's uint8
resize by a grey level here and there; the random decisions are the same.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_jpeg

from .batches import plans_to_aug
from .images import ImageDecodeError, Target, _stack_targets, decode_bytes
from .samplers import split_index
from .transforms import EvalTransform, TrainPlan, TrainTransform

log = logging.getLogger(__name__)

__all__ = ["EncodedBatch", "EncodedImageList", "collate_encoded", "decode_jpegs", "device_decodable_size"]

JPEG_SOI, JPEG_EOI = b"\xff\xd8", b"\xff\xd9"


def read_bytes(path: str | Path) -> bytes:
    """The bytes of an image file; an unreadable or empty file raises ImageDecodeError naming it."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read image {path}: {exc}") from exc
    if not data:
        raise ImageDecodeError(f"cannot decode image {path}: empty file")
    return data


def device_decodable_size(data: bytes) -> tuple[int, int] | None:
    """``(height, width)`` of a complete RGB or grayscale JPEG (from its header), else None."""
    if data[:2] != JPEG_SOI or data[-2:] != JPEG_EOI:
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "JPEG" or img.mode not in ("RGB", "L"):
                return None
            w, h = img.size
    except Exception:  # noqa: BLE001  (PIL raises many types; the CPU path then names the problem)
        return None
    return (h, w) if h > 0 and w > 0 else None


@dataclass
class EncodedItem:
    """One image as a worker ships it: JPEG bytes for the device, or pixels the worker made on the CPU."""

    path: str
    target: Target
    data: torch.Tensor | None = None  # 1-D uint8 JPEG bytes
    pixels: torch.Tensor | None = None  # uint8 crop [3,c,c] (training) or views [V,3,h,w] (evaluation)
    plan: TrainPlan | None = None


class EncodedImageList(Dataset):
    """``(path, target)`` samples → :class:`EncodedItem` (training with ``train``, else the eval ``view``)."""

    def __init__(
        self,
        samples: Sequence[tuple[str, Target]],
        train: TrainTransform | None = None,
        view: EvalTransform | None = None,
        skip_bad: bool = False,
    ) -> None:
        if (train is None) == (view is None):
            raise ValueError("EncodedImageList needs exactly one of train= (a TrainTransform) or view=")
        self.samples = list(samples)
        self.train, self.view, self.skip_bad = train, view, skip_bad

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: int | tuple[int, int]) -> EncodedItem | None:
        index, generator = split_index(item)  # (index, seed) from SeededIndices: the plan drawn from that seed
        path, target = self.samples[index]
        try:
            data = read_bytes(path)
            size = device_decodable_size(data)
            if size is None:  # the device cannot decode it: the CPU path, in this worker
                img = decode_bytes(data, str(path))
                if self.train is not None:
                    crop, plan = self.train.sample(img, generator)
                    return EncodedItem(str(path), target, pixels=crop, plan=plan)
                assert self.view is not None
                return EncodedItem(str(path), target, pixels=self.view.views(img))
        except ImageDecodeError as exc:
            if self.skip_bad:
                log.warning("skipping unreadable training image %s (%s)", path, exc)
                return None
            raise
        plan = self.train.plan(*size, generator) if self.train is not None else None
        return EncodedItem(str(path), target, data=torch.frombuffer(bytearray(data), dtype=torch.uint8), plan=plan)


@dataclass
class EncodedBatch:
    """A batch of :class:`EncodedItem` and the transform that finishes it on the device."""

    items: list[EncodedItem]
    transform: TrainTransform | EvalTransform
    n_skipped: int = 0

    @property
    def training(self) -> bool:
        return isinstance(self.transform, TrainTransform)

    def __len__(self) -> int:
        return len(self.items)

    def pin_memory(self) -> EncodedBatch:
        """Nothing to pin: the decoder reads the bytes from host memory itself."""
        return self

    def nbytes(self) -> int:
        """Bytes of the tensors a worker ships for this batch (JPEG bytes and CPU-made pixels)."""
        return sum(t.numel() * t.element_size() for i in self.items for t in (i.data, i.pixels) if t is not None)

    def decode(self, device: torch.device | str) -> tuple[Any, ...]:
        """Decode on ``device`` and crop: the uint8 training or evaluation batch (see :mod:`.batches`)."""
        device = torch.device(device)
        encoded = [i for i in self.items if i.data is not None]
        decoded = dict(zip((id(i) for i in encoded), decode_jpegs([i.data for i in encoded], device)))
        images, targets, plans = [], [], []
        skipped = self.n_skipped
        for item in self.items:
            try:
                pixels = item.pixels.to(device) if item.pixels is not None else self._finish(item, decoded, device)
            except ImageDecodeError as exc:
                if not self.training:
                    raise
                log.warning("skipping unreadable training image %s (%s)", item.path, exc)
                skipped += 1
                continue
            images.append(pixels)
            targets.append(item.target)
            plans.append(item.plan)
        return self._assemble(images, targets, plans, skipped, device)

    def _finish(self, item: EncodedItem, decoded: dict[int, torch.Tensor | None], device: torch.device) -> torch.Tensor:
        img = decoded[id(item)]
        if img is None:  # the device refused it: the CPU decoder decides (and names the file if it fails too)
            assert item.data is not None
            img = decode_bytes(item.data.numpy().tobytes(), item.path).to(device)
        if isinstance(self.transform, TrainTransform):
            assert item.plan is not None
            return self.transform.apply(img, item.plan)
        return self.transform.views(img)

    def _assemble(
        self,
        images: list[torch.Tensor],
        targets: list[Target],
        plans: list[TrainPlan | None],
        skipped: int,
        device: torch.device,
    ) -> tuple[Any, ...]:
        if not self.training:
            return torch.stack(images), _stack_targets(targets).to(device)
        if not images:
            c = self.transform.crop
            empty = torch.empty(0, 3, c, c, dtype=torch.uint8, device=device)
            return empty, torch.empty(0, dtype=torch.long, device=device), skipped, plans_to_aug([], device)
        aug = plans_to_aug([p for p in plans if p is not None], device)
        return torch.stack(images), _stack_targets(targets).to(device), skipped, aug


def collate_encoded(batch: list[EncodedItem | None], transform: TrainTransform | EvalTransform) -> EncodedBatch:
    """Collate worker items (``None`` = skipped in the worker) into an :class:`EncodedBatch`."""
    kept = [b for b in batch if b is not None]
    return EncodedBatch(kept, transform, n_skipped=len(batch) - len(kept))


def decode_jpegs(data: Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """Decode JPEG byte tensors to RGB ``uint8 [3,H,W]`` on ``device`` in one batched call; None = refused.

    When the batched call fails, each image is retried alone so that one bad file does not sink the batch.
    """
    if not data:
        return []
    try:
        return list(decode_jpeg(list(data), mode=ImageReadMode.RGB, device=device))
    except (RuntimeError, ValueError):
        pass
    out: list[torch.Tensor | None] = []
    for d in data:
        try:
            out.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
        except (RuntimeError, ValueError):
            out.append(None)
    return out
