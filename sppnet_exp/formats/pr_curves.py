"""A detection row's per-class precision-recall points: ``pr_<row>.json`` beside its ``detections_<row>.jsonl``.

Written by the VOC07 evaluation (:func:`sppnet_exp.detection.evaluation.voc_eval.evaluate_and_write`) and read by
the report's PR figures (:mod:`sppnet_exp.reporting.figures`): ``{"metric", "min_overlap", "classes": {class:
{"ap", "npos", "recall", "precision"}}}``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sppnet_exp.utils.io import read_json

__all__ = ["PR_FILE", "pr_path", "read_pr"]

PR_FILE = "pr_{row}.json"


def pr_path(detections_path: str | os.PathLike[str]) -> Path:
    """The PR points file of a detections file: ``detections_<row>.jsonl`` -> ``pr_<row>.json`` beside it."""
    p = Path(detections_path)
    return p.with_name(PR_FILE.format(row=p.stem.removeprefix("detections_")))


def read_pr(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A PR points file (``{"classes": {c: {recall, precision, ap}}}``); a clear error when it is not one."""
    d = read_json(path)
    if not isinstance(d, dict) or not isinstance(d.get("classes"), dict):
        raise ValueError(f"{path}: not a PR points file (no 'classes' mapping)")
    return d
