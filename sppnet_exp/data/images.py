"""Robust image decoding and the ``ImageList`` dataset with its skip/raise policy.

Decoding uses ``torchvision.io.decode_image`` on the file bytes (fast, uint8, RGB) and falls back to PIL for
what it cannot read (odd PNGs, exotic JPEGs, other formats). Grayscale, CMYK, palette and RGBA images all come
out as ``uint8 [3, H, W]`` RGB. EXIF orientation is ignored, consistently with the header sizes used for
bucketing.

Policy: in training a corrupt or truncated image is skipped (``None`` is returned, a warning with its path is
logged, and :func:`collate_train` counts it); in evaluation it raises :class:`ImageDecodeError` naming the
file."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image

from .samplers import split_index
from .transforms import resize_short

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".ppm", ".tif", ".tiff")


class ImageDecodeError(RuntimeError):
    """An image file that cannot be read or decoded (the message names the file)."""


def _pil_to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB (alpha composited on white, CMYK/gray/palette converted)."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 / max(float(arr.max()), 1.0) if arr.max() > 255 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8))
    return img.convert("RGB") if img.mode != "RGB" else img


def decode_bytes(data: bytes, name: str = "<bytes>") -> torch.Tensor:
    """Decode encoded image bytes to an RGB ``uint8`` ``[3, H, W]``; raise ImageDecodeError on failure."""
    try:
        img = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        if img.ndim == 3 and img.shape[0] == 3 and img.shape[1] > 0 and img.shape[2] > 0:
            return img
    except (RuntimeError, ValueError):
        pass
    try:
        with Image.open(io.BytesIO(data)) as pil:
            pil.load()
            rgb = _pil_to_rgb(pil)
            arr = np.asarray(rgb, dtype=np.uint8)
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        raise ImageDecodeError(f"cannot decode image {name}: {exc}") from exc
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def decode_file(path: str | Path) -> torch.Tensor:
    """Read and decode an image file to RGB ``uint8 [3, H, W]``; raise ImageDecodeError naming the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read image {path}: {exc}") from exc
    if not data:
        raise ImageDecodeError(f"cannot decode image {path}: empty file")
    return decode_bytes(data, str(path))


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image from its header (PIL, no full decode)."""
    try:
        with Image.open(path) as img:
            w, h = img.size
    except Exception as exc:
        raise ImageDecodeError(f"cannot read image header {path}: {exc}") from exc
    return h, w


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (by extension, case-insensitive), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


Target = int | torch.Tensor


class ImageList(Dataset):
    """Dataset over ``(path, target)`` pairs; ``transform`` maps a ``uint8 [3,H,W]`` tensor to the output.

    With ``skip_bad=True`` an unreadable image yields ``None`` (and a warning); otherwise it raises
    :class:`ImageDecodeError` naming the file. Targets are ints (single-label) or float tensors (multi-label).

    ``cache_side``: keep every image in memory once decoded and resized to that shorter side (per process: each
    loader worker holds its own). Exact when the transform's first step is the same resize
    (:func:`~sppnet_exp.data.transforms.resize_short` of an image already at that side is the identity and the
    crop positions depend only on the resized size), so the batches are the same bit for bit; it saves the read,
    the decode and the resize of every epoch after the first. For small sets only (the embedded default's 3,000
    images take ~200 MB); ``None`` (ImageNet) reads every image every time.
    """

    def __init__(
        self,
        samples: Sequence[tuple[str, Target]],
        transform: Callable[[torch.Tensor], torch.Tensor],
        skip_bad: bool = False,
        cache_side: int | None = None,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.skip_bad = skip_bad
        self.cache_side = None if cache_side is None else int(cache_side)
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, Target] | None:
        """``item``: an index, or ``(index, seed)`` from :class:`~sppnet_exp.data.samplers.SeededIndices` (the
        transform then draws its random decisions from a generator seeded so)."""
        index, generator = split_index(item)
        path, target = self.samples[index]
        img = self._cache.get(index)
        if img is None:
            try:
                img = decode_file(path)
            except ImageDecodeError as exc:
                if self.skip_bad:
                    log.warning("skipping unreadable training image %s (%s)", path, exc)
                    return None
                raise
            if self.cache_side is not None:
                img = self._cache[index] = resize_short(img, self.cache_side)
        return (self.transform(img) if generator is None else self.transform(img, generator)), target


def _stack_targets(targets: list[Any]) -> torch.Tensor:
    if isinstance(targets[0], torch.Tensor):
        return torch.stack(targets).float()
    return torch.tensor(targets, dtype=torch.long)


def collate_train(
    batch: list[tuple[torch.Tensor, Target] | None], empty_shape: tuple[int, ...] = (3, 0, 0)
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Drop skipped (``None``) samples; return ``(images[B,3,h,w], targets, n_skipped)``.

    If every sample of the batch was skipped, ``B == 0``: images are ``empty(0, *empty_shape)`` and targets
    ``empty(0)`` (the training step should skip such a batch).
    """
    kept = [b for b in batch if b is not None]
    n_skipped = len(batch) - len(kept)
    if not kept:
        return torch.empty(0, *empty_shape), torch.empty(0, dtype=torch.long), n_skipped
    images = torch.stack([b[0] for b in kept])
    return images, _stack_targets([b[1] for b in kept]), n_skipped


def collate_eval(batch: list[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack eval views: ``(images[B,V,3,h,w], targets)`` (all images of a batch must share a size)."""
    images = torch.stack([b[0] for b in batch])
    return images, _stack_targets([b[1] for b in batch])


def whole_image(img: torch.Tensor) -> torch.Tensor:
    """The decoded ``uint8 [3,H,W]`` image as it is: the input of the views pooled from feature maps, which resize it
    themselves to each of their scales (a named function, so that loader workers can pickle it)."""
    return img


def collate_whole(batch: list[tuple[torch.Tensor, Target]]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Whole images of different sizes: ``([img_1, ..., img_B], targets)``."""
    return [b[0] for b in batch], _stack_targets([b[1] for b in batch])
