"""The embedded recipe (issue 21): BN as a model option, no dropout, multi-size by segments, the plateau step and
the per-image test scores — and the paper's recipe kept at ``scale=paper``."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torch import nn

from sppnet_exp.classification import SizeSchedule
from sppnet_exp.classification.classifier import PLATEAU_FRACTION, PLATEAU_WINDOW, SPPClassifier
from sppnet_exp.classification.task import train
from sppnet_exp.config import config_dir
from sppnet_exp.engine.wiring import model_kwargs
from sppnet_exp.models import build_model
from sppnet_exp.models.geometry import receptive_field
from tests.test_configs import EXPERIMENTS

TABLE2 = [e for e in EXPERIMENTS if e.startswith("table2/")]


def _compose(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize("experiment", TABLE2)
def test_paper_scale_keeps_the_papers_recipe(experiment: str) -> None:
    cfg = _compose(f"experiment={experiment}", "scale=paper")
    kwargs = model_kwargs(cfg)
    assert kwargs["dropout"] == 0.5 and kwargs["batch_norm"] is False and kwargs["lrn"] is True
    assert cfg.scale.max_epochs == cfg.model.paper_epochs and cfg.trainer.check_val_every_n_epoch == 1
    if cfg.mode.sizes.schedule != "fixed":
        assert cfg.mode.sizes.segments is None  # one size per full epoch (section 2.3)
    net = build_model(**kwargs, num_classes=1000)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert [n for n, _ in net.features.named_children() if n.startswith("norm")]  # the specs' LRN layers
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.5, 0.5]


@pytest.mark.parametrize("experiment", TABLE2)
def test_embedded_scale_uses_bn_no_dropout_and_segments(experiment: str) -> None:
    cfg = _compose(f"experiment={experiment}")
    kwargs = model_kwargs(cfg)
    assert kwargs["dropout"] == 0.0 and kwargs["batch_norm"] is True and kwargs["lrn"] is False
    if cfg.mode.sizes.schedule != "fixed":
        assert cfg.mode.sizes.segments == cfg.model.paper_epochs
    # a user can still ask for the paper's head on the embedded scale
    paper_head = model_kwargs(_compose(f"experiment={experiment}", "model.dropout=0.5", "model.batch_norm=false"))
    assert paper_head["dropout"] == 0.5 and paper_head["batch_norm"] is False


@pytest.mark.parametrize("name", ["zf5", "convnet5", "overfeat5", "overfeat7", "alexnet"])
def test_batch_norm_sits_between_every_conv_and_its_relu(name: str) -> None:
    net = build_model(name, width=0.125, num_classes=10, input_size=112, batch_norm=True)
    children = list(net.features.named_children())
    convs = [i for i, (_, m) in enumerate(children) if isinstance(m, nn.Conv2d)]
    for i in convs:
        conv, (bn_name, bn), (_, relu) = children[i][1], children[i + 1], children[i + 2]
        assert conv.bias is None and isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels
        assert isinstance(relu, nn.ReLU) and bn_name == children[i][0].replace("conv", "bn")
    plain = build_model(name, width=0.125, num_classes=10, input_size=112)
    # BN is point-wise: the conv5 geometry the detector maps windows with is unchanged
    assert receptive_field(net.features) == receptive_field(plain.features)
    assert net.feature_map_size(112, 112) == plain.feature_map_size(112, 112)
    x = torch.randn(4, 3, 112, 112)
    net.train()
    out = net.features[: convs[0] + 2](x)  # conv1 + bn1 in training mode: per-channel zero mean, unit variance
    assert out.mean((0, 2, 3)).abs().max() < 1e-4
    assert (out.var((0, 2, 3), unbiased=False) - 1).abs().max() < 1e-2


def test_size_schedule_by_segments() -> None:
    total = 612  # 9 epochs x 68 steps, ZF-5's 70 segments of ~8.7 steps
    s = SizeSchedule("alternate", [112, 90], segments=70)
    sizes = [s.size_at(step // 68, step, total) for step in range(total)]
    switches = sum(a != b for a, b in zip(sizes, sizes[1:], strict=False))
    assert switches == 69 and sizes[0] == 112
    for third in range(3):  # both sizes in every part of the schedule (every lr phase)
        part = sizes[third * total // 3 : (third + 1) * total // 3]
        assert abs(part.count(112) - part.count(90)) <= 2 * total // 70 + 1  # at most two segments apart
    per_epoch = SizeSchedule("alternate", [112, 90])
    assert [per_epoch.size_at(e, e * 68, total) for e in range(4)] == [112, 90, 112, 90]
    with pytest.raises(ValueError, match="total number of optimizer steps"):
        s.size_at(0, 0, None)
    with pytest.raises(ValueError, match="segments"):
        SizeSchedule("alternate", [112, 90], segments=0)
    rnd = SizeSchedule("random", [90, 112], seed=1, segments=90)
    drawn = {rnd.size_at(0, step, 900) for step in range(900)}
    assert len(drawn) > 10 and min(drawn) >= 90 and max(drawn) <= 112


@pytest.mark.parametrize("name", ["zf5", "convnet5", "overfeat7"])
def test_lrn_left_out_changes_nothing_but_the_norm_layers(name: str) -> None:
    """``lrn=False`` drops exactly the specs' LRN layers; with BN after every conv the LRN is a constant (the
    across-channel k = 2 one divides by ~2^0.75) or the identity (within-channel), so the net computes the same
    function up to that constant and the next BN removes it."""
    kw = {"width": 0.125, "num_classes": 10, "input_size": 112, "batch_norm": True, "dropout": 0.0}
    with_lrn = build_model(name, **kw)
    without = build_model(name, **kw, lrn=False)
    names = [n for n, _ in with_lrn.features.named_children()]
    assert [n for n, _ in without.features.named_children()] == [n for n in names if not n.startswith("norm")]
    assert any(n.startswith("norm") for n in names)
    without.load_state_dict(with_lrn.state_dict())  # LRN has no parameters: the same weights fit both
    x = torch.randn(8, 3, 112, 112)
    with_lrn.train(), without.train()  # batch statistics: BN undoes a constant scale
    assert torch.allclose(with_lrn(x), without(x), rtol=1e-3, atol=1e-3)


def test_plateau_exit_is_the_first_step_below_the_threshold() -> None:
    module = SPPClassifier(model={"name": "zf5", "width": 0.125, "input_size": 64}, num_classes=10)
    threshold = PLATEAU_FRACTION * math.log(10)
    assert module.plateau_threshold == pytest.approx(threshold)
    losses = [2.3] * 20 + [threshold - 0.5] * PLATEAU_WINDOW
    steps = []
    for loss in losses:
        module._track_plateau(loss)
        steps.append(module.plateau_exit)
    # the window mean falls below the threshold once enough low losses replace the 2.3s
    first = next(i for i, e in enumerate(steps) if e is not None)
    window = losses[first - PLATEAU_WINDOW + 1 : first + 1]
    assert sum(window) / PLATEAU_WINDOW < threshold
    prev = losses[first - PLATEAU_WINDOW : first]
    assert sum(prev) / PLATEAU_WINDOW >= threshold


def test_multi_size_run_mixes_sizes_within_an_epoch_and_records_its_outputs(
    make_cfg: Callable[..., DictConfig],
) -> None:
    cfg = make_cfg(
        "experiment=table2/zf5_spp_multi",
        "+trainer.limit_train_batches=4",
        "scale.size_segments=4",
        "eval.views=[10view,center]",
        logger="csv",
    )
    results = train(cfg)
    run_dir = Path(cfg.run_dir)
    assert "plateau_exit" in results["train"]
    rows = (run_dir / "csv").rglob("metrics.csv")
    import csv

    sizes = [float(r["train/input_size"]) for f in rows for r in csv.DictReader(f.open()) if r.get("train/input_size")]
    assert sizes and cfg.scale.multi_size < sizes[0] < cfg.scale.crop  # the epoch's mean: both sizes in one epoch
    for view in ("10view", "center"):
        saved = np.load(run_dir / "predictions" / f"{view}.npz")
        scores, targets = saved["scores"].astype(np.float32), saved["targets"]
        m = results["metrics"][view]
        assert len(targets) == m["n"] and scores.shape == (m["n"], 5)
        top1 = saved["top1"]  # the float32 scores' top-1: exactly what the metric counted (float16 may tie)
        assert 100.0 * float((top1 != targets).mean()) == pytest.approx(m["top1_err"], abs=1e-3)
        assert np.array_equal(scores[np.arange(len(top1)), top1], scores.max(1))
    assert (
        json.loads((run_dir / "results.json").read_text())["train"]["plateau_exit"] == results["train"]["plateau_exit"]
    )
