"""Table 12's combination cell: NMS over the union of two (or more) finished detectors' scored boxes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sppnet_exp.config import compose_config
from sppnet_exp.detection.cells.common import setup_data
from sppnet_exp.detection.evaluation.combine import combine_detections
from sppnet_exp.detection.evaluation.voc_eval import evaluate_and_write
from sppnet_exp.detection.structures.detections import read_detections

__all__ = ["combine_cell", "member_config"]


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


def combine_cell(cfg: DictConfig, on_row: Any) -> dict[str, Any]:
    """Table 12: NMS over the union of the member cells' detections of ``detector.row``."""
    det = cfg.detector
    if len(det.members) < 2:
        raise ValueError("detector.members must name at least two experiments (e.g. [table12/net1, table12/net2])")
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
    row_metrics = evaluate_and_write(merged, dm.test, list(dm.classes), Path(cfg.run_dir) / f"detections_{row}.jsonl")
    on_row(row, row_metrics, {"members": members})
    return {"members": members}
