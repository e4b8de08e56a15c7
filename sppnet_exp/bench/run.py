"""Benchmarks: ``make bench`` → ``outputs/bench/<name>.json`` and ``outputs/bench/summary.md``.

- ``data``: training-loader throughput (decode + augment + collate), images/s, per worker count.
- ``train_overhead``: Lightning (the real ``SPPClassifier`` and Trainer) against a bare PyTorch loop on the
  same model and the same in-memory batches, alternated in one run; overhead = 1 − lightning/bare.
- ``detection`` / ``proposals``: SPP-net 1-scale and 5-scale against R-CNN per image (conv, fc, other, total;
  2000 windows on a 500x375 scene, ZF-5), and selective search images/s per core (:mod:`sppnet_exp.bench.detection`).
- ``spp_head``: the SPP head ({6,3,2,1} pooling + fc6) against the fixed pool5 head (6×6 + fc6), forward
  and forward+backward, on ZF-5 conv5 maps (13×13×256 at paper width, and the embedded width).

Targets (checked in the summary, never in tests): framework overhead ≤ 5 %.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig
from torch.utils.data import DataLoader

import sppnet_exp  # noqa: F401  (resolvers)
from sppnet_exp.config import config_dir
from sppnet_exp.models import SpatialPyramidPooling
from sppnet_exp.models.net import NoSPPPool
from sppnet_exp.training import SPPClassifier
from sppnet_exp.training.wiring import build_datamodule
from sppnet_exp.utils.env import host_info, versions
from sppnet_exp.utils.io import atomic_write_json, atomic_write_text

OVERHEAD_TARGET = 0.05


def _cfg(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("train", overrides=overrides)


def _median_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# -- data loading ------------------------------------------------------------------------------------------
def bench_data(cfg: DictConfig, batches: int) -> dict[str, Any]:
    """Images/s of the training loader (the embedded generated data unless data.root says otherwise)."""
    out: dict[str, Any] = {"batches": batches, "batch_size": cfg.scale.batch_size, "results": []}
    for workers in sorted({0, int(cfg.data.num_workers)}):
        cfg.data.num_workers = workers
        dm = build_datamodule(cfg)
        dm.prepare_data()
        dm.setup("fit")
        loader = dm.train_dataloader()
        it = iter(loader)
        next(it)  # start-up (workers, first decode) is not throughput
        n, t0 = 0, time.perf_counter()
        for _ in range(batches):
            try:
                images, _, _ = next(it)
            except StopIteration:
                break
            n += images.shape[0]
        dt = time.perf_counter() - t0
        out["results"].append({"num_workers": workers, "images": n, "seconds": dt, "images_per_s": n / dt})
    return out


# -- framework overhead ------------------------------------------------------------------------------------
class _StepTimer(Callback):
    """Wall time from the start of batch ``skip`` to the end of the last batch."""

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
    from sppnet_exp.train import _model_kwargs

    return SPPClassifier(
        model=_model_kwargs(cfg),
        num_classes=num_classes,
        sizes={"schedule": "fixed", "sizes": [cfg.scale.crop]},
        optim={"lr": 0.01, "scheduler": {"name": "step", "milestones": [10.0]}},
    )


def _lightning_run(cfg: DictConfig, batches: list, num_classes: int, skip: int) -> float:
    torch.manual_seed(0)
    module = _module(cfg, num_classes)
    timer = _StepTimer(skip)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=batches)
    return timer.images / (timer.t1 - timer.t0)


def _bare_run(cfg: DictConfig, batches: list, num_classes: int, skip: int) -> float:
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
    return images / (time.perf_counter() - t0)


def bench_train_overhead(cfg: DictConfig, steps: int, rounds: int) -> dict[str, Any]:
    """Training images/s: Lightning + SPPClassifier vs a bare loop, same model and in-memory batches."""
    cfg.data.num_workers = 0
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    batches = []
    for batch in dm.train_dataloader():
        batches.append(batch)
        if len(batches) == steps:
            break
    skip = min(3, len(batches) // 4)
    batches = DataLoader(batches, batch_size=None, shuffle=False)  # the same pre-made batches for both loops
    bare, lit = [], []
    for _ in range(rounds):  # alternate so drift on a noisy machine hits both sides
        bare.append(_bare_run(cfg, batches, dm.num_classes, skip))
        lit.append(_lightning_run(cfg, batches, dm.num_classes, skip))
    b, li = statistics.median(bare), statistics.median(lit)
    return {
        "model": cfg.model.name,
        "mode": cfg.mode.name,
        "crop": cfg.scale.crop,
        "width": cfg.scale.width,
        "batch_size": cfg.scale.batch_size,
        "steps": len(batches),
        "rounds": rounds,
        "bare_images_per_s": bare,
        "lightning_images_per_s": lit,
        "bare_median": b,
        "lightning_median": li,
        "overhead": 1.0 - li / b,
        "target_overhead": OVERHEAD_TARGET,
        "meets_target": 1.0 - li / b <= OVERHEAD_TARGET,
    }


# -- SPP head vs fixed pool5 head ----------------------------------------------------------------------------
def bench_spp_head(repeats: int) -> dict[str, Any]:
    """Pool + fc6, forward and forward+backward: SPP {6,3,2,1} against the no-SPP 6×6 pool."""
    rows = []
    for label, channels, fc, batch in (
        ("paper width (256 ch, fc 4096)", 256, 4096, 32),
        ("embedded (64 ch, fc 1024)", 64, 1024, 64),
    ):
        x = torch.randn(batch, channels, 13, 13)
        for head, pool in (("spp", SpatialPyramidPooling((6, 3, 2, 1))), ("nospp", NoSPPPool((13, 13), 224))):
            fc6 = torch.nn.Linear(pool.output_dim(channels), fc)

            def fwd(fc6: torch.nn.Module = fc6, pool: torch.nn.Module = pool, x: torch.Tensor = x) -> None:
                with torch.no_grad():
                    fc6(pool(x))

            def fwd_bwd(fc6: torch.nn.Module = fc6, pool: torch.nn.Module = pool, x: torch.Tensor = x) -> None:
                fc6(pool(x.clone().requires_grad_(True))).sum().backward()

            rows.append(
                {
                    "setting": label,
                    "head": head,
                    "batch": batch,
                    "fc6_in": pool.output_dim(channels),
                    "forward_ms": 1e3 * _median_time(fwd, repeats),
                    "forward_backward_ms": 1e3 * _median_time(fwd_bwd, repeats),
                }
            )
    return {"map": "13x13 (ZF-5 conv5 at 224)", "results": rows}


# -- summary ---------------------------------------------------------------------------------------------------
def summary_markdown(results: dict[str, dict[str, Any]]) -> str:
    """The Markdown summary of whatever benchmarks ran."""
    lines = [
        "# Benchmarks",
        "",
        f"Host: {results['meta']['host']}",
        f"torch {results['meta']['versions']['torch']}",
        "",
    ]
    if "data" in results:
        lines += ["## Data loading (training loader)", "", "| workers | images/s |", "|---|---|"]
        lines += [f"| {r['num_workers']} | {r['images_per_s']:.0f} |" for r in results["data"]["results"]]
        lines.append("")
    if "train_overhead" in results:
        r = results["train_overhead"]
        verdict = "meets" if r["meets_target"] else "MISSES"
        lines += [
            "## Training: Lightning vs a bare PyTorch loop (same model, same batches)",
            "",
            f"{r['model']} {r['mode']}, crop {r['crop']}, width {r['width']}, batch {r['batch_size']}, "
            f"{r['steps']} steps × {r['rounds']} alternated rounds (medians).",
            "",
            "| loop | images/s |",
            "|---|---|",
            f"| bare PyTorch | {r['bare_median']:.1f} |",
            f"| Lightning + SPPClassifier | {r['lightning_median']:.1f} |",
            "",
            f"Overhead: **{100 * r['overhead']:.1f} %** ({verdict} the ≤ {100 * r['target_overhead']:.0f} % target).",
            "",
        ]
    if "spp_head" in results:
        lines += [
            "## SPP head vs fixed pool5 head (pool + fc6)",
            "",
            "| setting | head | fc6 in | forward ms | fwd+bwd ms |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['setting']} | {r['head']} | {r['fc6_in']} | {r['forward_ms']:.2f} | {r['forward_backward_ms']:.2f} |"
            for r in results["spp_head"]["results"]
        ]
        lines.append("")
    from sppnet_exp.bench.detection import summary_lines

    lines += summary_lines(results.get("detection"), results.get("proposals"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``sppnet-bench [--only data,train_overhead,spp_head] [--out outputs/bench] [hydra overrides...]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/bench")
    parser.add_argument("--only", default="data,train_overhead,spp_head,detection,proposals")
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the data/model config")
    args = parser.parse_args(argv)
    out = Path(args.out)
    only = set(args.only.split(","))
    steps, rounds, repeats, batches = (12, 2, 5, 10) if args.quick else (30, 3, 20, 40)
    cfg = _cfg(["logger=none", *args.overrides])
    results: dict[str, Any] = {"meta": {"versions": versions(), "host": host_info(), "argv": sys.argv[1:]}}
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if "data" in only:
        results["data"] = bench_data(_cfg(["logger=none", *args.overrides]), batches)
    if "train_overhead" in only:
        results["train_overhead"] = bench_train_overhead(cfg, steps, rounds)
    if "spp_head" in only:
        results["spp_head"] = bench_spp_head(repeats)
    if "detection" in only:
        from sppnet_exp.bench.detection import bench_detection

        kw = (
            {"windows": 100, "short": 188, "scales_1": (344,), "scales_5": (240, 288, 344, 432, 600)}
            if args.quick
            else {}
        )
        results["detection"] = bench_detection(**kw)
    if "proposals" in only:
        from sppnet_exp.bench.detection import bench_proposals

        results["proposals"] = bench_proposals(188 if args.quick else 375, repeats=2 if args.quick else 3)
    for name, value in results.items():
        if name != "meta":
            atomic_write_json(out / f"{name}.json", {**value, "meta": results["meta"]})
    text = summary_markdown(results)
    atomic_write_text(out / "summary.md", text)
    print(text)


if __name__ == "__main__":
    main()
