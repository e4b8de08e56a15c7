"""The methods of a detection cell (``detector.method``), each one object: what it reads and how it runs.

* ``spp`` — SPP-net: conv5 once per image and scale, SPP per window (:mod:`.detector`); extra ranks compute
  their share of conv5;
* ``rcnn`` — R-CNN: the net on every warped window (:mod:`.detector`);
* ``combine`` — Table 12: NMS over the union of two finished cells' detections (:mod:`.combine`);
* ``timing`` — conv / fc / total seconds per test image of SPP 1-scale, 5-scale and R-CNN (:mod:`.timing`).

The task (:func:`.task.detect`), the pre-flight (:mod:`sppnet_exp.engine.preflight`) and the detector ask a
:class:`Method` what it needs instead of comparing method names. This module imports nothing heavy: the pre-flight
reads it before torch is loaded; each method's runner is imported when it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sppnet_exp.utils.targets import import_target

__all__ = ["METHODS", "Method", "MethodRun", "method_of"]


@dataclass
class MethodRun:
    """What a method's runner gives back: rows it returns whole (the rows a window method finishes go through
    ``on_row`` as they come), the run's info (results.json ``detect``), the report notes to put first and
    whether the data's notes (proposals) still apply."""

    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    data_notes: bool = True


@dataclass(frozen=True)
class Method:
    """One detection method.

    ``windows``: it scores proposal windows with a pretrained classification net, row by row (it reads the
    proposals and the net; a killed run resumes at its first unfinished row). ``pooled``: conv5 once per image
    and scale, each window's features pooled from it (SPP-net, not R-CNN's warped windows); ranks other than 0
    compute their share of the conv5 maps. ``combines``: it reads other cells' detections (Table 12's
    members). ``runner``: ``"module:function"`` of ``run(cfg, on_row, done_rows)
    -> MethodRun``.
    """

    name: str
    runner: str
    windows: bool = False
    pooled: bool = False
    combines: bool = False

    def reads_data(self, cfg: DictConfig) -> bool:
        """Whether the cell reads the detection dataset (timing does only at the data geometry)."""
        return self.name != "timing" or _timing_geometry(cfg) == "data"

    def reads_proposals_and_net(self, cfg: DictConfig) -> bool:
        """Whether the cell reads proposals and the pretrained net (timing: at the data geometry)."""
        return self.windows or (self.name == "timing" and _timing_geometry(cfg) == "data")

    def run(self, cfg: DictConfig, on_row: Callable[..., None], done_rows: set[str]) -> MethodRun:
        """Run the method's cell (the rows in ``done_rows`` are finished already)."""
        return import_target(self.runner)(cfg, on_row, done_rows)


def _timing_geometry(cfg: DictConfig) -> str:
    return str(OmegaConf.select(cfg, "scale.timing.geometry", default="data"))


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("spp", "sppnet_exp.detection.cells.detector:run_windows", windows=True, pooled=True),
        Method("rcnn", "sppnet_exp.detection.cells.detector:run_windows", windows=True),
        Method("combine", "sppnet_exp.detection.cells.combine:run_combine", combines=True),
        Method("timing", "sppnet_exp.detection.cells.timing:run_timing_cell"),
    )
}


def method_of(cfg: DictConfig) -> Method:
    """The :class:`Method` of ``cfg.detector.method``; a clear error naming the known ones."""
    name = str(OmegaConf.select(cfg, "detector.method", default=""))
    if name not in METHODS:
        raise ValueError(f"detector.method must be one of {tuple(METHODS)}, got {name!r}")
    return METHODS[name]
