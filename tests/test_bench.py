"""The benchmark runner writes its JSON and Markdown (numbers are measured, never asserted as targets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sppnet_exp.bench.run import main
from tests.conftest import TINY


def test_spp_head_bench_writes_json_and_summary(tmp_path: Path) -> None:
    main(["--quick", "--only", "spp_head", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "spp_head.json").read_text())["results"]
    assert {r["head"] for r in rows} == {"spp", "nospp"}
    spp = next(r for r in rows if r["head"] == "spp" and r["fc6_in"] == 256 * 50)
    assert spp["forward_ms"] > 0 and spp["forward_backward_ms"] > spp["forward_ms"]
    assert "SPP head vs fixed pool5 head" in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_training_overhead_and_data_benches_run(tmp_path: Path) -> None:
    overrides = [o for o in TINY if not o.startswith("trainer.")] + [f"paths.data_dir={tmp_path}/data"]
    main(["--quick", "--only", "data,train_overhead", "--out", str(tmp_path), *overrides])
    over = json.loads((tmp_path / "train_overhead.json").read_text())
    assert over["bare_median"] > 0 and over["lightning_median"] > 0
    assert json.loads((tmp_path / "data.json").read_text())["results"][0]["images_per_s"] > 0


def test_detection_bench_writes_timings_and_checks(tmp_path: Path) -> None:
    main(["--quick", "--only", "detection,proposals", "--out", str(tmp_path)])
    det = json.loads((tmp_path / "detection.json").read_text())
    assert set(det["methods"]) == {"spp_1scale", "spp_5scale", "rcnn"}
    for t in det["methods"].values():
        assert t["conv_s"] > 0 and t["fc_s"] > 0 and t["total_s"] > t["conv_s"]
    assert set(det["checks"]) == set(det["meets"]) == set(det["targets"])
    assert json.loads((tmp_path / "proposals.json").read_text())["images_per_s_per_core"] > 0
    assert "SPP-net vs R-CNN" in (tmp_path / "summary.md").read_text()
