"""Run one detection cell of Tables 9, 10 or 12: ``python -m sppnet_exp.detect experiment=table9/spp_1scale``.

Methods (``detector.method``): ``spp`` and ``rcnn`` run the whole detector (:mod:`sppnet_exp.detection.cells.pipeline`);
``combine`` merges two finished cells' detections by NMS (Table 12); ``timing`` measures conv / fc / total seconds
per test image of SPP 1-scale, 5-scale and R-CNN in one run on one device. Each run writes ``results.json``
(mAP per row in percent, the resolved config, seeds, versions) into its run dir; finished rows survive a kill.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from sppnet_exp.config import REPO_DIR, compose_config, config_dir
from sppnet_exp.engine import run_task
from sppnet_exp.reporting.results import make_payload, read_results, update_results, write_results
from sppnet_exp.training.wiring import build_loggers

log = logging.getLogger(__name__)

METHODS = ("spp", "rcnn", "combine", "timing")


def _payload(cfg: DictConfig, status: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    """Identity and provenance of a detection run (the shared results.json schema, plus task and device)."""
    tables = list((previous or {}).get("tables", []))
    if cfg.get("table") and cfg.table not in tables:
        tables.append(str(cfg.table))
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
    return {**payload, "task": "detect", "run_dir": str(cfg.run_dir)}


def _done_rows(previous: dict[str, Any] | None, run_dir: Path) -> set[str]:
    """Rows a previous (possibly killed) run finished: metrics recorded and detections file present."""
    if not previous:
        return set()
    return {r for r in previous.get("metrics", {}) if (run_dir / f"detections_{r}.jsonl").is_file()}


def detect(cfg: DictConfig) -> dict[str, Any]:
    """Run (or resume, or skip) the detection cell ``cfg`` describes; return its results."""
    method = str(cfg.detector.method)
    if method not in METHODS:
        raise ValueError(f"detector.method must be one of {METHODS}, got {method!r}")
    run_dir = Path(cfg.run_dir)
    previous = read_results(run_dir) if (run_dir / "results.json").is_file() else None
    if cfg.skip_finished and previous is not None and previous.get("status") == "finished":
        log.info(f"Skipping finished detection cell <{cfg.cell}>: {run_dir}")
        if cfg.get("table") and cfg.table not in previous.get("tables", []):
            previous = update_results(run_dir, {"tables": [*previous.get("tables", []), str(cfg.table)]})
        return previous
    L.seed_everything(int(cfg.seed), workers=True)
    from sppnet_exp.detection.cells.pipeline import ddp_child

    if ddp_child():  # an extra rank of the DDP-sharded conv5 extraction: it exits once its shard is written
        from sppnet_exp.detection.cells.pipeline import DetectionRun
        from sppnet_exp.detection.cells.pretrained import load_pretrained

        DetectionRun(cfg, load_pretrained(cfg)[0]).run()
        return {}
    loggers = build_loggers(cfg)
    base = _payload(cfg, "running", previous)
    resumable = method in ("spp", "rcnn")
    metrics: dict[str, dict[str, float]] = dict((previous or {}).get("metrics", {})) if resumable else {}
    write_results(run_dir, {**base, "metrics": metrics, "detect": (previous or {}).get("detect", {})})
    start = time.time()
    info: dict[str, Any] = {}

    def on_row(row: str, row_metrics: dict[str, float], run_info: dict[str, Any]) -> None:
        metrics[row] = row_metrics
        update_results(run_dir, {"metrics": {row: row_metrics}, "detect": run_info})
        for lg in loggers:
            lg.log_metrics({f"{row}/{k}": v for k, v in row_metrics.items()})

    if method in ("spp", "rcnn"):
        from sppnet_exp.detection.cells.pipeline import DetectionRun
        from sppnet_exp.detection.cells.pretrained import load_pretrained

        net, pre_info = load_pretrained(cfg)
        info["pretrained"] = pre_info
        run = DetectionRun(cfg, net, on_row=on_row)
        run.run(_done_rows(previous, run_dir))
        info.update(run.info)
    elif method == "combine":
        info.update(_combine(cfg, on_row))
    else:
        from sppnet_exp.detection.cells.timing import run_timing

        timing, timing_info = run_timing(cfg)
        metrics.update(timing)
        info.update(timing_info)
        for lg in loggers:
            lg.log_metrics({f"{m}/{k}": v for m, vals in timing.items() for k, v in vals.items()})
    info["seconds"] = round(time.time() - start, 1)
    payload = {**base, "status": "finished", "metrics": metrics, "detect": info}
    write_results(run_dir, payload)
    _log_wandb_table(loggers, metrics)
    for lg in loggers:
        lg.finalize("success")
    log.info(f"<{cfg.cell}> results: " + ", ".join(f"{r}: {m.get('mAP', '')}" for r, m in metrics.items()))
    return payload


def member_config(cfg: DictConfig, experiment: str) -> DictConfig:
    """A member cell's `detect` config: its experiment, with this run's data, scale, paths, proposals, SVM and test
    settings and pretrained overrides (so it names the run dir the member's own run used), plus
    ``detector.member_overrides`` (e.g. ``['detector.scales=${scale.scales_1}', 'rows=[ftfc7_bb]']``)."""
    overrides = [f"experiment={experiment}", f"det_data={cfg.data.name}", f"det_scale={cfg.scale.name}"]
    overrides += [str(o) for o in cfg.detector.get("member_overrides") or []]
    member = compose_config("detect", overrides)
    OmegaConf.set_struct(member, False)
    for key in ("data", "scale", "paths", "proposals", "svm", "test", "seed"):
        member[key] = cfg[key]
    for key in ("overrides", "checkpoint", "train_if_missing"):
        member.pretrained[key] = cfg.pretrained[key]
    return member


def _combine(cfg: DictConfig, on_row: Any) -> dict[str, Any]:
    """Table 12: NMS over the union of the member cells' detections of ``detector.row``."""
    from sppnet_exp.detection.evaluation.combine import combine_detections
    from sppnet_exp.detection.structures.detections import read_detections

    det = cfg.detector
    if len(det.members) < 2:
        raise ValueError("detector.members must name at least two experiments (e.g. [table12/net1, table12/net2])")
    from sppnet_exp.detection.cells.pipeline import evaluate_and_save, setup_data

    row = str(det.row)
    sets, members = [], []
    for name in det.members:
        m = member_config(cfg, str(name))
        path = Path(m.run_dir) / f"detections_{row}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(
                f"combination needs the {row} detections of {name} at {path}; run "
                f"`python -m sppnet_exp.detect experiment={name}` with the same data/scale first"
            )
        sets.append(read_detections(path))
        members.append({"experiment": str(name), "run_dir": str(m.run_dir)})
    merged = sets[0]
    for other in sets[1:]:
        merged = combine_detections(merged, other, nms_thresh=float(det.nms), max_per_image=int(det.max_per_image))
    dm = setup_data(cfg)
    row_metrics = evaluate_and_save(merged, dm.test, list(dm.classes), Path(cfg.run_dir) / f"detections_{row}.jsonl")
    on_row(row, row_metrics, {"members": members})
    return {"members": members}


def _log_wandb_table(loggers: list[Any], metrics: dict[str, dict[str, float]]) -> None:
    """Per-row mAP / per-class AP as a W&B table (when a W&B logger is active)."""
    from lightning.pytorch.loggers import WandbLogger

    for lg in loggers:
        if isinstance(lg, WandbLogger):
            classes = sorted({k[3:] for m in metrics.values() for k in m if k.startswith("AP/")})
            cols = ["row", "mAP", *classes]
            data = [[r, m.get("mAP", np.nan), *[m.get(f"AP/{c}", np.nan) for c in classes]] for r, m in metrics.items()]
            lg.log_table(key="detection/AP", columns=cols, data=data)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="detect")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point (``sppnet-detect``)."""
    return run_task(detect, cfg)


if __name__ == "__main__":
    main()
