"""Table 12's combination cell: NMS over the union of two (or more) finished detectors' scored boxes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from sppnet_exp.detection.cells.common import setup_data
from sppnet_exp.detection.cells.members import member_config, member_detections
from sppnet_exp.detection.cells.methods import MethodRun
from sppnet_exp.detection.evaluation.combine import combine_detections
from sppnet_exp.detection.evaluation.voc_eval import evaluate_and_write
from sppnet_exp.detection.structures.detections import read_detections

__all__ = ["combine_cell", "member_config", "run_combine"]


def combine_cell(cfg: DictConfig, on_row: Any) -> dict[str, Any]:
    """Table 12: NMS over the union of the member cells' detections of ``detector.row``."""
    det = cfg.detector
    if len(det.members) < 2:
        raise ValueError("detector.members must name at least two experiments (e.g. [table12/net1, table12/net2])")
    row = str(det.row)
    sets, members = [], []
    for name, m, path in member_detections(cfg):
        if not path.is_file():  # the pre-flight reports this before the cell starts; kept for direct calls
            raise FileNotFoundError(
                f"combination needs the {row} detections of {name} at {path}; run "
                f"`python -m sppnet_exp.detect experiment={name}` with the same data/scale first"
            )
        sets.append(read_detections(path))
        members.append({"experiment": name, "run_dir": str(m.run_dir)})
    merged = sets[0]
    for other in sets[1:]:
        merged = combine_detections(merged, other, nms_thresh=float(det.nms), max_per_image=int(det.max_per_image))
    dm = setup_data(cfg)
    row_metrics = evaluate_and_write(merged, dm.test, list(dm.classes), Path(cfg.run_dir) / f"detections_{row}.jsonl")
    on_row(row, row_metrics, {"members": members})
    return {"members": members}


def run_combine(cfg: DictConfig, on_row: Any, done_rows: set[str]) -> MethodRun:
    """The runner of ``combine`` (:mod:`.methods`): its row goes through ``on_row``; nothing resumes."""
    return MethodRun(info=combine_cell(cfg, on_row))
