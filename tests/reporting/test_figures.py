"""The pictures of each table: drawn from synthetic runs into PNGs that open, linked from results.md, skipped with
a logged line when their inputs are missing, and logged as images to an offline W&B run."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sppnet_exp.reporting import build_report
from tests.synthetic_tables import DET_ROWS, runs_of, write_pr_points, write_runs

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402  (after the skip: PIL comes with matplotlib's stack)

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
PICTURES = {
    "table2": ["gains.png"],
    "table3": ["gains.png", "views.png"],
    "table9": [f"pr_{r}.png" for r in DET_ROWS] + ["timing.png"],
    "table10": ["pr_ftfc7.png", "pr_ftfc7_bb.png", "timing.png"],
    "table12": ["ap_per_class.png"],
}
COLUMNS = {"table9": ["spp_1scale", "spp_5scale", "rcnn_alexnet"], "table10": ["spp_1scale", "spp_5scale", "rcnn_zf5"]}


def _opens(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


@pytest.mark.parametrize("table", list(PICTURES))
def test_pictures_of_every_table(tmp_path: Path, table: str) -> None:
    runs = tmp_path / "runs"
    write_runs(runs, runs_of(table))
    if table in COLUMNS:
        write_pr_points(runs, COLUMNS[table], list(DET_ROWS))
    rep = build_report(table, runs, EXPERIMENTS, "generated", "embedded", verify=True)
    out = tmp_path / "exp"
    written = rep.to_files(out)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(PICTURES[table]) and {out / p for p in pngs} <= set(written)
    for name in pngs:
        w, h = _opens(out / name)
        assert w >= 300 and h >= 200, (name, w, h)
        assert f"]({name})" in (out / "results.md").read_text()
    assert not list(out.glob(".*"))  # no temp files left


def test_missing_inputs_skip_pictures_never_the_report(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    write_runs(runs, runs_of("table9"))  # no PR points: the PR pictures are skipped, the timing one is drawn
    rep = build_report("table9", runs, EXPERIMENTS, "generated", "embedded", verify=True)
    with caplog.at_level(logging.INFO, logger="sppnet_exp.reporting.figures"):
        rep.to_files(tmp_path / "exp")
    assert sorted(p.name for p in (tmp_path / "exp").glob("*.png")) == ["timing.png"]
    assert "picture pr_ftfc7.png skipped: its inputs are missing" in caplog.text
    # no runs at all: every picture skipped, results.md still written
    rep = build_report("table12", tmp_path / "none", EXPERIMENTS, "generated", "embedded")
    rep.to_files(tmp_path / "empty")
    assert (tmp_path / "empty" / "results.md").is_file() and not list((tmp_path / "empty").glob("*.png"))
    # matplotlib not installed: a warning, no pictures
    import sppnet_exp.reporting.figures as figures

    monkeypatch.setattr(figures, "_pyplot", lambda: None)
    write_runs(tmp_path / "t2", runs_of("table2"))
    rep = build_report("table2", tmp_path / "t2", EXPERIMENTS, "generated", "embedded")
    with caplog.at_level(logging.WARNING):
        rep.to_files(tmp_path / "nompl")
    assert "matplotlib is not installed" in caplog.text and not list((tmp_path / "nompl").glob("*.png"))
    assert "## Figures" not in (tmp_path / "nompl" / "results.md").read_text()


def test_offline_wandb_run_holds_the_pictures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    write_runs(tmp_path / "runs", runs_of("table12"))
    rep = build_report("table12", tmp_path / "runs", EXPERIMENTS, "generated", "embedded", verify=True)
    rep.to_files(tmp_path / "exp")
    rep.log_to_wandb("sppnet-test", mode="offline", dir=str(tmp_path))
    images = list((tmp_path / "wandb").glob("offline-run-*/files/media/images/**/*.png"))
    assert images and any("ap_per_class" in p.name for p in images), list((tmp_path / "wandb").rglob("*"))
