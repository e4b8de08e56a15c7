"""Which proposals a cell used is recorded and reported; at VOC07 and the paper's scale OpenCV's boxes are flagged as
not the paper's."""

from __future__ import annotations

import logging

import pytest

from sppnet_exp.config import compose_config
from sppnet_exp.detection.cells.common import proposal_provenance
from sppnet_exp.reporting.collect import record_from_results, select


def _cfg(*overrides: str):  # noqa: ANN202
    return compose_config("detect", ["logger=none", "experiment=table9/spp_1scale", *overrides])


def test_opencv_proposals_at_the_paper_setting_are_flagged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        info, note = proposal_provenance(_cfg("data=voc07", "scale=detect_paper", "data.root=/data/VOC2007"))
    assert info["source"] == "selective_search" and not info["comparable"] and not info["paper_proposals"]
    assert "not comparable" in note and "OpenCV selective search (fast mode, longer side <= 500)" in note
    assert "rcnn_mat" in caplog.text


def test_rcnn_boxes_are_the_papers_and_the_embedded_default_is_not_flagged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        paths = "proposals.path={trainval:/d/voc_2007_trainval.mat,test:/d/voc_2007_test.mat}"
        info, note = proposal_provenance(
            _cfg("data=voc07", "scale=detect_paper", "data.root=/data/VOC2007", "proposals.source=rcnn_mat", paths)
        )
        assert info["comparable"] and info["paper_proposals"] and "R-CNN's published" in note
        info, note = proposal_provenance(_cfg())
        assert info["comparable"] and "not comparable" not in note
    assert not caplog.records


def test_the_report_shows_each_runs_note_once() -> None:
    base = {"status": "finished", "seed": 0, "data": "voc07", "scale": "paper", "metrics": {"pool5": {"mAP": 1.0}}}
    note = {"updated": "2026-12-02T00:00:00+00:00", "report_notes": ["proposals: OpenCV selective search"]}
    runs = [{**base, **note, "cell": c} for c in ("spp_1scale", "spp_5scale")]
    coll = select([record_from_results(r) for r in runs], ["spp_1scale", "spp_5scale"], "voc07", "paper")
    assert coll.notes.count("proposals: OpenCV selective search") == 1
