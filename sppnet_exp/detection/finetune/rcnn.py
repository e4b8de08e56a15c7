"""R-CNN fine-tuning: the whole network trained as an (N+1)-way classifier on warped windows.

Follows R-CNN's released setup (``finetuning/voc_2007_prototxt``, Caffe ``window_data_layer``): mini-batches of 128
warped windows (context padding 16, random mirror), 25% foreground (max IoU with a GT box >= 0.5, labelled with
that GT's class) and 75% background (max IoU < 0.5, zero overlap included, label 0); SGD lr 1e-3, momentum 0.9,
weight decay 5e-4, lr x0.1 every 20k iterations; a new fc8 ~ N(0, 0.01). With ``lr_mults="caffe"`` the prototxt's
multipliers apply: biases lr x2 without weight decay, fc8 weights x10 and its bias x20.

One deliberate change: R-CNN draws every window of a batch at random from all windows of the training set (each
window decoding its image). Here a batch draws ``images_per_batch`` images at random (at least one with a
foreground window) and samples its foreground and background windows, with replacement, from those images only,
so a step decodes a few images instead of up to 128.

The loader's workers decode those images and draw the windows (:class:`WarpedWindowDataset`); the warping — one
batched ``roi_align`` per image — runs on the training device in the module's ``on_after_batch_transfer``
(:func:`warp_batch`), so decoding overlaps the step and the step never waits on CPU warps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from sppnet_exp.detection.features.warping import GEOMETRIES, warp_windows
from sppnet_exp.detection.finetune.fc import merge_step_cfg, with_step_checkpoints
from sppnet_exp.detection.structures.roidb import ImageWindows
from sppnet_exp.models import SPPNet
from sppnet_exp.utils.dist import current_rank
from sppnet_exp.utils.trainer import QUIET, quiet_trainer

__all__ = ["FINETUNE_DEFAULTS", "RCNNFineTuner", "WarpedWindowDataset", "finetune_rcnn", "warp_batch"]

WindowBatch = tuple[list[Tensor], Tensor, Tensor, Tensor, Tensor]  # images, slot, boxes, labels, mirror

LR_MULTS = ("caffe", "none")

FINETUNE_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "lr_step": 20000,
    "gamma": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "lr_mults": "caffe",
    "batch_size": 128,
    "fg_fraction": 0.25,
    "fg_thresh": 0.5,
    "bg_thresh_hi": 0.5,
    "bg_thresh_lo": 0.0,
    "images_per_batch": 8,
    "flip": True,
    "padding": 16,
    "geometry": "paper",
    "size": None,
    "seed": 0,
    "num_workers": 0,
}


class WarpedWindowDataset(IterableDataset):
    """Endless (or ``num_batches``) mini-batches of windows to warp: ``(images, slot, boxes, labels, mirror)`` —
    the batch's decoded uint8 images, each window's image slot (B,), 1-based boxes (B, 4) float64, labels (B,)
    and mirror flags (B,); :func:`warp_batch` turns one into ``(windows [B, 3, size, size], labels)``.

    Foreground: windows with max IoU >= ``fg_thresh`` (label = class 1..N of the best GT); background: max IoU in
    ``[bg_thresh_lo, bg_thresh_hi)`` (label 0). ``round(batch_size * fg_fraction)`` foreground windows per batch
    (fewer only when the drawn images have no background: then the batch is all foreground). Each window is
    mirrored with probability 0.5 when ``flip``. The stream depends on ``seed``, the DDP rank and the worker id.
    """

    def __init__(
        self,
        roidb: Sequence[ImageWindows],
        load_image: Callable[[int], Tensor],
        size: int,
        padding: int = 16,
        fg_thresh: float = 0.5,
        bg_thresh_hi: float = 0.5,
        bg_thresh_lo: float = 0.0,
        batch_size: int = 128,
        fg_fraction: float = 0.25,
        images_per_batch: int = 8,
        seed: int = 0,
        flip: bool = True,
        geometry: str = "paper",
        num_batches: int | None = None,
    ) -> None:
        super().__init__()
        if not 0 < fg_thresh <= 1 or not 0 <= bg_thresh_lo < bg_thresh_hi <= fg_thresh:
            raise ValueError(
                "WarpedWindowDataset: need 0 <= bg_thresh_lo < bg_thresh_hi <= fg_thresh <= 1, got "
                f"bg=[{bg_thresh_lo}, {bg_thresh_hi}), fg>={fg_thresh}"
            )
        if batch_size < 1 or not 0 < fg_fraction <= 1 or images_per_batch < 1:
            raise ValueError(
                f"WarpedWindowDataset: bad batch_size={batch_size}, fg_fraction={fg_fraction} or "
                f"images_per_batch={images_per_batch}"
            )
        if geometry not in GEOMETRIES:
            raise ValueError(f"WarpedWindowDataset: geometry must be one of {GEOMETRIES}, got {geometry!r}")
        self.load_image, self.size, self.padding, self.geometry = load_image, int(size), int(padding), geometry
        self.batch_size, self.images_per_batch, self.flip = int(batch_size), int(images_per_batch), bool(flip)
        self.num_fg = max(1, round(batch_size * fg_fraction))
        self.seed, self.num_batches = int(seed), num_batches
        self.boxes = [np.asarray(w.boxes, dtype=np.float32) for w in roidb]
        self.fg, self.fg_labels, self.bg = [], [], []
        for w in roidb:
            ov = w.max_overlaps
            fg = np.flatnonzero(ov >= fg_thresh)
            self.fg.append(fg)
            self.fg_labels.append(w.max_classes[fg].astype(np.int64))
            self.bg.append(np.flatnonzero((ov >= bg_thresh_lo) & (ov < bg_thresh_hi)))
        self.fg_images = np.flatnonzero([len(f) > 0 for f in self.fg])
        self.usable = np.flatnonzero([len(f) + len(b) > 0 for f, b in zip(self.fg, self.bg, strict=True)])
        if len(self.fg_images) == 0:
            raise ValueError(f"WarpedWindowDataset: no foreground windows (max IoU >= {fg_thresh}) in the roidb")

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, current_rank(), worker]))
        count = None if self.num_batches is None else len(range(worker, self.num_batches, workers))
        done = 0
        while count is None or done < count:
            yield self.sample(rng)
            done += 1

    def choose_images(self, rng: np.random.Generator) -> np.ndarray:
        """Distinct images of one batch: uniform over usable images, at least one with a foreground window."""
        picked = rng.choice(self.usable, size=min(self.images_per_batch, len(self.usable)), replace=False)
        if not any(len(self.fg[i]) for i in picked):
            picked[0] = rng.choice(self.fg_images)
        return picked

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Windows of one batch as (image index, window index, label) arrays, foreground first."""
        picked = self.choose_images(rng)
        fg = [(i, k, c) for i in picked for k, c in zip(self.fg[i], self.fg_labels[i], strict=True)]
        bg = [(i, k, 0) for i in picked for k in self.bg[i]]
        num_fg = self.num_fg if bg else self.batch_size
        chosen = [fg[j] for j in rng.integers(len(fg), size=num_fg)]
        if bg:
            chosen += [bg[j] for j in rng.integers(len(bg), size=self.batch_size - num_fg)]
        owner, window, label = (np.array(col, dtype=np.int64) for col in zip(*chosen, strict=True))
        return owner, window, label

    def sample(self, rng: np.random.Generator) -> WindowBatch:
        """One batch from :meth:`draw`: each of its images decoded once, and the random mirror of each window."""
        owner, window, label = self.draw(rng)
        picked = np.unique(owner)
        images = [self.load_image(int(i)) for i in picked]
        slot = np.searchsorted(picked, owner)
        boxes = np.stack([self.boxes[i][k] for i, k in zip(owner, window, strict=True)]).astype(np.float64)
        mirror = rng.random(len(owner)) < 0.5 if self.flip else np.zeros(len(owner), dtype=bool)
        return (
            images,
            torch.from_numpy(slot),
            torch.from_numpy(boxes),
            torch.from_numpy(label),
            torch.from_numpy(mirror),
        )

    def warped(self, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        """One batch, warped here (on the images' device)."""
        return warp_batch(self.sample(rng), self.size, self.padding, self.geometry)


def warp_batch(batch: WindowBatch, size: int, padding: int, geometry: str = "paper") -> tuple[Tensor, Tensor]:
    """``(windows float [B, 3, size, size], labels)`` of a :class:`WarpedWindowDataset` batch, on the device its
    images are on: each image's windows warped by one batched ``roi_align``, then the mirrored ones flipped."""
    images, slot, boxes, labels, mirror = batch
    out = torch.empty((len(labels), 3, size, size), dtype=torch.float32, device=labels.device)
    slot_np, boxes_np = slot.cpu().numpy(), boxes.cpu().numpy()
    for s, image in enumerate(images):
        rows = np.flatnonzero(slot_np == s)
        if len(rows):
            out[torch.from_numpy(rows).to(out.device)] = warp_windows(image, boxes_np[rows], size, padding, geometry)
    flip = mirror.to(out.device)
    out[flip] = out[flip].flip(-1)
    return out, labels


class RCNNFineTuner(L.LightningModule):
    """Fine-tunes all layers of ``model`` with a new (num_classes + 1)-way fc8 (class 0 = background)."""

    def __init__(
        self,
        model: SPPNet,
        num_classes: int,
        lr: float = 1e-3,
        lr_step: int = 20000,
        gamma: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        lr_mults: str = "caffe",
        seed: int = 0,
        size: int | None = None,
        padding: int = 16,
        geometry: str = "paper",
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"RCNNFineTuner: num_classes must be positive, got {num_classes}")
        if lr_mults not in LR_MULTS:
            raise ValueError(f"RCNNFineTuner: lr_mults must be one of {LR_MULTS}, got {lr_mults!r}")
        if lr_step < 1:
            raise ValueError(f"RCNNFineTuner: lr_step must be positive, got {lr_step}")
        self.save_hyperparameters(ignore=["model"])
        fc8 = nn.Linear(model.classifier.in_features, num_classes + 1)
        nn.init.normal_(fc8.weight, 0.0, 0.01, generator=torch.Generator().manual_seed(seed))
        nn.init.zeros_(fc8.bias)
        model.classifier = fc8
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def train(self, mode: bool = True) -> RCNNFineTuner:
        """Training mode for everything but the trunk's BatchNorm layers (the embedded recipe's nets have them):
        their statistics stay the pretrained ones, as detectron2's frozen BN, because a batch of warped windows
        from two images (25% foreground) is not a sample of the images the statistics describe. Their scale and
        shift are still tuned, like a conv bias."""
        super().train(mode)
        for module in self.model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """A batch of windows to warp (:class:`WarpedWindowDataset`) is warped here, on the training device."""
        if isinstance(batch, list | tuple) and len(batch) == 5:
            hp = self.hparams
            return warp_batch(batch, int(hp.size or self.model.input_size), int(hp.padding), str(hp.geometry))
        return batch

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        logits = self.model(images)
        loss = F.cross_entropy(logits, labels)
        acc = (logits.argmax(1) == labels).float().mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(labels))
        self.log("train/acc", acc, batch_size=len(labels))
        return loss

    def param_groups(self) -> list[dict[str, Any]]:
        """SGD groups: with ``caffe`` multipliers biases get lr x2 and no decay, fc8 x10 (weights) / x20 (bias)."""
        hp = self.hparams
        if hp.lr_mults == "none":
            return [{"params": list(self.model.parameters()), "lr": hp.lr, "weight_decay": hp.weight_decay}]
        fc8 = {id(p) for p in self.model.classifier.parameters()}
        groups: dict[tuple[float, float], list[nn.Parameter]] = {}
        for name, p in self.model.named_parameters():
            is_bias = name.endswith("bias")
            mult = (10.0 if id(p) in fc8 else 1.0) * (2.0 if is_bias else 1.0)
            groups.setdefault((mult, 0.0 if is_bias else 1.0), []).append(p)
        return [{"params": ps, "lr": hp.lr * m, "weight_decay": hp.weight_decay * d} for (m, d), ps in groups.items()]

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.SGD(self.param_groups(), lr=hp.lr, momentum=hp.momentum)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=hp.lr_step, gamma=hp.gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def finetune_rcnn(
    model: SPPNet,
    roidb: Sequence[ImageWindows],
    load_image: Callable[[int], Tensor],
    num_classes: int,
    cfg: Mapping[str, Any] | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
    ckpt_dir: str | Path | None = None,
) -> SPPNet:
    """Fine-tune ``model`` R-CNN style for ``cfg["max_steps"]`` steps; returns it (new fc8) on CPU in eval mode.

    With ``ckpt_dir``, ``last.ckpt`` is saved there every ~5% of the steps and a killed run resumes from it.

    ``cfg`` overrides :data:`FINETUNE_DEFAULTS` (plus the required ``max_steps``, alias ``steps``); ``size`` None =
    the model's input size. ``trainer_kwargs`` override the Trainer defaults (one device, no logger/checkpoints).
    """
    c = merge_step_cfg(cfg, FINETUNE_DEFAULTS, "finetune_rcnn", require_steps=True)
    dataset = WarpedWindowDataset(
        roidb,
        load_image,
        size=int(c["size"] or model.input_size),
        padding=c["padding"],
        fg_thresh=c["fg_thresh"],
        bg_thresh_hi=c["bg_thresh_hi"],
        bg_thresh_lo=c["bg_thresh_lo"],
        batch_size=c["batch_size"],
        fg_fraction=c["fg_fraction"],
        images_per_batch=c["images_per_batch"],
        seed=c["seed"],
        flip=c["flip"],
        geometry=c["geometry"],
    )
    workers = int(c["num_workers"])
    loader_kw: dict[str, Any] = {"batch_size": None, "num_workers": workers}
    if workers > 0:  # decoding overlaps the step
        loader_kw |= {"persistent_workers": True, "prefetch_factor": 4, "pin_memory": torch.cuda.is_available()}
    loader = DataLoader(dataset, **loader_kw)
    module = RCNNFineTuner(
        model,
        num_classes,
        lr=c["lr"],
        lr_step=c["lr_step"],
        gamma=c["gamma"],
        momentum=c["momentum"],
        weight_decay=c["weight_decay"],
        lr_mults=c["lr_mults"],
        seed=c["seed"],
        size=dataset.size,
        padding=dataset.padding,
        geometry=dataset.geometry,
    )
    kwargs: dict[str, Any] = {
        "max_steps": int(c["max_steps"]),
        "max_epochs": -1,
        "devices": 1,
        **QUIET,
        **dict(trainer_kwargs or {}),
    }
    ckpt_path = None
    if ckpt_dir is not None:
        kwargs, ckpt_path = with_step_checkpoints(kwargs, ckpt_dir, int(c["max_steps"]))
    quiet_trainer(**kwargs).fit(module, train_dataloaders=loader, ckpt_path=ckpt_path)
    return module.model.cpu().eval()
