"""The classification task: train one table cell and test it (library half of ``python -m sppnet_exp.train``).

A cell's run dir is a function of its config (``<runs_root>/<cell>/<data>-<scale>-s<seed>-<fingerprint>``),
so re-running a sweep skips finished cells, a killed cell resumes from its ``last.ckpt``, and Table 3's
evaluation finds Table 2's checkpoints. Every run writes ``results.json`` (metrics, resolved config, seed,
versions, git commit) atomically into its run dir.

The fingerprint covers every setting that changes a result (:mod:`sppnet_exp.utils.identity`), and a run dir
whose results.json records other result settings than the ones asked for (one written before they counted) is
never reused; ``retrain=true`` trains the cell again from nothing, its CSV log beside the new one's
(``csv/version_N``): the run dir's life is the engine's (:mod:`sppnet_exp.engine.lifecycle`), the same for a
detection cell.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from sppnet_exp.classification.classifier import SPPClassifier
from sppnet_exp.classification.map_views import MapViewSettings
from sppnet_exp.data.views import MAP_VIEWS
from sppnet_exp.engine.lifecycle import check_settings, open_run, record_table, tables_with
from sppnet_exp.engine.results import superseded_count, write_results
from sppnet_exp.engine.wiring import (
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_trainer,
    channels_last,
    model_kwargs,
    run_metadata,
)

log = logging.getLogger(__name__)


def _finished_views(results: dict[str, Any] | None, map_views: dict[str, Any]) -> set[str]:
    """The views ``results`` holds; the views pooled from feature maps only when they were tested with the map
    settings asked for now (``map_views``: mapping, offset, scales)."""
    if not results or results.get("status") != "finished":
        return set()
    done = set(results.get("metrics", {}))
    if results.get("map_views") != map_views:
        done -= set(MAP_VIEWS)
    return done


def _map_views(cfg: DictConfig) -> dict[str, Any]:
    """The geometry of the views pooled from feature maps: the data's test sizes and ``eval.map``, the scales
    resolved (:class:`~sppnet_exp.classification.map_views.MapViewSettings`)."""
    m = cfg.eval.map
    settings = MapViewSettings(
        crop=int(cfg.data.crop),
        ten_scale=int(cfg.data.resize),
        full_scale=int(cfg.data.full_resize),
        scales=None if m.scales is None else tuple(int(s) for s in m.scales),
        mapping=str(m.mapping),
        offset=float(m.offset),
    )
    return {**asdict(settings), "scales": list(settings.scales or ())}


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train (or resume, or skip) the cell ``cfg`` describes, test the views it asks for, return results."""
    run_dir = Path(cfg.run_dir)
    views = list(cfg.eval.views)
    map_views = _map_views(cfg)
    retrain = bool(cfg.retrain)
    previous = open_run(cfg, [check_settings])
    _name_wandb_run(cfg, run_dir)
    done_views = _finished_views(previous, map_views)
    if cfg.skip_finished and previous is not None and set(views) <= done_views:
        log.info(f"Skipping finished cell <{cfg.cell}>: {run_dir} has views {sorted(done_views)}")
        record_table(run_dir, previous, cfg.table)
        return previous

    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.matmul_precision)
    datamodule = build_datamodule(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")

    last_ckpt = run_dir / "checkpoints" / "last.ckpt"
    resumable = cfg.resume and not retrain and last_ckpt.exists()
    resume_from = cfg.get("resume_from") or (str(last_ckpt) if resumable else None)
    training_done = previous is not None and previous.get("status") == "finished"
    if training_done:
        if not last_ckpt.exists():
            raise FileNotFoundError(f"{run_dir}: results.json says finished but {last_ckpt} is missing")
        module = SPPClassifier.load_from_checkpoint(
            last_ckpt, map_location="cpu", eval_views=views, channels_last=channels_last(cfg), map_views=map_views
        )
    else:
        module = SPPClassifier(
            model=model_kwargs(cfg),
            num_classes=datamodule.num_classes,
            multilabel=datamodule.multilabel,
            sizes=OmegaConf.to_container(cfg.mode.sizes, resolve=True),
            optim=OmegaConf.to_container(cfg.optim, resolve=True),
            eval_views=views,
            seed=cfg.seed,
            channels_last=channels_last(cfg),
            map_views=map_views,
        )

    module.predictions_dir = run_dir / "predictions"  # per-image test scores (the paired noise figures)
    loggers = build_loggers(cfg)
    callbacks = build_callbacks(cfg, with_loggers=bool(loggers))
    trainer = build_trainer(cfg, callbacks=callbacks, loggers=loggers, resume_from=resume_from)
    meta = run_metadata(cfg, trainer)
    if trainer.is_global_zero and not training_done:
        write_results(run_dir, {**meta, "status": "running", "metrics": {}, "tables": tables_with(previous, cfg.table)})

    start = time.time()
    if not training_done:
        if resume_from:
            log.info(f"Resuming <{cfg.cell}> from {resume_from}")
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    fit_seconds = time.time() - start
    val = {k: _float(trainer.callback_metrics.get(f"val/{k}")) for k in ("top1_err", "top5_err", "top1_err_best")}

    test_out = trainer.test(module, datamodule=datamodule, verbose=trainer.is_global_zero)
    metrics = _metrics_by_view({k: v for out in test_out for k, v in out.items()}, views)
    if not trainer.is_global_zero:
        return {}
    train_info = dict(previous.get("train", {})) if training_done and previous else {}
    if not training_done:
        train_info = {
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            # data.batch_size is the global SGD batch: each of world_size processes takes a share of it.
            "global_batch": int(datamodule.batch_size),
            "world_size": int(trainer.world_size),
            "process_batch": int(datamodule.batch_size) // int(trainer.world_size),
            "optimizer_steps": trainer.global_step,
            "optimizer_steps_per_epoch": _steps_per_epoch(trainer),
            "lr": float(cfg.optim.lr),
            "file_list": getattr(datamodule, "scan_source", None),  # "scan" or "cache" (rank 0)
            "seconds": round(fit_seconds, 1),
            "skipped_images": module.skipped_total,
            "resumed_from": resume_from,
            "final_val_top1_err": val["top1_err"],  # centre crop, after the last epoch
            "final_val_top5_err": val["top5_err"],
            "best_val_top1_err": val["top1_err_best"],
            # first step whose 10-step mean training loss < 0.95 ln C (None: never left the plateau)
            "plateau_exit": module.plateau_exit,
        }
    payload = {**meta, "status": "finished", "train": train_info, "tables": tables_with(previous, cfg.table)}
    payload["metrics"] = {**(previous or {}).get("metrics", {}), **metrics} if training_done else metrics
    tested_maps = any(v in MAP_VIEWS for v in views)
    recorded = (previous or {}).get("map_views") if training_done else None
    if tested_maps or recorded is not None:
        payload["map_views"] = map_views if tested_maps else recorded  # the settings of the map views' metrics
    write_results(run_dir, payload)
    log.info(f"<{cfg.cell}> results: {metrics}  ({run_dir / 'results.json'})")
    return payload


def _name_wandb_run(cfg: DictConfig, run_dir: Path) -> None:
    """After forced re-runs the W&B run id gets ``-r<k>`` (k earlier runs superseded): a new W&B run, not the old
    one continued; a resume of the re-run finds the same id."""
    k = superseded_count(run_dir)
    wandb = (cfg.get("logger") or {}).get("wandb")
    if k and isinstance(wandb, DictConfig) and wandb.get("id"):
        with open_dict(cfg):
            wandb.id = f"{wandb.id}-r{k}"


def _metrics_by_view(logged: dict[str, float], views: list[str]) -> dict[str, dict[str, float]]:
    """``{"test/10view/top1_err": x}`` → ``{"10view": {"top1_err": x}}``."""
    out: dict[str, dict[str, float]] = {}
    for key, value in logged.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "test" and parts[1] in views:
            out.setdefault(parts[1], {})[parts[2]] = int(value) if parts[2] == "n" else round(float(value), 4)
    return out


def _steps_per_epoch(trainer: L.Trainer) -> int | None:
    """Optimizer steps in one training epoch (Lightning's count of batches per epoch)."""
    n = trainer.num_training_batches
    return int(n) if n is not None and n != float("inf") else None


def _float(value: Any) -> float | None:
    return None if value is None else round(float(value), 4)


__all__ = ["train"]
