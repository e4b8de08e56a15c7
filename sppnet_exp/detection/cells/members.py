"""The member cells of Table 12's combination: their configs and the detections file each must have written.

Config composition only (nothing heavy is imported), so the pre-flight (:mod:`sppnet_exp.engine.preflight`)
finds a missing member run before the combination cell starts; :mod:`.combine` reads the files.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from sppnet_exp.config import compose_config

__all__ = ["member_config", "member_detections"]


def member_config(cfg: DictConfig, experiment: str) -> DictConfig:
    """A member cell's `detect` config: its experiment, with this run's data, scale, paths, proposals, SVM and test
    settings and pretrained overrides (so it names the run dir the member's own run used), plus
    ``detector.member_overrides`` (e.g. ``['detector.scales=${scale.scales_1}', 'rows=[ftfc7_bb]']``)."""
    overrides = [f"experiment={experiment}"]  # its data and scale nodes are this run's, set below
    overrides += [str(o) for o in cfg.detector.member_overrides]
    member = compose_config("detect", overrides)
    OmegaConf.set_struct(member, False)
    for key in ("data", "scale", "paths", "proposals", "svm", "test", "seed"):
        member[key] = cfg[key]
    for key in ("overrides", "checkpoint", "train_if_missing"):
        member.pretrained[key] = cfg.pretrained[key]
    return member


def member_detections(cfg: DictConfig) -> list[tuple[str, DictConfig, Path]]:
    """``(experiment, config, detections file of detector.row)`` of every member of a combination cell."""
    row = str(cfg.detector.row)
    out = []
    for name in cfg.detector.members:
        member = member_config(cfg, str(name))
        out.append((str(name), member, Path(str(member.run_dir)) / f"detections_{row}.jsonl"))
    return out
