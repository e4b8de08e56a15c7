"""Fine-tuning fc6, fc7 and a new (N+1)-way fc8 on cached pool5 features (paper §4.1; ``spp_finetune_voc.m``).

Mini-batches hold 128 windows, 25% foreground (max IoU >= 0.5 with a GT, label = class of the best GT, GT rows
included) and 75% background (max IoU in [0.1, 0.5), label 0), drawn across all training images. SGD with
momentum 0.9, weight decay 5e-4, dropout 0.5 after fc6 and fc7, fc8 ~ N(0, 0.01) with bias 0.

Schedules (iteration, lr), both expressible with ``lr_steps``:
- paper: 250k iterations at 1e-4 then 50k at 1e-5 (:data:`PAPER_SCHEDULE`, ``max_steps`` 300000);
- authors' code ("vstep" solver): 1e-3, 1e-4, 1e-5 for 30k iterations each (:data:`AUTHORS_SCHEDULE`); their
  ``max_iter`` is 200k and they keep the snapshot with the lowest error on VOC07 *test* windows, which we do not.
``caffe_bias=True`` applies the prototxts' bias rules (biases: lr x2, no weight decay on fc8's bias).

Sampling differs from the authors' in one way: they draw each 500-iteration chunk from a random image subset (to
bound disk reads); here fg and bg windows are drawn uniformly from all images (rows are read from memmaps).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from sppnet_exp.detection.features.heads import FCHead
from sppnet_exp.detection.structures.roidb import ImageWindows

__all__ = [
    "AUTHORS_SCHEDULE",
    "PAPER_SCHEDULE",
    "FCFineTuner",
    "FineTuneWindows",
    "WindowSampler",
    "finetune_fc",
    "fit_finetuner",
    "gather_rows",
    "lr_at",
]

log = logging.getLogger(__name__)

PAPER_SCHEDULE: list[tuple[int, float]] = [(0, 1e-4), (250_000, 1e-5)]
PAPER_MAX_STEPS = 300_000
AUTHORS_SCHEDULE: list[tuple[int, float]] = [(0, 1e-3), (30_000, 1e-4), (60_000, 1e-5)]
AUTHORS_MAX_STEPS = 90_000

PooledFn = Callable[[int], np.ndarray]


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


class _Cycler:
    """Endless draws from range(n): walk a seeded permutation, reshuffle when it runs out."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.n, self.rng = n, rng
        self.perm = rng.permutation(n)
        self.pos = 0

    def take(self, k: int) -> np.ndarray:
        out = []
        while k > 0:
            if self.pos == self.n:
                self.perm, self.pos = self.rng.permutation(self.n), 0
            m = min(k, self.n - self.pos)
            out.append(self.perm[self.pos : self.pos + m])
            self.pos += m
            k -= m
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


class WindowSampler:
    """Foreground/background window pools over a roidb and seeded mini-batch draws.

    Each batch takes ``round(fg_fraction * batch_size)`` fg windows (fewer when the whole pool is smaller, the rest
    filled with bg) and bg for the remainder; with no bg at all the batch is all fg. Each pool is walked through a
    random permutation, reshuffled when used up, so windows repeat only across cycles.
    """

    def __init__(
        self,
        roidb: Sequence[ImageWindows],
        batch_size: int = 128,
        fg_fraction: float = 0.25,
        fg_thresh: float = 0.5,
        bg_thresh: tuple[float, float] = (0.1, 0.5),
        images: Sequence[int] | None = None,
        seed: int = 0,
    ) -> None:
        if batch_size < 1 or not 0 <= fg_fraction <= 1:
            raise ValueError(f"WindowSampler: bad batch_size {batch_size} or fg_fraction {fg_fraction}")
        self.batch_size = batch_size
        self.fg_per_batch = int(round(fg_fraction * batch_size))
        fg_img, fg_row, fg_lab, bg_img, bg_row = [], [], [], [], []
        for i in range(len(roidb)) if images is None else images:
            w = roidb[i]
            mo, mc = w.max_overlaps, w.max_classes
            fg = np.flatnonzero(mo >= fg_thresh)
            bg = np.flatnonzero((mo >= bg_thresh[0]) & (mo < bg_thresh[1]))
            fg_img.append(np.full(len(fg), i, np.int64))
            fg_row.append(fg)
            fg_lab.append(mc[fg])
            bg_img.append(np.full(len(bg), i, np.int64))
            bg_row.append(bg)
        cat = lambda parts: np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)  # noqa: E731
        self.fg_img, self.fg_row, self.fg_label = cat(fg_img), cat(fg_row), cat(fg_lab)
        self.bg_img, self.bg_row = cat(bg_img), cat(bg_row)
        if len(self.fg_img) == 0 and len(self.bg_img) == 0:
            raise ValueError("WindowSampler: no foreground or background windows in the roidb")
        if len(self.fg_img) and self.fg_label.min() < 1:
            raise ValueError("WindowSampler: a foreground window has no class (overlaps inconsistent)")
        self.reseed(seed)

    @property
    def num_fg(self) -> int:
        return len(self.fg_img)

    @property
    def num_bg(self) -> int:
        return len(self.bg_img)

    def reseed(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self._fg = _Cycler(self.num_fg, rng) if self.num_fg else None
        self._bg = _Cycler(self.num_bg, rng) if self.num_bg else None

    def composition(self) -> tuple[int, int]:
        """(fg, bg) windows per batch."""
        if self.num_bg == 0:
            return self.batch_size, 0
        n_fg = min(self.fg_per_batch, self.num_fg)
        return n_fg, self.batch_size - n_fg

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One batch: (image index, row index, label) arrays, fg first."""
        n_fg, n_bg = self.composition()
        f = self._fg.take(n_fg) if n_fg else np.zeros(0, np.int64)
        b = self._bg.take(n_bg) if n_bg else np.zeros(0, np.int64)
        img = np.concatenate([self.fg_img[f], self.bg_img[b]])
        row = np.concatenate([self.fg_row[f], self.bg_row[b]])
        lab = np.concatenate([self.fg_label[f], np.zeros(len(b), np.int64)])
        return img, row, lab


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
    """Endless (or ``steps``-long) stream of ``(features float32 (B, D), labels int64 (B,))`` batches.

    Use with ``DataLoader(batch_size=None)``. Worker w of rank r draws with seed ``seed + 1000 r + w`` and gets
    its share of ``steps``.
    """

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
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        dist = torch.distributed
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        self.sampler.reseed(self.seed + 1000 * rank + wid)
        n = None if self.steps is None else self.steps // nw + (1 if wid < self.steps % nw else 0)
        done = 0
        while n is None or done < n:
            img, row, lab = self.sampler.sample()
            x = gather_rows(self.pooled, img, row, self.sizes)
            yield torch.from_numpy(x), torch.from_numpy(lab)
            done += 1


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
        self.fc = nn.Sequential(
            OrderedDict(
                fc6=nn.Linear(in_dim, fc_width),
                relu6=nn.ReLU(inplace=True),
                drop6=nn.Dropout(dropout),
                fc7=nn.Linear(fc_width, fc_width),
                relu7=nn.ReLU(inplace=True),
                drop7=nn.Dropout(dropout),
            )
        )
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
    pooled: PooledFn,
    init_fc: nn.Module | Mapping[str, Tensor] | None,
    num_classes: int,
    cfg: Mapping[str, Any] | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
    ckpt_dir: str | Path | None = None,
) -> FCFineTuner:
    """Fine-tune with a Lightning Trainer and return the module (``.fc8``, ``.finetuned_head()``).

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
    in_dim = int(pooled(0).shape[1])
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
    train_dl = DataLoader(
        FineTuneWindows(roidb, pooled, train_sampler, steps=max_steps, seed=int(c["seed"])),
        batch_size=None,
        num_workers=int(c["num_workers"]),
    )
    val_dl = None
    if n_val:
        val_sampler = WindowSampler(roidb, images=val_imgs, seed=int(c["seed"]) + 1, **sampler_kw)
        val_dl = DataLoader(
            FineTuneWindows(roidb, pooled, val_sampler, steps=int(c["val_batches"]), seed=int(c["seed"]) + 1),
            batch_size=None,
        )
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
    kwargs: dict[str, Any] = {
        "max_steps": max_steps,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    if val_dl is not None:
        kwargs |= {"val_check_interval": min(int(c["val_every"]), max_steps), "check_val_every_n_epoch": None}
    else:
        kwargs |= {"limit_val_batches": 0}
    kwargs |= dict(trainer_kwargs or {})
    ckpt_path = None
    if ckpt_dir is not None:
        kwargs, ckpt_path = with_step_checkpoints(kwargs, ckpt_dir, max_steps)
    trainer = L.Trainer(**kwargs)
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
    pooled: PooledFn,
    init_fc: nn.Module | Mapping[str, Tensor] | None,
    num_classes: int,
    cfg: Mapping[str, Any] | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
    ckpt_dir: str | Path | None = None,
) -> FCHead:
    """Fine-tune (see :func:`fit_finetuner`) and return the tuned fc6/fc7 as an :class:`FCHead` on the CPU."""
    return fit_finetuner(roidb, pooled, init_fc, num_classes, cfg, trainer_kwargs, ckpt_dir).finetuned_head().cpu()
