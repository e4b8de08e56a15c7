"""The detection task: run (or resume, or skip) one cell of Tables 9, 10 or 12 and write its ``results.json``.

Methods (``detector.method``, each a :class:`~.methods.Method` that says what it reads and runs its cell):
``spp`` and ``rcnn`` run the whole detector (:mod:`.detector`); ``combine`` merges two finished cells'
detections by NMS (Table 12, :mod:`.combine`); ``timing`` measures conv / fc / total seconds per test image of
SPP 1-scale, 5-scale and R-CNN in one run on one device (:mod:`.timing`). Each run
writes ``results.json`` (mAP per row in percent, the resolved config, seeds, versions) into its run dir;
finished rows survive a kill. ``python -m sppnet_exp.detect`` is the entry script that calls :func:`detect`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from sppnet_exp.config import REPO_DIR
from sppnet_exp.detection.cells.common import proposal_provenance
from sppnet_exp.detection.cells.detector import run_detector
from sppnet_exp.detection.cells.methods import method_of
from sppnet_exp.engine.lifecycle import check_recipe_overrides, open_run, record_table, refuse, tables_with
from sppnet_exp.engine.pretrained import load_pretrained, pretrained_identity
from sppnet_exp.engine.results import make_payload, update_results, write_results
from sppnet_exp.engine.wiring import build_loggers
from sppnet_exp.utils.dist import is_primary

log = logging.getLogger(__name__)

__all__ = ["detect"]


def _payload(cfg: DictConfig, status: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    """Identity and provenance of a detection run (the shared results.json schema, plus task and device)."""
    tables = tables_with(previous, cfg.get("table"))
    payload = make_payload(
        cell=str(cfg.cell),
        model=str(cfg.pretrained.model),
        mode=str(cfg.detector.method),
        levels=None,
        data=str(cfg.data.name),
        data_root=cfg.data.get("root"),
        scale=str(cfg.scale.name),
        seed=int(cfg.seed),
        fingerprint=str(cfg.fingerprint),
        tables=tables,
        config=OmegaConf.to_container(cfg, resolve=True),
        repo_dir=REPO_DIR,
        status=status,
    )
    payload["host"]["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    proposals, note = proposal_provenance(cfg)
    return {**payload, "task": "detect", "run_dir": str(cfg.run_dir), "proposals": proposals, "report_notes": [note]}


def _check_same_pretrained(cfg: DictConfig, previous: dict[str, Any] | None, run_dir: Path) -> None:
    """Refuse a run dir whose results.json was computed from another pretrained net than the one ``cfg`` names
    now: its Table 2 cell was trained again with another recipe (another run identity, another run dir) or another
    checkpoint file is given. The cell's own fingerprint hashes the ``pretrained`` group, which names the net but
    not the recipe it was trained with, so without this check the stale detections would be skipped over as
    finished (or a killed cell resumed on rows of the old net)."""
    recorded = ((previous or {}).get("detect") or {}).get("pretrained")
    if not method_of(cfg).windows or not isinstance(recorded, dict):
        return
    now = pretrained_identity(cfg)
    if "checkpoint" in now:
        old, new = str(Path(str(recorded.get("checkpoint", ""))).resolve()), now["checkpoint"]
    else:
        old = f"{recorded.get('cell')} {recorded.get('fingerprint')}"
        new = f"{now['cell']} {now['fingerprint']}"
    if old != new:
        raise refuse(
            cfg, previous, run_dir, f"computed from another pretrained net ({old} → {new}; recorded → requested)"
        )


def _done_rows(previous: dict[str, Any] | None, run_dir: Path) -> set[str]:
    """Rows a previous (possibly killed) run finished: metrics recorded and detections file present."""
    if not previous:
        return set()
    return {r for r in previous.get("metrics", {}) if (run_dir / f"detections_{r}.jsonl").is_file()}


def detect(cfg: DictConfig) -> dict[str, Any]:
    """Run (or resume, or skip) the detection cell ``cfg`` describes; return its results."""
    method = method_of(cfg)
    run_dir = Path(cfg.run_dir)
    previous = open_run(cfg, [check_recipe_overrides, _check_same_pretrained])
    if cfg.skip_finished and previous is not None and previous.get("status") == "finished":
        log.info(f"Skipping finished detection cell <{cfg.cell}>: {run_dir}")
        return record_table(run_dir, previous, cfg.get("table"))
    L.seed_everything(int(cfg.seed), workers=True)
    if not is_primary():
        # An extra rank (DDP child, SLURM task > 0): only the sharded conv5 extraction runs here; it exits after
        # its shard. No chance row, detections or results.json are written by it.
        if method.pooled:
            net = load_pretrained(cfg, wait_s=float(cfg.rank_wait_s))[0]
            run_detector(cfg, net, done_rows=_done_rows(previous, run_dir))
        log.info(f"rank > 0: nothing of <{cfg.cell}> left for this process")
        return {}
    loggers = build_loggers(cfg)
    base = _payload(cfg, "running", previous)
    metrics: dict[str, dict[str, float]] = dict((previous or {}).get("metrics", {})) if method.windows else {}
    write_results(run_dir, {**base, "metrics": metrics, "detect": (previous or {}).get("detect", {})})
    start = time.time()

    def on_row(row: str, row_metrics: dict[str, float], run_info: dict[str, Any]) -> None:
        metrics[row] = row_metrics
        update_results(run_dir, {"metrics": {row: row_metrics}, "detect": run_info})
        for lg in loggers:
            lg.log_metrics({f"{row}/{k}": v for k, v in row_metrics.items()})

    run = method.run(cfg, on_row, _done_rows(previous, run_dir) if method.windows else set())
    metrics.update(run.metrics)
    for lg in loggers if run.metrics else ():
        lg.log_metrics({f"{m}/{k}": v for m, vals in run.metrics.items() for k, v in vals.items()})
    info = {**run.info, "seconds": round(time.time() - start, 1)}
    if run.notes or not run.data_notes:
        base["report_notes"] = run.notes + (base["report_notes"] if run.data_notes else [])
    payload = {**base, "status": "finished", "metrics": metrics, "detect": info}
    write_results(run_dir, payload)
    _log_wandb_table(loggers, metrics)
    for lg in loggers:
        lg.finalize("success")
    log.info(f"<{cfg.cell}> results: " + ", ".join(f"{r}: {m.get('mAP', '')}" for r, m in metrics.items()))
    return payload


def _log_wandb_table(loggers: list[Any], metrics: dict[str, dict[str, float]]) -> None:
    """Per-row mAP / per-class AP as a W&B table (when a W&B logger is active)."""
    from lightning.pytorch.loggers import WandbLogger

    for lg in loggers:
        if isinstance(lg, WandbLogger):
            classes = sorted({k[3:] for m in metrics.values() for k in m if k.startswith("AP/")})
            cols = ["row", "mAP", *classes]
            data = [[r, m.get("mAP", np.nan), *[m.get(f"AP/{c}", np.nan) for c in classes]] for r, m in metrics.items()]
            lg.log_table(key="detection/AP", columns=cols, data=data)
