"""Fine-tuning fc6, fc7 and a new (N+1)-way fc8 on pooled window features (paper §4.1; ``spp_finetune_voc.m``).

Mini-batches hold 128 windows, 25% foreground (max IoU >= 0.5 with a GT, label = class of the best GT, GT rows
included) and 75% background (max IoU in [0.1, 0.5), label 0), drawn across all training images. SGD with
momentum 0.9, weight decay 5e-4, dropout 0.5 after fc6 and fc7, fc8 ~ N(0, 0.01) with bias 0.

Schedules (iteration, lr), both expressible with ``lr_steps``:
- paper: 250k iterations at 1e-4 then 50k at 1e-5 (:data:`PAPER_SCHEDULE`, ``max_steps`` 300000);
- authors' code ("vstep" solver): 1e-3, 1e-4, 1e-5 for 30k iterations each (:data:`AUTHORS_SCHEDULE`); their
  ``max_iter`` is 200k and they keep the snapshot with the lowest error on VOC07 *test* windows, which we do not.
``caffe_bias=True`` applies the prototxts' bias rules (biases: lr x2, no weight decay on fc8's bias).

The batches come from a source (:mod:`.batches`): SPP-net's pools its windows on the fly from the conv5 cache
as the authors do (chunks of iterations over random image subsets, a random scale per window, flipped images);
precomputed rows (a per-window cache, the tests) draw fg and bg windows uniformly from all images.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from sppnet_exp.detection.features.heads import FCHead
from sppnet_exp.detection.finetune.batches import CachedRows
from sppnet_exp.detection.finetune.sampling import WindowSampler
from sppnet_exp.detection.structures.roidb import ImageWindows
from sppnet_exp.models.layers import fc_block
from sppnet_exp.utils.trainer import QUIET, quiet_trainer

__all__ = [
    "AUTHORS_SCHEDULE",
    "PAPER_SCHEDULE",
    "FCFineTuner",
    "finetune_fc",
    "fit_finetuner",
    "lr_at",
]

log = logging.getLogger(__name__)

PAPER_SCHEDULE: list[tuple[int, float]] = [(0, 1e-4), (250_000, 1e-5)]
PAPER_MAX_STEPS = 300_000
AUTHORS_SCHEDULE: list[tuple[int, float]] = [(0, 1e-3), (30_000, 1e-4), (60_000, 1e-5)]
AUTHORS_MAX_STEPS = 90_000


def lr_at(step: int, lr_steps: Sequence[tuple[int, float]]) -> float:
    """Learning rate of the last (iteration, lr) entry with iteration <= step."""
    lr = lr_steps[0][1]
    for it, value in lr_steps:
        if step >= it:
            lr = value
    return lr


def _check_steps(lr_steps: Sequence[Sequence[float]]) -> list[tuple[int, float]]:
    steps = [(int(it), float(lr)) for it, lr in lr_steps]
    if not steps or steps[0][0] != 0:
        raise ValueError(f"lr_steps must start at iteration 0, got {lr_steps}")
    if any(b[0] <= a[0] for a, b in zip(steps, steps[1:])):
        raise ValueError(f"lr_steps iterations must increase, got {lr_steps}")
    if any(lr <= 0 for _, lr in steps):
        raise ValueError(f"lr_steps learning rates must be positive, got {lr_steps}")
    return steps


def _load_fc(layer: nn.Linear, src: nn.Linear | Mapping[str, Tensor], name: str) -> None:
    w, b = (src.weight, src.bias) if isinstance(src, nn.Module) else (src[f"{name}.weight"], src[f"{name}.bias"])
    if tuple(w.shape) != tuple(layer.weight.shape):
        raise ValueError(f"init_fc: {name} weight is {tuple(w.shape)}, expected {tuple(layer.weight.shape)}")
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.bias.copy_(b)


class FCFineTuner(L.LightningModule):
    """fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout -> fc8 ((N+1)-way, 0 = background) on pool5 features."""

    def __init__(
        self,
        in_dim: int,
        fc_width: int,
        num_classes: int,
        init_fc: nn.Module | Mapping[str, Tensor] | None = None,
        dropout: float = 0.5,
        lr: float = 1e-4,
        lr_steps: Sequence[Sequence[float]] | None = None,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        caffe_bias: bool = False,
        fc8_std: float = 0.01,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["init_fc"])
        self.lr_steps = _check_steps(lr_steps if lr_steps is not None else [(0, lr)])
        self.fc = fc_block(in_dim, fc_width, dropout)
        self.fc8 = nn.Linear(fc_width, num_classes + 1)
        if init_fc is None:
            for layer in (self.fc.fc6, self.fc.fc7):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        else:
            for name in ("fc6", "fc7"):
                _load_fc(
                    getattr(self.fc, name), getattr(init_fc, name) if isinstance(init_fc, nn.Module) else init_fc, name
                )
        nn.init.normal_(self.fc8.weight, 0.0, fc8_std)
        nn.init.zeros_(self.fc8.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(N+1)-way logits."""
        return self.fc8(self.fc(x))

    def finetuned_head(self) -> FCHead:
        """A copy of the tuned fc6/fc7 (no dropout) for feature extraction."""
        return FCHead.from_fc(self.fc).eval()

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss.detach(), prog_bar=True, on_step=on_step, on_epoch=not on_step)
        self.log(f"{stage}/acc", acc, on_step=on_step, on_epoch=not on_step)
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss = self._step(batch, "train")
        self.log("train/lr", lr_at(self.global_step, self.lr_steps), on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        lr0 = self.lr_steps[0][1]
        if hp.caffe_bias:  # blobs_lr 1/2 everywhere; weight_decay 1/0 on fc8 only (fc6/fc7 use the default 1/1)
            groups = [
                {"params": [self.fc.fc6.weight, self.fc.fc7.weight, self.fc8.weight], "lr": lr0},
                {"params": [self.fc.fc6.bias, self.fc.fc7.bias], "lr": 2 * lr0},
                {"params": [self.fc8.bias], "lr": 2 * lr0, "weight_decay": 0.0},
            ]
        else:
            groups = [{"params": list(self.parameters()), "lr": lr0}]
        opt = torch.optim.SGD(groups, lr=lr0, momentum=hp.momentum, weight_decay=hp.weight_decay)
        steps = self.lr_steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, steps) / lr0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}


DEFAULTS: dict[str, Any] = {
    "fc_width": 4096,
    "dropout": 0.5,
    "lr": 1e-4,
    "lr_steps": PAPER_SCHEDULE,
    "max_steps": PAPER_MAX_STEPS,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "caffe_bias": False,
    "batch_size": 128,
    "fg_fraction": 0.25,
    "fg_thresh": 0.5,
    "bg_thresh": (0.1, 0.5),
    "val_fraction": 0.0,
    "val_batches": 50,
    "val_every": 2000,
    "num_workers": 0,
    "seed": 6,
}


def merge_step_cfg(
    cfg: Mapping[str, Any] | None, defaults: Mapping[str, Any], who: str, require_steps: bool = False
) -> dict[str, Any]:
    """``defaults`` updated by ``cfg``, where ``steps`` (the detection configs' name) stands for ``max_steps``.

    Unknown keys are an error (a typo must not be ignored), as are ``steps`` and ``max_steps`` that disagree and,
    with ``require_steps``, neither of them.
    """
    user = dict(cfg or {})
    if "steps" in user:
        steps = user.pop("steps")
        if "max_steps" in user and int(user["max_steps"]) != int(steps):
            raise ValueError(f"{who}: steps={steps} and max_steps={user['max_steps']} disagree")
        user["max_steps"] = steps
    if require_steps and "max_steps" not in user:
        raise ValueError(f"{who}: cfg needs max_steps (or steps), the number of SGD iterations")
    unknown = sorted(set(user) - set(defaults) - {"max_steps"})
    if unknown:
        raise ValueError(
            f"{who}: unknown cfg keys {unknown} (unknown keys are not ignored); known: {sorted(defaults)}, steps"
        )
    return {**defaults, **user}


def _finetune_cfg(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """DEFAULTS updated by ``cfg`` (see :func:`merge_step_cfg`)."""
    return merge_step_cfg(cfg, DEFAULTS, "fine-tune config")


def fit_finetuner(
    roidb: Sequence[ImageWindows],
    source: Any,
    init_fc: nn.Module | Mapping[str, Tensor] | None,
    num_classes: int,
    cfg: Mapping[str, Any] | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
    ckpt_dir: str | Path | None = None,
) -> FCFineTuner:
    """Fine-tune with a Lightning Trainer and return the module (``.fc8``, ``.finetuned_head()``).

    ``source`` makes the batches: a :class:`~.batches.PooledWindows` (SPP-net, pooled on the fly) or any object
    with ``dim(roidb)`` and ``batches(roidb, images, sampler_kw, steps, seed, train)``; a plain callable
    ``pooled(i) -> (K_i, D)`` is taken as precomputed rows (:class:`~.batches.CachedRows`).
    With ``ckpt_dir``, ``last.ckpt`` is saved there every ~5% of the steps and a killed run resumes from it.

    ``cfg`` keys (defaults in :data:`DEFAULTS`): fc_width (ignored when ``init_fc`` is given), dropout, lr,
    lr_steps, max_steps (alias steps), momentum, weight_decay, caffe_bias, batch_size, fg_fraction, fg_thresh,
    bg_thresh, val_fraction (held-out images for val/loss and val/acc), val_batches, val_every, num_workers, seed.
    ``trainer_kwargs`` go to ``L.Trainer`` and win over the defaults here (no logger, no checkpoints, no progress
    bar).
    """
    c = _finetune_cfg(cfg)
    if not roidb:
        raise ValueError("fit_finetuner: empty roidb")
    if callable(source) and not hasattr(source, "batches"):
        source = CachedRows(source)
    in_dim = int(source.dim(roidb))
    fc_width = int(c["fc_width"])
    if init_fc is not None:
        fc6 = init_fc.fc6.weight if isinstance(init_fc, nn.Module) else init_fc["fc6.weight"]
        fc_width = int(fc6.shape[0])
    L.seed_everything(int(c["seed"]), workers=True, verbose=False)
    rng = np.random.default_rng(int(c["seed"]))
    n_val = int(math.floor(float(c["val_fraction"]) * len(roidb)))
    perm = rng.permutation(len(roidb))
    val_imgs, train_imgs = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    sampler_kw = {k: c[k] for k in ("batch_size", "fg_fraction", "fg_thresh")} | {"bg_thresh": tuple(c["bg_thresh"])}
    train_sampler = WindowSampler(roidb, images=train_imgs, seed=int(c["seed"]), **sampler_kw)
    log.info(
        "fine-tune: %d fg / %d bg windows in %d images, batch %s",
        train_sampler.num_fg,
        train_sampler.num_bg,
        len(train_imgs),
        train_sampler.composition(),
    )
    max_steps = int(c["max_steps"])
    workers = int(c["num_workers"])
    loader_kw: dict[str, Any] = {"batch_size": None, "num_workers": workers}
    if workers > 0:  # reads and pooling overlap the training step
        loader_kw |= {"persistent_workers": True, "prefetch_factor": 4, "pin_memory": torch.cuda.is_available()}
    train_dl = DataLoader(source.batches(roidb, train_imgs, sampler_kw, max_steps, int(c["seed"])), **loader_kw)
    val_dl = None
    if n_val:
        val = source.batches(roidb, val_imgs, sampler_kw, int(c["val_batches"]), int(c["seed"]) + 1, train=False)
        val_dl = DataLoader(val, batch_size=None)
    model = FCFineTuner(
        in_dim,
        fc_width,
        num_classes,
        init_fc=init_fc,
        dropout=float(c["dropout"]),
        lr=float(c["lr"]),
        lr_steps=c["lr_steps"],
        momentum=float(c["momentum"]),
        weight_decay=float(c["weight_decay"]),
        caffe_bias=bool(c["caffe_bias"]),
    )
    kwargs: dict[str, Any] = {"max_steps": max_steps, **QUIET}
    if val_dl is not None:
        kwargs |= {"val_check_interval": min(int(c["val_every"]), max_steps), "check_val_every_n_epoch": None}
    else:
        kwargs |= {"limit_val_batches": 0}
    kwargs |= dict(trainer_kwargs or {})
    ckpt_path = None
    if ckpt_dir is not None:
        kwargs, ckpt_path = with_step_checkpoints(kwargs, ckpt_dir, max_steps)
    trainer = quiet_trainer(**kwargs)
    trainer.fit(model, train_dataloaders=train_dl, val_dataloaders=val_dl, ckpt_path=ckpt_path)
    return model


def with_step_checkpoints(
    kwargs: dict[str, Any], ckpt_dir: str | Path, max_steps: int
) -> tuple[dict[str, Any], str | None]:
    """Trainer kwargs that save ``last.ckpt`` in ``ckpt_dir`` every ~5% of ``max_steps``, and the checkpoint to
    resume from when one is there (a killed fine-tuning continues where it stopped)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    every = max(1, max_steps // 20)
    ckpt = ModelCheckpoint(dirpath=str(ckpt_dir), save_last=True, save_top_k=0, every_n_train_steps=every)
    kwargs = {**kwargs, "enable_checkpointing": True, "callbacks": [*kwargs.get("callbacks", []), ckpt]}
    last = Path(ckpt_dir) / "last.ckpt"
    return kwargs, (str(last) if last.is_file() else None)


def finetune_fc(
    roidb: Sequence[ImageWindows],
    source: Any,
    init_fc: nn.Module | Mapping[str, Tensor] | None,
    num_classes: int,
    cfg: Mapping[str, Any] | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
    ckpt_dir: str | Path | None = None,
) -> FCHead:
    """Fine-tune (see :func:`fit_finetuner`) and return the tuned fc6/fc7 as an :class:`FCHead` on the CPU."""
    return fit_finetuner(roidb, source, init_fc, num_classes, cfg, trainer_kwargs, ckpt_dir).finetuned_head().cpu()
