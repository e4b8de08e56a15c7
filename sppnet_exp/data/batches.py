"""The uint8 input path: what workers collate, and how a batch becomes float on the device.

With ``data.worker_output=uint8`` (the default) workers ship ``uint8`` crops, a quarter of the bytes of the
normalised float32 crops, together with the random decisions they applied. The LightningModule's batch hook
(:meth:`sppnet_exp.classification.classifier.SPPClassifier.on_after_batch_transfer`) calls :func:`finish_batch`
on the device; it applies the PCA lighting shift and the ImageNet normalisation to the whole batch with the
operations of the float32 path in the same order (``x / 255``, ``+ shift``, ``- mean``, ``/ std``), so on
the same seed both paths give the same batch (bit for bit on the CPU).

Batch formats:

- training, uint8: ``(images uint8[B,3,c,c], targets, n_skipped, aug)`` with ``aug = {"crop": long[B,2]
  (top, left in the resized image), "flip": bool[B], "lighting": float[B,3]}`` (``lighting`` only when the
  lighting noise is on); :func:`finish_batch` turns it into the float32 path's ``(images float[B,3,c,c],
  targets, n_skipped)``;
- evaluation, uint8: ``(images uint8[B,V,3,h,w], targets)`` → ``(images float[B,V,3,h,w], targets)``;
- float32 batches pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .images import Target, _stack_targets
from .transforms import IMAGENET_MEAN, IMAGENET_STD, TrainPlan

__all__ = ["batch_nbytes", "collate_train_uint8", "finish_batch", "plans_to_aug", "to_float"]

CPU_CHUNK = 4  # images per in-cache chunk of the CPU finish (4 x 3 x 224 x 224 floats = 2.4 MB)


def plans_to_aug(plans: Sequence[TrainPlan], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """The ``aug`` dict of a batch from its per-image plans (see the module docstring)."""
    aug = {
        "crop": torch.tensor([[p.top, p.left] for p in plans], dtype=torch.long, device=device).reshape(-1, 2),
        "flip": torch.tensor([p.flip for p in plans], dtype=torch.bool, device=device),
    }
    shifts = [p.shift for p in plans]
    if shifts and all(s is not None for s in shifts):
        aug["lighting"] = torch.stack(shifts).to(device=device, dtype=torch.float32)
    return aug


def collate_train_uint8(
    batch: list[tuple[tuple[torch.Tensor, TrainPlan], Target] | None], empty_shape: tuple[int, ...] = (3, 0, 0)
) -> tuple[torch.Tensor, torch.Tensor, int, dict[str, torch.Tensor]]:
    """Drop skipped (``None``) samples; return ``(images uint8[B,3,h,w], targets, n_skipped, aug)``.

    Items are ``((uint8 crop, plan), target)`` as :meth:`TrainTransform.sample` makes them. If every sample
    was skipped, ``B == 0`` (``images`` is ``empty(0, *empty_shape)``, ``aug`` holds empty tensors).
    """
    kept = [b for b in batch if b is not None]
    n_skipped = len(batch) - len(kept)
    if not kept:
        empty = torch.empty(0, *empty_shape, dtype=torch.uint8)
        return empty, torch.empty(0, dtype=torch.long), n_skipped, plans_to_aug([])
    images = torch.stack([b[0][0] for b in kept])
    return images, _stack_targets([b[1] for b in kept]), n_skipped, plans_to_aug([b[0][1] for b in kept])


def to_float(images: torch.Tensor, lighting: torch.Tensor | None = None) -> torch.Tensor:
    """``uint8 [B,3,h,w]`` or ``[B,V,3,h,w]`` → normalised float32, with a per-image RGB ``lighting`` shift
    ``[B,3]`` added before the normalisation (AlexNet's PCA lighting, as in the float32 path).

    The float32 path's operations in its order (``/ 255``, ``+ shift``, ``- mean``, ``/ std``), in place, a
    few images at a time on the CPU so that each chunk stays in cache through the four passes (20x faster
    than whole-batch passes on a 224 batch; the values are the same).
    """
    x = torch.empty(images.shape, dtype=torch.float32, device=images.device)
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    shift = None
    if lighting is not None:
        shape = (images.shape[0],) + (1,) * (images.ndim - 4) + (3, 1, 1)
        shift = lighting.to(device=x.device, dtype=x.dtype).reshape(shape)
    n = images.shape[0]
    step = CPU_CHUNK if images.device.type == "cpu" else max(n, 1)
    for i in range(0, n, step):
        xi = x[i : i + step]
        xi.copy_(images[i : i + step]).div_(255.0)
        if shift is not None:
            xi.add_(shift[i : i + step])
        xi.sub_(mean).div_(std)
    return x


def finish_batch(batch: Any) -> Any:
    """A batch as the model consumes it: uint8 batches normalised (and lit) on their device; others unchanged."""
    if not isinstance(batch, tuple | list) or not batch or not isinstance(batch[0], torch.Tensor):
        return batch
    images = batch[0]
    if images.dtype != torch.uint8:
        return batch
    if len(batch) == 4:  # training: (images, targets, n_skipped, aug)
        _, targets, n_skipped, aug = batch
        return to_float(images, aug.get("lighting")), targets, n_skipped
    return (to_float(images), *batch[1:])


def batch_nbytes(batch: Any) -> int:
    """Bytes of every tensor in a (nested) batch: what a worker puts through the queue for it."""
    if isinstance(batch, torch.Tensor):
        return batch.numel() * batch.element_size()
    if isinstance(batch, dict):
        return sum(batch_nbytes(v) for v in batch.values())
    if isinstance(batch, tuple | list):
        return sum(batch_nbytes(v) for v in batch)
    nbytes = getattr(batch, "nbytes", None)
    return int(nbytes()) if callable(nbytes) else 0
