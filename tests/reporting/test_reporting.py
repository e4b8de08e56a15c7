"""Reporting: results.json IO, seed aggregation, the paper-layout tables, CSV and verify checks."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path

import pytest
import yaml

from sppnet_exp.engine.results import RESULTS_FILE, iter_results, make_payload
from sppnet_exp.reporting import CSV_COLUMNS, build_report, read_results, update_results, write_results
from sppnet_exp.reporting.collect import aggregate, load_local, select
from sppnet_exp.utils.env import git_info, host_info, versions
from sppnet_exp.utils.io import atomic_write_json, read_json
from tests.synthetic_tables import EXPERIMENTS, as_stated

MODELS = ["zf5", "convnet5", "overfeat5", "overfeat7"]
MODES = ["nospp", "spp_single", "spp_multi"]
PAPER_T2 = {  # (model, mode) -> (top1, top5), Table 2 of the paper
    ("zf5", "nospp"): (35.99, 14.76),
    ("convnet5", "nospp"): (34.93, 13.92),
    ("overfeat5", "nospp"): (34.13, 13.52),
    ("overfeat7", "nospp"): (32.01, 11.97),
    ("zf5", "spp_single"): (34.98, 14.14),
    ("convnet5", "spp_single"): (34.38, 13.54),
    ("overfeat5", "spp_single"): (32.87, 12.80),
    ("overfeat7", "spp_single"): (30.36, 11.12),
    ("zf5", "spp_multi"): (34.60, 13.64),
    ("convnet5", "spp_multi"): (33.94, 13.33),
    ("overfeat5", "spp_multi"): (32.26, 12.33),
    ("overfeat7", "spp_multi"): (29.68, 10.95),
}


def _run(
    root: Path,
    cell: str,
    model: str,
    mode: str,
    seed: int,
    metrics: dict,
    data="generated",
    scale="embedded",
    status="finished",
    updated: str | None = None,
) -> Path:
    """Write one synthetic run dir with the DESIGN.md layout."""
    run_dir = root / cell / f"{data}-{scale}-s{seed}-f00d"
    payload = {
        "status": status,
        "cell": cell,
        "model": model,
        "mode": mode,
        "levels": [6, 3, 2, 1],
        "data": data,
        "scale": scale,
        "seed": seed,
        "fingerprint": "f00d",
        "tables": ["table2"],
        "metrics": metrics,
    }
    write_results(run_dir, payload)
    if updated is not None:  # force an ordering independent of the clock
        d = read_json(run_dir / RESULTS_FILE)
        d["updated"] = updated
        atomic_write_json(run_dir / RESULTS_FILE, d)
    return run_dir


def _table2_runs(root: Path, offset: float = 0.0, skip: tuple[str, ...] = (), **kw) -> None:
    """All 12 Table 2 cells at paper value + offset; zf5_spp_multi gets two seeds (+-0.5)."""
    for (model, mode), (t1, t5) in PAPER_T2.items():
        cell = f"{model}_{mode}"
        if cell in skip:
            continue
        if cell == "zf5_spp_multi":
            for seed, d in ((0, -0.5), (1, 0.5)):
                _run(
                    root,
                    cell,
                    model,
                    mode,
                    seed,
                    {"10view": {"top1_err": t1 + offset + d, "top5_err": t5 + offset}},
                    **kw,
                )
        else:
            _run(
                root,
                cell,
                model,
                mode,
                0,
                {"10view": {"top1_err": t1 + offset, "top5_err": t5 + offset}},
                **kw,
            )


def _rows(report) -> dict[tuple[str, str, str], dict]:
    return {(r["row"], r["column"], r["metric"]): r for r in report.rows}


def test_table2_layout_paper_numbers_diff_gain(tmp_path: Path) -> None:
    _table2_runs(tmp_path, offset=0.25, data="imagenet", scale="paper")
    rep = build_report("table2", tmp_path, EXPERIMENTS, "imagenet", "paper")
    rows = _rows(rep)
    for (model, mode), (t1, t5) in PAPER_T2.items():
        for metric, paper in (("top1_err", t1), ("top5_err", t5)):
            r = rows[(mode, model, metric)]
            assert r["paper"] == pytest.approx(paper)
            assert r["ours"] == pytest.approx(paper + 0.25)
            assert r["diff"] == pytest.approx(0.25)
            assert r["view"] == "10view" and r["data"] == "imagenet" and r["scale"] == "paper"
    # mean/std/n over two seeds
    zf = rows[("spp_multi", "zf5", "top1_err")]
    assert zf["n"] == 2 and zf["std"] == pytest.approx(2**0.5 * 0.5, abs=1e-3)
    assert rows[("nospp", "zf5", "top1_err")]["std"] is None
    # gain = no-SPP - ours, and the paper's brackets reproduce: 35.99 - 34.98 = 1.01
    assert rows[("spp_single", "zf5", "top1_err")]["gain"] == pytest.approx(1.01)
    assert rows[("spp_multi", "overfeat7", "top5_err")]["gain"] == pytest.approx(1.02)
    assert rows[("nospp", "zf5", "top1_err")]["gain"] is None
    md = rep.markdown
    for label in (
        "(a) no SPP",
        "(b) SPP single-size trained",
        "(c) SPP multi-size trained",
        "ZF-5",
        "Convnet*-5",
        "Overfeat-5",
        "Overfeat-7",
        "top-1 error (%)",
        "top-5 error (%)",
    ):
        assert label in md and label in rep.console
    assert "34.98 (1.01)" in md and "29.68 (2.33)" in md and "10.95 (1.02)" in md  # the paper's cells
    assert "34.85 ± 0.71 (1.39)" in md  # ours for zf5 spp_multi: mean of 34.35/35.35, gain 36.24 - 34.85
    assert "seeds [0, 1]" in md and "13 run(s)" in md and "data=imagenet, scale=paper" in md
    assert "ImageNet 2012 val, 10-view" in md
    # the in-text results are listed with their paper numbers, ours missing
    assert "35.06" in md and "30.06" in md and "10.96" in md
    assert rows[("spp_single_l4", "zf5", "top1_err")]["ours"] is None


def test_missing_cells_dash_and_verify_fails(tmp_path: Path) -> None:
    _table2_runs(tmp_path, skip=("convnet5_spp_multi",), data="imagenet", scale="paper")
    rep = build_report("table2", tmp_path, EXPERIMENTS, "imagenet", "paper", verify=True)
    r = _rows(rep)[("spp_multi", "convnet5", "top1_err")]
    assert r["ours"] is None and r["n"] == 0 and r["paper"] == pytest.approx(33.94)
    assert "**—**<br>paper 33.94 (0.99)<br>Δ —" in rep.markdown
    assert rep.verify_ok is False
    assert any("convnet5/spp_multi top1_err: missing" in ln and ln.endswith("FAIL") for ln in rep.verify_lines)


def test_verify_paper_pass_and_fail(tmp_path: Path) -> None:
    ok_root, bad_root = tmp_path / "ok", tmp_path / "bad"
    _table2_runs(ok_root, offset=0.3, data="imagenet", scale="paper")
    rep = build_report("table2", ok_root, EXPERIMENTS, "imagenet", "paper", verify=True)
    assert rep.verify_ok is True and rep.verify_section == "paper"
    assert "table2 zf5/spp_multi top1_err: 34.90 vs 34.60 ± 1.00 OK" in rep.verify_lines
    assert any("relation top1_err: row=spp_single < row=nospp [column=overfeat7]" in ln for ln in rep.verify_lines)
    assert rep.verify_lines[-1].endswith("-> PASSED")

    _table2_runs(bad_root, offset=1.5, data="imagenet", scale="paper")
    rep = build_report("table2", bad_root, EXPERIMENTS, "imagenet", "paper", verify=True)
    assert rep.verify_ok is False
    assert "table2 overfeat7/nospp top1_err: 33.51 vs 32.01 ± 1.00 FAIL" in rep.verify_lines


def test_verify_relation_fails_when_spp_is_worse(tmp_path: Path) -> None:
    _table2_runs(tmp_path, skip=("convnet5_spp_single",), data="imagenet", scale="paper")
    # within tolerance of the paper (34.38 + 0.62) but worse than no-SPP (34.93): only the relation catches it
    _run(
        tmp_path,
        "convnet5_spp_single",
        "convnet5",
        "spp_single",
        0,
        {"10view": {"top1_err": 35.00, "top5_err": 13.54}},
        data="imagenet",
        scale="paper",
    )
    rep = build_report("table2", tmp_path, EXPERIMENTS, "imagenet", "paper", verify=True)
    assert rep.verify_ok is False
    failed = [ln for ln in rep.verify_lines if ln.endswith("FAIL")]
    assert failed == [
        "table2 relation top1_err: row=spp_single < row=nospp [column=convnet5]: "
        "35.00 < 34.93, Δ -0.07 ± — SE (n=1) FAIL"
    ]


def test_verify_embedded_relations_and_no_section(tmp_path: Path) -> None:
    """The embedded section checks the paper's relations (not bounds); one seed gives no standard error."""
    _table2_runs(tmp_path, offset=0.0)  # generated/embedded at the paper's numbers: every relation holds on the means
    # the shipped spec marks the embedded relations not reproduced: printed as such (never OK), verify passes
    shipped = build_report("table2", tmp_path, EXPERIMENTS, "generated", "embedded", verify=True)
    marked = [ln for ln in shipped.verify_lines if "NOT REPRODUCED" in ln]
    assert len(marked) == 3 and not any(ln.endswith(" OK") for ln in marked) and shipped.verify_ok is True
    # the relations as the paper states them (marks removed)
    rep = build_report("table2", tmp_path, as_stated(tmp_path / "spec", "table2"), "generated", "embedded", verify=True)
    assert rep.verify_section == "embedded"
    assert "table2 relation top1_err: row=spp_single < row=nospp in at least 3 pairs: 4 of 4 hold (need 3) OK" in (
        rep.verify_lines
    )
    assert not any(" in [" in ln for ln in rep.verify_lines)  # no bounds any more
    # the mean gains need a standard error: with a single seed per cell (three cells) they fail, saying why
    failed = [ln for ln in rep.verify_lines if ln.endswith("FAIL")]
    assert len(failed) == 2 and all("mean gain" in ln and "needs >= 2 seeds" in ln for ln in failed)
    assert rep.verify_ok is False
    # a (data, scale) with no section: reported, not verified
    _table2_runs(tmp_path / "other", data="imagenet", scale="embedded")
    rep = build_report("table2", tmp_path / "other", EXPERIMENTS, "imagenet", "embedded", verify=True)
    assert rep.verify_ok is None and "no verify section" in rep.verify_lines[0]


def test_table3_views_and_direction(tmp_path: Path) -> None:
    paper = {
        "zf5_spp_single": (38.01, 37.55),
        "zf5_spp_multi": (37.57, 37.07),
        "overfeat7_spp_single": (33.18, 32.72),
        "overfeat7_spp_multi": (32.57, 31.25),
    }
    for cell, (crop, full) in paper.items():
        model, mode = cell.split("_", 1)
        _run(
            tmp_path,
            cell,
            model,
            mode,
            0,
            {
                "10view": {"top1_err": 1.0},
                "center": {"top1_err": crop + 0.1},
                "full": {"top1_err": full + 0.1},
            },
            data="imagenet",
            scale="paper",
        )
    rep = build_report("table3", tmp_path, EXPERIMENTS, "imagenet", "paper", verify=True)
    rows = _rows(rep)
    assert rows[("zf5_spp_multi", "full", "top1_err")]["view"] == "full"
    assert rows[("overfeat7_spp_multi", "center", "top1_err")]["paper"] == pytest.approx(32.57)
    assert rows[("overfeat7_spp_multi", "full", "top1_err")]["diff"] == pytest.approx(0.1)
    assert rep.verify_ok is True
    assert "1 crop" in rep.markdown and "1 full" in rep.markdown
    # full worse than crop in one row: the direction check fails
    _run(
        tmp_path,
        "zf5_spp_single",
        "zf5",
        "spp_single",
        0,
        {"center": {"top1_err": 37.9}, "full": {"top1_err": 38.2}},
        data="imagenet",
        scale="paper",
    )
    rep = build_report("table3", tmp_path, EXPERIMENTS, "imagenet", "paper", verify=True)
    assert rep.verify_ok is False
    assert [ln for ln in rep.verify_lines if ln.endswith("FAIL")] == [
        "table3 relation top1_err: column=full < column=center [row=zf5_spp_single]: "
        "38.20 < 37.90, Δ -0.30 ± — SE (n=1) FAIL"
    ]


def test_select_latest_combo_unfinished_and_superseded(tmp_path: Path) -> None:
    _run(
        tmp_path,
        "zf5_nospp",
        "zf5",
        "nospp",
        0,
        {"10view": {"top1_err": 50.0}},
        updated="2025-01-01T00:00:00+00:00",
    )
    _run(
        tmp_path,
        "zf5_nospp",
        "zf5",
        "nospp",
        0,
        {"10view": {"top1_err": 40.0}},
        data="imagenet",
        scale="paper",
        updated="2025-02-01T00:00:00+00:00",
    )
    _run(tmp_path, "zf5_spp_single", "zf5", "spp_single", 0, {"10view": {"top1_err": 1.0}}, status="running")
    recs = load_local(tmp_path)
    assert len(recs) == 2  # the running one is ignored
    coll = select(recs, ["zf5_nospp", "zf5_spp_single"])
    assert (coll.data, coll.scale) == ("imagenet", "paper")
    assert "most recently updated" in coll.notes[0] and "generated/embedded" in coll.notes[0]
    # same cell + seed twice (another fingerprint): the latest wins, no averaging across configs
    other = tmp_path / "zf5_nospp" / "generated-embedded-s0-beef"
    write_results(
        other,
        {
            "status": "finished",
            "cell": "zf5_nospp",
            "model": "zf5",
            "mode": "nospp",
            "data": "generated",
            "scale": "embedded",
            "seed": 0,
            "metrics": {"10view": {"top1_err": 60.0}},
        },
    )
    coll = select(load_local(tmp_path), ["zf5_nospp"], "generated", "embedded")
    agg = aggregate(coll.records)[("zf5_nospp", "10view", "top1_err")]
    assert agg.n == 1 and agg.mean == 60.0 and "superseded" in coll.notes[0]


def test_unreadable_results_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _run(tmp_path, "zf5_nospp", "zf5", "nospp", 0, {"10view": {"top1_err": 40.0, "top5_err": 20.0}})
    bad = tmp_path / "zf5_spp_single" / "generated-embedded-s0-dead" / RESULTS_FILE
    bad.parent.mkdir(parents=True)
    bad.write_text('{"status": "finished", "metrics": ')  # truncated
    skipped: list[Path] = []
    with caplog.at_level(logging.WARNING):
        found = list(iter_results(tmp_path, skipped))
    assert len(found) == 1 and skipped == [bad]
    assert str(bad) in caplog.text
    rep = build_report("table2", tmp_path, EXPERIMENTS, "generated", "embedded")
    assert "1 unreadable results file(s) skipped" in rep.markdown and str(bad) in rep.markdown
    with pytest.raises(ValueError, match="invalid JSON in .*results.json"):
        read_results(bad.parent)


def test_update_results_deep_merges(tmp_path: Path) -> None:
    write_results(
        tmp_path,
        {
            "status": "running",
            "cell": "zf5_spp_multi",
            "metrics": {"10view": {"top1_err": 35.0}},
            "train": {"epochs": 3},
        },
    )
    update_results(
        tmp_path, {"status": "finished", "metrics": {"full": {"top1_err": 37.0}}, "train": {"seconds": 12.5}}
    )
    d = read_results(tmp_path)
    assert d["status"] == "finished"
    assert d["metrics"] == {"10view": {"top1_err": 35.0}, "full": {"top1_err": 37.0}}
    assert d["train"] == {"epochs": 3, "seconds": 12.5} and d["schema"] == 1 and "updated" in d
    with pytest.raises(ValueError, match="status"):
        write_results(tmp_path, {"status": "done?"})


def test_atomic_write_no_tmp_and_crash_keeps_old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "results.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash while serialising")

    monkeypatch.setattr(json, "dumps", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        update_results(tmp_path, {"a": 3})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]

    # a crash after the temp file is written (the rename fails) leaves the old file and no temp file behind
    def no_replace(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", no_replace)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_write_json(path, {"a": 4})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_csv_columns_and_files(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _table2_runs(runs)
    rep = build_report("table2", runs, EXPERIMENTS, "generated", "embedded", verify=True)
    rows = list(csv.DictReader(io.StringIO(rep.csv)))
    assert (
        list(rows[0].keys())
        == CSV_COLUMNS
        == [
            "table",
            "row",
            "column",
            "metric",
            "view",
            "ours",
            "std",
            "n",
            "paper",
            "diff",
            "gain",
            "data",
            "scale",
        ]
    )
    assert len(rows) == 5 * 4 * 2  # (3 rows + 2 in-text rows) x 4 networks x 2 metrics
    out = tmp_path / "exp"
    paths = rep.to_files(out)
    tables = sorted(
        p.name for p in out.iterdir() if p.suffix != ".png"
    )  # the pictures: tests/reporting/test_figures.py
    assert tables == ["results.csv", "results.md"] == sorted(p.name for p in paths if p.suffix != ".png")
    assert (out / "results.csv").read_text() == rep.csv
    assert "## Verification" in (out / "results.md").read_text()


def test_expected_yaml_has_the_papers_numbers() -> None:
    spec = yaml.safe_load((EXPERIMENTS / "table2" / "expected.yaml").read_text())
    rows = {r["id"]: r for r in spec["rows"]}
    for (model, mode), (t1, t5) in PAPER_T2.items():
        assert rows[mode]["paper"][model] == {"top1_err": t1, "top5_err": t5}
    assert rows["spp_single_l4"]["paper"]["zf5"] == {"top1_err": 35.06, "top5_err": 14.04}
    assert rows["spp_random"]["paper"]["overfeat7"] == {"top1_err": 30.06, "top5_err": 10.96}
    t3 = yaml.safe_load((EXPERIMENTS / "table3" / "expected.yaml").read_text())
    assert {r["id"]: (r["paper"]["center"]["top1_err"], r["paper"]["full"]["top1_err"]) for r in t3["rows"]} == {
        "zf5_spp_single": (38.01, 37.55),
        "zf5_spp_multi": (37.57, 37.07),
        "overfeat7_spp_single": (33.18, 32.72),
        "overfeat7_spp_multi": (32.57, 31.25),
    }


def test_env_and_payload(tmp_path: Path) -> None:
    v = versions()
    for key in (
        "python",
        "torch",
        "torchvision",
        "lightning",
        "hydra",
        "omegaconf",
        "torchmetrics",
        "wandb",
        "numpy",
        "cuda",
        "cudnn",
        "platform",
    ):
        assert key in v
    assert v["torch"] is not None
    assert git_info(tmp_path) == {"commit": None, "dirty": None}  # not a checkout
    h = host_info()
    assert h["cpu_count"] >= 1 and isinstance(h["cuda_devices"], list)
    p = make_payload(
        cell="zf5_nospp",
        model="zf5",
        mode="nospp",
        levels=None,
        data="generated",
        scale="embedded",
        seed=0,
        fingerprint="ab12",
        tables=["table2"],
        world_size=2,
    )
    write_results(tmp_path, p)
    assert read_results(tmp_path)["host"]["world_size"] == 2


def test_record_from_wandb_maps_hydra_config_and_summary() -> None:
    from sppnet_exp.reporting.wandb_io import record_from_wandb

    config = {
        "cell": "zf5_spp_multi",
        "model": {"name": "zf5", "width": 1.0},
        "mode": {"name": "spp_multi", "levels": [6, 3, 2, 1]},
        "data": {"name": "imagenet"},
        "scale": {"name": "paper"},
        "seed": 3,
    }
    summary = {"test/10view/top1_err": 34.7, "test/full/top1_err": 37.0, "val/top1_err": 40.0, "_step": 9}
    rec = record_from_wandb(config, summary, "2025-03-01T10:00:00Z", "https://wandb.ai/x")
    assert rec is not None
    assert (rec.cell, rec.model, rec.mode, rec.levels, rec.data, rec.scale, rec.seed) == (
        "zf5_spp_multi",
        "zf5",
        "spp_multi",
        [6, 3, 2, 1],
        "imagenet",
        "paper",
        3,
    )
    assert rec.metrics == {"10view": {"top1_err": 34.7}, "full": {"top1_err": 37.0}}
    assert rec.updated.year == 2025


def test_log_to_wandb_disabled_mode(tmp_path: Path) -> None:
    _table2_runs(tmp_path / "runs")
    rep = build_report("table2", tmp_path / "runs", EXPERIMENTS, "generated", "embedded")
    assert rep.log_to_wandb("sppnet-test", mode="disabled", dir=str(tmp_path)) is None


def test_wandb_mode_disabled_env_overrides_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    _table2_runs(tmp_path / "runs")
    rep = build_report("table2", tmp_path / "runs", EXPERIMENTS, "generated", "embedded")
    assert rep.log_to_wandb("sppnet-test", mode="offline", dir=str(tmp_path / "logs")) is None
    assert not list(tmp_path.rglob("wandb"))


def _det_metrics(base: float) -> dict:
    rows = ["pool5", "fc6", "ftfc6", "ftfc7", "ftfc7_bb"]
    out = {r: {"mAP": base + i} for i, r in enumerate(rows)}
    out["chance"] = {"mAP": 2.0}
    return out


def test_table9_rows_with_own_cells_views_metrics(tmp_path: Path) -> None:
    """Detection tables: mAP rows read each column's cell, timing rows one timing cell with a view per column."""
    for cell, base in (("spp_1scale", 30.0), ("spp_5scale", 32.0), ("rcnn_alexnet", 31.0)):
        _run(tmp_path, cell, "zf5", "spp", 0, _det_metrics(base))
    timing = {
        "spp_1scale": {"conv_s": 0.0123, "fc_s": 0.02, "total_s": 0.04, "speedup": 50.0, "conv_speedup": 154.5},
        "spp_5scale": {"conv_s": 0.05, "fc_s": 0.02, "total_s": 0.08, "speedup": 25.0, "conv_speedup": 38.0},
        "rcnn_alexnet": {"conv_s": 1.9, "fc_s": 0.02, "total_s": 2.0},
    }
    _run(tmp_path, "timing_alexnet", "zf5", "timing", 0, timing)
    rep = build_report("table9", tmp_path, EXPERIMENTS, verify=True)
    rows = _rows(rep)
    assert rows[("ftfc7_bb", "spp_5scale", "mAP")]["ours"] == pytest.approx(36.0)
    assert rows[("ftfc7_bb", "spp_5scale", "mAP")]["paper"] == pytest.approx(59.2)
    assert rows[("conv_time", "spp_1scale", "conv_s")]["ours"] == pytest.approx(0.0123)
    assert rows[("speedup", "spp_1scale", "speedup")]["paper"] == pytest.approx(64.0)
    assert "**0.012**" in rep.markdown  # seconds with 3 decimals
    assert rep.verify_ok, rep.verify_lines
    assert any("relation mAP: row=chance < row=ftfc7_bb" in line and line.endswith("OK") for line in rep.verify_lines)
    assert rows[("conv_speedup", "spp_1scale", "conv_speedup")]["paper"] == pytest.approx(169.1)
    # The speed-up targets are documented as not reproduced with AlexNet on a CPU: a miss is printed as such and
    # does not fail; an accuracy relation that breaks does.
    timing["spp_1scale"]["speedup"] = 0.7
    _run(tmp_path, "timing_alexnet", "zf5", "timing", 0, timing, updated="2030-01-01T00:00:00+00:00")
    rep = build_report("table9", tmp_path, EXPERIMENTS, verify=True)
    assert rep.verify_ok and any("column=spp_1scale" in ln and "NOT REPRODUCED" in ln for ln in rep.verify_lines)
    _run(tmp_path, "spp_5scale", "zf5", "spp", 0, _det_metrics(10.0), updated="2030-01-01T00:00:00+00:00")
    assert not build_report("table9", tmp_path, EXPERIMENTS, verify=True).verify_ok
