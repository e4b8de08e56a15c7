"""The whole detector at a tiny scale: SPP-net and R-CNN cells, resume after a kill, timing, Table 12's combination,
and short runs on the real VOC-layout (BCCD) and LabelImg-layout (playing cards) data."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from sppnet_exp.config import config_dir
from sppnet_exp.detection.cells.task import detect
from sppnet_exp.engine.lifecycle import RunMismatchError
from tests.conftest import TINY

ROWS = ["pool5", "fc6", "ftfc6", "ftfc7", "ftfc7_bb"]
# The pretrained classification net: Table 2's cell at the tiny test scale (trained once per session, then found).
PRETRAINED = "[" + ",".join(f"'{o}'" for o in TINY if not o.startswith("trainer.")) + "]"
TINY_DET = [
    "logger=none",
    "trainer=cpu",
    "progress=false",
    "workers=1",
    "scale.target_size=64",
    "scale.scales_1=[100]",
    "scale.scales_5=[80,100,130]",
    "scale.rcnn_padding=4",
    "scale.proposals.max_proposals=40",
    "scale.proposals.min_size=6",
    "scale.finetune.steps=6",
    "scale.finetune.batch_size=32",
    "scale.rcnn_finetune.steps=3",
    "scale.rcnn_finetune.batch_size=16",
    "scale.rcnn_finetune.images_per_batch=2",
    "scale.timing.geometry=data",
    "scale.timing.images=2",
    "scale.timing.warmup=1",
    "svm.retrain_limit=200",
    f"pretrained.overrides={PRETRAINED}",
]
GEN = ["data.gen.trainval=14", "data.gen.test=8", "data.gen.num_classes=4"]


@pytest.fixture(scope="module")
def det_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs, caches and the pretrained nets of this module (the nets are trained once, then found)."""
    return tmp_path_factory.mktemp("det")


@pytest.fixture
def det_cfg(det_root: Path, data_dir: Path) -> Callable[..., DictConfig]:
    def _make(*overrides: str) -> DictConfig:
        paths = [f"paths.output_dir={det_root}/outputs", f"paths.data_dir={data_dir}"]
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return compose("detect", overrides=[*TINY_DET, *paths, *overrides])

    return _make


def _check_rows(results: dict, rows: list[str]) -> None:
    assert results["status"] == "finished"
    for row in [*rows, "chance"]:
        m = results["metrics"][row]
        assert 0.0 <= m["mAP"] <= 100.0, (row, m)


def test_spp_cell_end_to_end_and_resume(det_cfg: Callable[..., DictConfig]) -> None:
    cfg = det_cfg("experiment=table9/spp_1scale", *GEN)
    results = detect(cfg)
    _check_rows(results, ROWS)
    run_dir = Path(cfg.run_dir)
    assert results["tables"] == ["table9"] and results["config"]["detector"]["method"] == "spp"
    assert results["versions"]["torch"] and results["seed"] == 0
    for row in ROWS:
        lines = (run_dir / f"detections_{row}.jsonl").read_text().splitlines()
        rec = json.loads(lines[0])
        assert set(rec) == {"image_id", "label", "score", "box"} and len(rec["box"]) == 4
        pr = json.loads((run_dir / f"pr_{row}.json").read_text())  # the per-class PR points the report draws
        assert pr["classes"] and all(len(c["recall"]) == len(c["precision"]) for c in pr["classes"].values())
    # The trained net is exactly the one Table 2's cell would use: found, not retrained, by the next cell.
    pre = results["detect"]["pretrained"]
    assert Path(pre["checkpoint"]).is_file() and pre["cell"] == "zf5_spp_single"

    # Simulate a kill after ftfc7: the last row's results are gone, the run is "running".
    saved = json.loads((run_dir / "results.json").read_text())
    saved["status"] = "running"
    del saved["metrics"]["ftfc7_bb"]
    (run_dir / "results.json").write_text(json.dumps(saved))
    (run_dir / "detections_ftfc7_bb.jsonl").unlink()
    svm = run_dir / "svm" / "ftfc7.npz"
    ft = run_dir / "finetune" / "fc_head.pt"
    before = (svm.stat().st_mtime_ns, ft.stat().st_mtime_ns)
    again = detect(cfg)
    _check_rows(again, ROWS)
    assert (svm.stat().st_mtime_ns, ft.stat().st_mtime_ns) == before  # fine-tuning and SVMs were reused
    for row in ("pool5", "fc6", "ftfc6", "ftfc7"):
        assert again["metrics"][row] == results["metrics"][row]
    assert again["metrics"]["ftfc7_bb"]["mAP"] == pytest.approx(results["metrics"]["ftfc7_bb"]["mAP"])
    # A finished cell is skipped.
    assert detect(cfg)["detect"] == again["detect"]
    # ... unless it was computed from another pretrained net (its Table 2 cell retrained with another recipe): the
    # stale detections are refused in one line, before anything runs, and retrain=true is the way out.
    saved = json.loads((run_dir / "results.json").read_text())
    saved["detect"]["pretrained"]["fingerprint"] = "0ld0ld00"
    (run_dir / "results.json").write_text(json.dumps(saved))
    with pytest.raises(RunMismatchError, match=r"another pretrained net \(zf5_spp_single 0ld0ld00 → zf5_spp_single"):
        detect(cfg)
    assert json.loads((run_dir / "results.json").read_text()) == saved  # nothing was touched


def test_rcnn_rows_without_finetuning(det_cfg: Callable[..., DictConfig]) -> None:
    """R-CNN's pool5 and fc6 rows: warped windows through the pretrained net, no fine-tuning needed."""
    results = detect(det_cfg("experiment=table10/rcnn_zf5", *GEN, "rows=[pool5,fc6]"))
    _check_rows(results, ["pool5", "fc6"])
    assert not (Path(results["run_dir"]) / "finetune").exists()


@pytest.mark.slow
def test_rcnn_cell_and_timing(det_cfg: Callable[..., DictConfig]) -> None:
    results = detect(det_cfg("experiment=table10/rcnn_zf5", *GEN))
    _check_rows(results, ROWS)
    timing = detect(det_cfg("experiment=table10/timing", *GEN))
    assert timing["status"] == "finished"
    m = timing["metrics"]
    for k in ("spp_1scale", "spp_5scale", "rcnn_zf5"):
        assert m[k]["conv_s"] > 0 and m[k]["fc_s"] > 0 and m[k]["total_s"] >= m[k]["conv_s"] + m[k]["fc_s"]
    pairs = timing["detect"]["timing"]["pairs"]
    assert len(pairs) == 2 and timing["detect"]["timed"]["geometry"] == "data"  # one pair per timed test image

    def total(t: dict[str, float]) -> float:
        return t["conv_s"] + t["fc_s"] + t["other_s"]

    per_pair = [total(p["rcnn_zf5"]) / total(p["spp_1scale"]) for p in pairs]
    assert m["spp_1scale"]["speedup"] == pytest.approx(float(np.median(per_pair)))


@pytest.mark.slow
def test_table12_combination(det_cfg: Callable[..., DictConfig]) -> None:
    common = [*GEN, "detector.scales=${scale.scales_1}", "rows=[ftfc7_bb]"]
    r1 = detect(det_cfg("experiment=table12/net1", *common))
    r2 = detect(det_cfg("experiment=table12/net2", *common))
    assert r1["detect"]["pretrained"]["seed"] == 0 and r2["detect"]["pretrained"]["seed"] == 1
    member = "detector.member_overrides=['detector.scales=${scale.scales_1}','rows=[ftfc7_bb]']"
    comb_cfg = det_cfg("experiment=table12/combination", *GEN, member)
    comb = detect(comb_cfg)
    assert comb["status"] == "finished" and 0.0 <= comb["metrics"]["ftfc7_bb"]["mAP"] <= 100.0
    members = comb["detect"]["members"]
    assert [Path(m["run_dir"]).name for m in members] == [Path(r1["run_dir"]).name, Path(r2["run_dir"]).name]


def test_combination_needs_finished_members(det_cfg: Callable[..., DictConfig]) -> None:
    cfg = det_cfg("experiment=table12/combination", *GEN, "data.gen.seed=7")
    with pytest.raises(FileNotFoundError, match="run `python -m sppnet_exp.detect experiment=table12/net1"):
        detect(cfg)


@pytest.mark.data
@pytest.mark.parametrize(
    ("det_data", "sub", "extra"),
    [
        ("voc", "bccd", ["scale.max_images={train: 40, test: 20}"]),
        (
            "labelimg",
            "playing_cards/images",
            ["scale.max_images={train: 60, test: 30}", "scale.proposals.max_side=250"],
        ),
    ],
)
def test_real_data_beats_chance(
    det_cfg: Callable[..., DictConfig], shared_data: Path, det_data: str, sub: str, extra: list[str]
) -> None:
    """A short SPP run on real data (VOC layout and LabelImg layout) scores above the chance level."""
    root = shared_data / sub
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    cfg = det_cfg(
        "experiment=table9/spp_1scale",
        f"data={det_data}",
        f"data.root={root}",
        "rows=[pool5]",
        "scale.scales_1=[160]",
        "scale.proposals.max_proposals=80",
        *extra,
    )
    results = detect(cfg)
    m = results["metrics"]
    assert results["data"] == det_data
    assert m["pool5"]["mAP"] > m["chance"]["mAP"] + 5.0, m


@pytest.mark.slow
def test_two_cell_multirun_with_two_ddp_ranks_each(tmp_path: Path, data_dir: Path) -> None:
    """trainer=ddp_cpu inside a 2-job Hydra multirun: each cell's conv5 cache is written by two ranks, rank 1
    leaves after its shard (no chance row, detections or results of its own), rank 0 finishes the cell; the
    second job is not taken for a child rank of the first."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[3]
    args = [
        sys.executable,
        "-m",
        "sppnet_exp.detect",
        "-m",
        "experiment=table9/spp_1scale,table9/spp_5scale",
        *[o for o in TINY_DET if not o.startswith("trainer=")],
        *GEN,
        "trainer=ddp_cpu",
        "rows=[pool5]",
        f"paths.output_dir={tmp_path}/outputs",
        f"paths.data_dir={data_dir}",
        f"hydra.sweep.dir={tmp_path}/multirun",
    ]
    proc = subprocess.run(args, cwd=repo, capture_output=True, text=True, timeout=1200)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    runs = tmp_path / "outputs" / "runs"
    for cell, scales in (("spp_1scale", ["s100"]), ("spp_5scale", ["s80", "s100", "s130"])):
        results = list((runs / cell).glob("*/results.json"))
        assert len(results) == 1, (cell, results)  # one run dir per cell
        r = json.loads(results[0].read_text())
        assert r["status"] == "finished" and 0.0 <= r["metrics"]["pool5"]["mAP"] <= 100.0
        assert sorted(p.name for p in results[0].parent.glob("detections_*.jsonl")) == [
            "detections_chance.jsonl",
            "detections_pool5.jsonl",
        ]
        for s in scales:
            assert len(list((tmp_path / "outputs" / "cache" / "conv5").glob(f"*/{s}/*.npy"))) == 14 + 8
    assert log.count("conv5 shard written, leaving the rest of the detector to rank 0") == 2  # one child per cell
