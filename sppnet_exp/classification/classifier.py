"""The classification LightningModule: no-SPP, SPP single-size and SPP multi-size training; multi-view tests."""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection, MinMetric, SumMetric
from torchmetrics.classification import MulticlassAccuracy, MultilabelAveragePrecision

from sppnet_exp.classification.map_views import MapViewSettings, MapViewTester
from sppnet_exp.classification.sizes import SizeSchedule
from sppnet_exp.data.batches import finish_batch
from sppnet_exp.data.device_decode import EncodedBatch
from sppnet_exp.data.views import MAP_VIEWS
from sppnet_exp.models import build_model

PLATEAU_WINDOW = 10  # steps of the running training loss that decides when a run leaves the initial plateau
PLATEAU_FRACTION = 0.95  # ... once it is below this fraction of chance, ln(number of classes)

# The batch hooks live in the module on purpose (they also serve loaders passed without a DataModule);
# Lightning warns about that choice on every fit.
warnings.filterwarnings("ignore", message=r".*overridden `on_(before|after)_batch_transfer` in `LightningModule` but")


def _error_metrics(num_classes: int, multilabel: bool) -> MetricCollection:
    """Top-1/top-5 accuracy (turned into errors when logged), or mAP for multi-label data."""
    if multilabel:
        # Targets of -1 (VOC "difficult only", with difficult=ignore) count neither way.
        ap = MultilabelAveragePrecision(num_labels=num_classes, average="macro", ignore_index=-1)
        return MetricCollection({"mAP": ap})
    metrics: dict[str, nn.Module] = {"top1": MulticlassAccuracy(num_classes, top_k=1, average="micro")}
    if num_classes >= 5:
        metrics["top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
    return MetricCollection(metrics)


def _as_percent(values: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Accuracies → errors in percent (`top1` → `<prefix>top1_err`); mAP → percent."""
    out = {}
    for key, value in values.items():
        if key.startswith("top"):
            out[f"{prefix}{key}_err"] = 100.0 * (1.0 - value)
        else:
            out[f"{prefix}{key}"] = 100.0 * value
    return out


class SPPClassifier(L.LightningModule):
    """An SPP-net (or its no-SPP baseline) trained with SGD as in the paper, §3.1.

    Training crops arrive at the full crop size; the size schedule resizes the whole batch to the epoch's
    size (e.g. 224 → 180: same content, lower resolution), so every DDP rank switches at the same epoch.
    Tests average softmax scores over the views each test loader yields (10-view, 1-crop or 1-full); the views
    of all images of a batch go through the network in one forward pass. The views pooled from feature maps
    (``10view_maps``, ``multiview``, ``multiview_full``; :mod:`.map_views`, Table 4) take whole images and the
    geometry ``map_views`` (the keyword arguments of :class:`~.map_views.MapViewSettings`).

    Batch hooks: ``on_before_batch_transfer`` decodes ``data.decode=gpu`` batches on this module's device
    (:mod:`sppnet_exp.data.device_decode`); ``on_after_batch_transfer`` normalises uint8 batches and applies
    their PCA lighting on the device (:mod:`sppnet_exp.data.batches`). ``channels_last`` keeps the network and
    its inputs in NHWC memory (faster convolutions on tensor cores; the same numbers).
    """

    def __init__(
        self,
        model: dict[str, Any],
        num_classes: int,
        multilabel: bool = False,
        sizes: dict[str, Any] | None = None,
        optim: dict[str, Any] | None = None,
        eval_views: Sequence[str] = ("10view",),
        seed: int = 0,
        channels_last: bool = False,
        map_views: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # channels_last is a speed setting and the map views' geometry a test setting: neither is part of the model
        self.save_hyperparameters(ignore=["channels_last", "map_views"])
        self.channels_last = bool(channels_last)
        self.net = build_model(**{**model, "num_classes": num_classes})
        self.multilabel = multilabel
        self.sizes = SizeSchedule(
            **(sizes or {"schedule": "fixed", "sizes": [model.get("input_size", 224)]}), seed=seed
        )
        self.optim_cfg = dict(optim or {})
        self.eval_views = list(eval_views)
        self.map_settings = MapViewSettings(**(map_views or {}))
        self.train_metrics = _error_metrics(num_classes, multilabel)
        self.val_metrics = _error_metrics(num_classes, multilabel)
        self.test_metrics = nn.ModuleDict({v: _error_metrics(num_classes, multilabel) for v in self.eval_views})
        self.test_counts = nn.ModuleDict({v: SumMetric() for v in self.eval_views})  # images tested per view
        self.train_loss = MeanMetric()
        self.skipped = SumMetric()  # corrupt training images skipped this epoch (all ranks)
        self.val_best = MinMetric()
        self.skipped_total = 0
        # The step at which the run leaves the initial loss plateau: the first whose mean loss over the last
        # PLATEAU_WINDOW steps is below PLATEAU_FRACTION * ln(C) (chance); recorded in results.json.
        self.plateau_threshold = PLATEAU_FRACTION * math.log(num_classes) if not multilabel else None
        self.recent_losses: deque[float] = deque(maxlen=PLATEAU_WINDOW)
        self.plateau_exit: dict[str, int] | None = None
        self.predictions_dir: Path | None = None  # set by the task: where test() writes per-image scores

    # -- batches on the device -----------------------------------------------------------------------------
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Decode ``data.decode=gpu`` batches on this module's device (other batches pass through)."""
        if isinstance(batch, EncodedBatch):
            return batch.decode(self.device)
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 batches → normalised float (with their PCA lighting), on the device."""
        return finish_batch(batch)

    def setup(self, stage: str) -> None:
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)

    def _net(self, x: Tensor) -> Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    # -- forward ------------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of images N×3×H×W."""
        return self._net(x)

    def predict_views(self, views: Tensor) -> Tensor:
        """Scores for B×V×3×H×W: softmax (sigmoid if multi-label) averaged over the V views (one forward)."""
        b, v = views.shape[:2]
        logits = self._net(views.flatten(0, 1)).view(b, v, -1)
        probs = logits.sigmoid() if self.multilabel else logits.softmax(-1)
        return probs.mean(1)

    def _loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.multilabel:
            known = (targets >= 0).float()
            return F.binary_cross_entropy_with_logits(logits, targets.clamp(min=0).float(), weight=known)
        return F.cross_entropy(logits, targets)

    def _update(self, metrics: MetricCollection, scores: Tensor, targets: Tensor) -> None:
        metrics.update(scores, targets.long() if self.multilabel else targets)

    # -- training -----------------------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor, int], batch_idx: int) -> Tensor:
        images, targets, n_skipped = batch
        self.skipped.update(float(n_skipped))
        if images.shape[0] == 0:  # every image of this batch was unreadable (skipped and counted)
            return None
        size = self.sizes.size_at(self.current_epoch, self.global_step, self._total_steps())
        if images.shape[-1] != size or images.shape[-2] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        logits = self._net(images)
        loss = self._loss(logits, targets)
        self.train_loss.update(loss.detach())
        self._track_plateau(float(loss.detach()))
        self._update(self.train_metrics, logits.detach(), targets)
        self.log("train/loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False)
        self.log(
            "train/input_size", float(size), on_step=False, on_epoch=True, sync_dist=False, batch_size=len(targets)
        )
        return loss

    def _track_plateau(self, loss: float) -> None:
        if self.plateau_threshold is None or self.plateau_exit is not None:
            return
        self.recent_losses.append(loss)
        full = len(self.recent_losses) == self.recent_losses.maxlen
        if full and sum(self.recent_losses) / len(self.recent_losses) < self.plateau_threshold:
            self.plateau_exit = {"step": int(self.global_step), "epoch": int(self.current_epoch)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["plateau_exit"] = self.plateau_exit
        checkpoint["recent_losses"] = list(self.recent_losses)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.plateau_exit = checkpoint.get("plateau_exit")
        self.recent_losses.extend(checkpoint.get("recent_losses", []))

    def _total_steps(self) -> int | None:
        """The run's optimizer steps (what a size schedule by segments divides); None without a trainer."""
        if self.sizes.segments is None:
            return None
        total = self.trainer.estimated_stepping_batches
        return int(total) if total != float("inf") else None

    def on_train_epoch_end(self) -> None:
        self.log("train/loss_epoch", self.train_loss.compute(), sync_dist=False)
        self.log_dict(_as_percent(self.train_metrics.compute(), "train/"))
        skipped = self.skipped.compute()
        self.skipped_total += int(skipped.item())
        self.log("train/skipped_images", skipped)
        self.train_loss.reset()
        self.train_metrics.reset()
        self.skipped.reset()

    # -- validation (1 centre crop, used for the LR plateau) ---------------------------------------------------
    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        views, targets = batch
        self._update(self.val_metrics, self.predict_views(views), targets)

    def on_validation_epoch_end(self) -> None:
        values = _as_percent(self.val_metrics.compute(), "val/")
        self.val_metrics.reset()
        self.log_dict(values, prog_bar=True)
        key = "val/top1_err" if "val/top1_err" in values else "val/mAP"
        if key == "val/top1_err" and not self.trainer.sanity_checking:
            self.val_best.update(values[key])
            self.log("val/top1_err_best", self.val_best.compute())

    # -- test (one loader per view) --------------------------------------------------------------------------
    def on_test_epoch_start(self) -> None:
        self.test_scores: dict[str, list[tuple[Tensor, Tensor]]] = {v: [] for v in self.eval_views}

    def test_step(self, batch: tuple[Any, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        views, targets = batch
        view = self.eval_views[dataloader_idx]
        if view in MAP_VIEWS:
            scores = MapViewTester(self.net, self.map_settings).scores(views, view, self.multilabel)
        else:
            scores = self.predict_views(views)
        self._update(self.test_metrics[view], scores, targets)
        self.test_counts[view].update(float(targets.shape[0]))
        self.test_scores[view].append((scores.detach().cpu(), targets.detach().cpu()))

    def _save_test_scores(self) -> None:
        """``<predictions_dir>/<view>.npz`` (the task sets ``<run_dir>/predictions``; unset: nothing written):
        every test image's scores (float16), its top-1 class and its target, in loader order (one process only: the
        DDP shards' order is the sampler's). Paired per-image comparisons of two cells
        (``sppnet_exp.reporting.noise``) read them."""
        if self.trainer.world_size != 1 or self.predictions_dir is None:
            return
        import numpy as np

        from sppnet_exp.utils.io import atomic_savez

        out = Path(self.predictions_dir)
        for view, parts in self.test_scores.items():
            if parts:
                full = torch.cat([p[0] for p in parts]).float()
                targets = torch.cat([p[1] for p in parts]).numpy()
                # float16 keeps the file small (50,000 x 1,000 scores: 100 MB) but may tie two classes the float32
                # scores order; the top-1 class of the float32 scores (the one the metric counted) is kept as well
                top1 = full.argmax(1).numpy().astype(np.int32)
                atomic_savez(out / f"{view}.npz", scores=full.numpy().astype(np.float16), targets=targets, top1=top1)

    def on_test_epoch_end(self) -> None:
        self._save_test_scores()
        for view, metrics in self.test_metrics.items():
            values = _as_percent(metrics.compute(), f"test/{view}/")
            metrics.reset()
            values[f"test/{view}/n"] = self.test_counts[view].compute()
            self.test_counts[view].reset()
            for key, value in values.items():
                self.log(key, value, add_dataloader_idx=False)

    # -- optimisation --------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        # The fallbacks are the library API's (``SPPClassifier(optim=None)``, no Hydra config): the paper's SGD, §3.1;
        # a run from the CLI always passes conf/optim/sgd.yaml whole.
        cfg = self.optim_cfg
        optimizer = torch.optim.SGD(
            self.net.parameters(),
            lr=cfg.get("lr", 0.01),
            momentum=cfg.get("momentum", 0.9),
            weight_decay=cfg.get("weight_decay", 5e-4),
        )
        sched = dict(cfg.get("scheduler") or {"name": "plateau"})
        name = sched.pop("name")
        if name == "plateau":
            # "divided by 10 when the error plateaus" (twice: min_lr = lr / 100).
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode="min",
                factor=sched.get("factor", 0.1),
                patience=sched.get("patience", 3),
                min_lr=sched.get("min_lr", cfg.get("lr", 0.01) / 100),
            )
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": "val/top1_err", "interval": "epoch"},
            }
        if name == "step":
            # The same two ÷10 drops at fixed fractions of the run (short runs never plateau).
            epochs = max(1, int(self.trainer.max_epochs or 1))
            milestones = sorted({max(1, round(f * epochs)) for f in sched.get("milestones", [0.67, 0.89])})
            scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=sched.get("gamma", 0.1))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        raise ValueError(f"optim.scheduler.name={name!r}: expected 'plateau' or 'step'")
