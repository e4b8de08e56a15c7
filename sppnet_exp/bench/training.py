"""Classification benchmarks: training-loader throughput, Lightning against a bare loop, SPP head against pool5.

- ``data``: images/s of the training loader (decode + augment + collate) per worker count, in rounds of batches
  from one running iterator; median over rounds with its interval.
- ``train_overhead``: the real ``SPPClassifier`` under a Lightning Trainer against a bare PyTorch loop on the same
  model and the same in-memory batches, in paired rounds (:mod:`sppnet_exp.utils.paired`); overhead = 1 −
  lightning / bare images/s per pair. Target ≤ 5%.
- ``spp_head``: the SPP head ({6,3,2,1} pooling + fc6) against the fixed pool5 head (6×6 + fc6), forward and
  forward+backward, in paired rounds, on ZF-5 conv5 maps (13×13×256 at paper width, and the embedded width).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from sppnet_exp.classification.classifier import SPPClassifier
from sppnet_exp.engine.wiring import build_datamodule, model_kwargs
from sppnet_exp.models import SpatialPyramidPooling
from sppnet_exp.models.net import NoSPPPool
from sppnet_exp.utils.paired import Derived, median_interval, run_pairs
from sppnet_exp.utils.trainer import quiet_trainer

OVERHEAD_TARGET = 0.05

__all__ = ["OVERHEAD_TARGET", "bench_data", "bench_spp_head", "bench_train_overhead"]


# -- data loading ------------------------------------------------------------------------------------------
def bench_data(cfg: DictConfig, batches: int, rounds: int) -> dict[str, Any]:
    """Images/s of the training loader (the embedded generated data unless data.root says otherwise)."""
    out: dict[str, Any] = {"batches_per_round": batches, "batch_size": cfg.scale.batch_size, "results": []}
    for workers in sorted({0, int(cfg.data.num_workers)}):
        cfg.data.num_workers = workers
        dm = build_datamodule(cfg)
        dm.prepare_data()
        dm.setup("fit")
        rates: list[float] = []
        it = iter(dm.train_dataloader())
        next(it)  # start-up (workers, first decode) is not throughput
        for _ in range(rounds):
            n, t0 = 0, time.perf_counter()
            for _ in range(batches):
                try:
                    images, _, _ = next(it)
                except StopIteration:
                    it = iter(dm.train_dataloader())
                    images, _, _ = next(it)
                n += images.shape[0]
            rates.append(n / (time.perf_counter() - t0))
        out["results"].append({"num_workers": workers, "rounds": rates, "images_per_s": median_interval(rates)})
    return out


# -- framework overhead ------------------------------------------------------------------------------------
class _StepTimer(Callback):
    """Wall time from the start of batch ``skip`` to the end of the last batch, and the images in between."""

    def __init__(self, skip: int) -> None:
        self.skip, self.t0, self.t1, self.images = skip, 0.0, 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
        if batch_idx == self.skip:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.t1 = time.perf_counter()
        if batch_idx >= self.skip:
            self.images += batch[0].shape[0]


def _module(cfg: DictConfig, num_classes: int) -> SPPClassifier:
    return SPPClassifier(
        model=model_kwargs(cfg),
        num_classes=num_classes,
        sizes={"schedule": "fixed", "sizes": [cfg.scale.crop]},
        optim={"lr": 0.01, "scheduler": {"name": "step", "milestones": [10.0]}},
    )


def _lightning_round(cfg: DictConfig, batches: DataLoader, num_classes: int, skip: int) -> dict[str, float]:
    torch.manual_seed(0)
    module = _module(cfg, num_classes)
    timer = _StepTimer(skip)
    trainer = quiet_trainer(accelerator="cpu", devices=1, max_epochs=1, limit_val_batches=0, callbacks=[timer])
    trainer.fit(module, train_dataloaders=batches)
    seconds = timer.t1 - timer.t0
    return {"seconds": seconds, "images": float(timer.images), "images_per_s": timer.images / seconds}


def _bare_round(cfg: DictConfig, batches: DataLoader, num_classes: int, skip: int) -> dict[str, float]:
    torch.manual_seed(0)
    net = _module(cfg, num_classes).net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    t0, images = 0.0, 0
    for i, (x, y, _) in enumerate(batches):
        if i == skip:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        if i >= skip:
            images += x.shape[0]
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "images": float(images), "images_per_s": images / seconds}


def bench_train_overhead(
    cfg: DictConfig, steps: int, min_pairs: int, max_pairs: int, budget_s: float
) -> dict[str, Any]:
    """Training images/s: Lightning + SPPClassifier vs a bare loop, same model and in-memory batches, paired."""
    cfg.data.num_workers = 0
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    batches = []
    for batch in dm.train_dataloader():
        batches.append(batch)
        if len(batches) == steps:
            break
    skip = min(2, len(batches) // 4)
    loader = DataLoader(batches, batch_size=None, shuffle=False)  # the same pre-made batches for both loops
    for name in ("lightning.pytorch", "lightning.fabric"):  # one Trainer per round: keep its banner quiet
        logging.getLogger(name).setLevel(logging.WARNING)
    res = run_pairs(
        {
            "bare": lambda: _bare_round(cfg, loader, dm.num_classes, skip),
            "lightning": lambda: _lightning_round(cfg, loader, dm.num_classes, skip),
        },
        {
            "overhead": Derived(
                lambda p: 1.0 - p["lightning"]["images_per_s"] / p["bare"]["images_per_s"],
                OVERHEAD_TARGET,
                "<=",
                doc="1 - lightning/bare images/s, per pair",
            )
        },
        min_pairs=min_pairs,
        max_pairs=max_pairs,
        warmup=1,
        budget_s=budget_s,
    )
    return {
        **res,
        "model": cfg.model.name,
        "mode": cfg.mode.name,
        "crop": cfg.scale.crop,
        "width": cfg.scale.width,
        "batch_size": cfg.scale.batch_size,
        "steps_per_round": len(batches),
        "timed_steps_per_round": len(batches) - skip,
    }


# -- SPP head vs fixed pool5 head ----------------------------------------------------------------------------
def _head_side(pool: torch.nn.Module, fc6: torch.nn.Module, x: torch.Tensor, reps: int) -> dict[str, float]:
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(reps):
            fc6(pool(x))
    t1 = time.perf_counter()
    for _ in range(reps):
        fc6(pool(x.clone().requires_grad_(True))).sum().backward()
    t2 = time.perf_counter()
    return {"forward_ms": 1e3 * (t1 - t0) / reps, "forward_backward_ms": 1e3 * (t2 - t1) / reps}


def bench_spp_head(min_pairs: int, reps: int = 3) -> dict[str, Any]:
    """Pool + fc6, forward and forward+backward: SPP {6,3,2,1} against the no-SPP 6×6 pool, paired rounds."""
    rows = []
    for label, channels, fc, batch in (
        ("paper width (256 ch, fc 4096)", 256, 4096, 32),
        ("embedded (64 ch, fc 1024)", 64, 1024, 64),
    ):
        x = torch.randn(batch, channels, 13, 13)
        sides, dims = {}, {}
        for head, pool in (("spp", SpatialPyramidPooling((6, 3, 2, 1))), ("nospp", NoSPPPool((13, 13), 224))):
            fc6 = torch.nn.Linear(pool.output_dim(channels), fc)
            sides[head] = lambda pool=pool, fc6=fc6, x=x: _head_side(pool, fc6, x, reps)
            dims[head] = pool.output_dim(channels)
        res = run_pairs(
            sides,
            {
                "forward_ratio": Derived(
                    lambda p: p["spp"]["forward_ms"] / p["nospp"]["forward_ms"], doc="spp / nospp"
                ),
                "forward_backward_ratio": Derived(
                    lambda p: p["spp"]["forward_backward_ms"] / p["nospp"]["forward_backward_ms"], doc="spp / nospp"
                ),
            },
            min_pairs=min_pairs,
            warmup=1,
        )
        rows.append({**res, "setting": label, "batch": batch, "fc6_in": dims})
    return {"map": "13x13 (ZF-5 conv5 at 224)", "reps_per_side": reps, "results": rows}
