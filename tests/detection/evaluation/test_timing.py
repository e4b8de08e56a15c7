"""Tables 9/10's timing: paired rounds over the same images, R-CNN scaled by its window count, the paper geometry.

The cell test runs the real timing cell at the paper's geometry (full-width ZF-5 and AlexNet, a 500x375 scene,
2,000 windows, s = 688 and the five scales) with three pairs (the median resists a stalled round) and R-CNN
timed on 16 windows: ~30 s on 2 cores.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from sppnet_exp.config import config_dir
from sppnet_exp.detection.cells.task import detect
from sppnet_exp.detection.evaluation.timing_pairs import (
    PaperGeometry,
    paired_timing,
    paper_items,
    paper_specs,
    random_windows,
    timing_rows,
)
from sppnet_exp.detection.features.pooling import PoolingSpec
from sppnet_exp.models import build_model


def _items(sizes: list[int]) -> list[tuple[torch.Tensor, np.ndarray]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i, n in enumerate(sizes):
        img = torch.randint(0, 256, (3, 96, 128), generator=g, dtype=torch.uint8)
        out.append((img, random_windows(n, 128, 96, seed=i)))
    return out


def _specs(net: torch.nn.Module, s1: tuple[int, ...], s5: tuple[int, ...]) -> tuple[PoolingSpec, PoolingSpec]:
    g = PaperGeometry(scales_1=s1, scales_5=s5, target_size=64)
    return paper_specs(net, g)


def test_pairs_time_every_method_on_the_same_image_and_scale_rcnn_by_its_windows() -> None:
    torch.manual_seed(0)
    net = build_model("zf5", width=0.125, num_classes=5).eval()
    items = _items([24, 30])
    res = paired_timing(
        net, net, items, *_specs(net, (128,), (96, 128)), warp_size=64, padding=4,
        rcnn_windows=8, min_pairs=4, warmup=1, linearity_counts=(4, 8), linearity_rounds=1,
    )  # fmt: skip
    assert len(res["pairs"]) == 4 and res["stopped"] == "min_pairs"
    for i, pair in enumerate(res["pairs"]):
        n = len(items[(i + 1) % 2][1])  # round 0 was the warm-up on item 0
        assert {pair[m]["windows"] for m in pair} == {n}
        assert pair["rcnn"]["timed_windows"] == 8
    assert res["rcnn_windows_timed"] == 8 and res["rcnn_linearity"]["counts"] == [4, 8]
    rows = timing_rows(res, "rcnn")
    for name in ("spp_1scale", "spp_5scale", "rcnn"):
        r = rows[name]
        assert r["total_s"] == pytest.approx(r["conv_s"] + r["fc_s"] + r["other_s"])
        assert r["conv_s"] == pytest.approx(statistics.median(p[name]["conv_s"] for p in res["pairs"]))
    per_pair = [
        sum(p["rcnn"][k] for k in ("conv_s", "fc_s", "other_s"))
        / sum(p["spp_1scale"][k] for k in ("conv_s", "fc_s", "other_s"))
        for p in res["pairs"]
    ]
    s = rows["spp_1scale"]
    assert s["speedup"] == pytest.approx(statistics.median(per_pair))
    assert s["speedup_lo"] <= s["speedup"] <= s["speedup_hi"]


def test_all_windows_timed_when_no_subset() -> None:
    net = build_model("zf5", width=0.125, num_classes=5).eval()
    res = paired_timing(net, net, _items([10]), *_specs(net, (128,), (128,)), 64, 4, min_pairs=1, warmup=0)
    assert res["rcnn_linearity"] is None and res["rcnn_windows_timed"] is None
    assert res["pairs"][0]["rcnn"]["timed_windows"] == 10


def test_paper_geometry_is_the_papers() -> None:
    g = PaperGeometry(images=2)
    items = paper_items(g)
    assert len(items) == 2 and g.scales_1 == (688,) and g.scales_5 == (480, 576, 688, 864, 1200)
    for img, boxes in items:
        assert tuple(img.shape) == (3, 375, 500) and img.dtype == torch.uint8 and boxes.shape == (2000, 4)
        assert boxes[:, 0].min() >= 1 and boxes[:, 2].max() <= 500 and boxes[:, 3].max() <= 375
    assert not np.array_equal(items[0][1], items[1][1])


def test_timing_cell_times_the_papers_geometry_with_random_full_width_nets(tmp_path: Path) -> None:
    """The embedded default's timing cell: no pretrained net is trained or loaded, the table says what was timed,
    and at 2,000 windows SPP-net's conv is far cheaper than R-CNN's (arithmetic alone: 87x)."""
    overrides = [
        "experiment=table9/timing",
        "logger=none",
        "trainer=cpu",
        f"paths.output_dir={tmp_path}/outputs",
        f"paths.data_dir={tmp_path}/data",
        "scale.timing.images=1",
        "scale.timing.warmup=1",
        "scale.timing.min_pairs=3",
        "scale.timing.max_pairs=3",
        "scale.timing.rcnn_windows=16",
        "scale.timing.linearity_counts=[8,16]",
        "pretrained.train_if_missing=false",
    ]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("detect", overrides=overrides)
    assert cfg.scale.timing.geometry == "paper"
    res = detect(cfg)
    m, timed = res["metrics"], res["detect"]["timed"]
    assert set(m) == {"spp_1scale", "spp_5scale", "rcnn_alexnet"}
    assert m["rcnn_alexnet"]["windows"] == 2000 and m["rcnn_alexnet"]["timed_windows"] == 16
    assert m["spp_1scale"]["conv_speedup"] > 20 and m["spp_5scale"]["conv_s"] > m["spp_1scale"]["conv_s"]
    assert "random weights" in timed["weights"] and "alexnet" in timed["weights"]
    assert any("random weights" in n for n in res["report_notes"])
    assert not (tmp_path / "outputs" / "runs" / "table2").exists()
