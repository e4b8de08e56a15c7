"""One-batch runs of every experiment config, skip-when-finished, resume, and the results file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from sppnet_exp.training import SizeSchedule
from sppnet_exp.training.task import train
from tests.test_configs import EXPERIMENTS

ONE_BATCH = [
    "+trainer.limit_train_batches=1",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
]


CLASSIFICATION = [e for e in EXPERIMENTS if e.split("/")[0] in ("table2", "table3")]


@pytest.mark.parametrize("experiment", CLASSIFICATION)
def test_one_batch_of_every_experiment(experiment: str, make_cfg: Callable[..., DictConfig]) -> None:
    name = "eval" if experiment.startswith("table3/") else "train"
    cfg = make_cfg(f"experiment={experiment}", *ONE_BATCH, config_name=name)
    results = train(cfg)
    assert results["status"] == "finished"
    for view in cfg.eval.views:
        m = results["metrics"][view]
        assert 0.0 <= m["top1_err"] <= 100.0 and 0.0 <= m["top5_err"] <= m["top1_err"]
    on_disk = json.loads((Path(cfg.run_dir) / "results.json").read_text())
    assert on_disk["metrics"] == results["metrics"]
    assert on_disk["seed"] == 0 and on_disk["config"]["cell"] == cfg.cell
    assert torch.__version__.startswith(on_disk["versions"]["torch"])
    assert "commit" in on_disk["git"] and on_disk["tables"] == [cfg.table]
    assert (Path(cfg.run_dir) / "checkpoints" / "last.ckpt").is_file()


def test_finished_cell_is_skipped_and_table3_adds_views(make_cfg: Callable[..., DictConfig]) -> None:
    cfg = make_cfg("experiment=table2/zf5_spp_single", *ONE_BATCH)
    first = train(cfg)
    ckpt = Path(cfg.run_dir) / "checkpoints" / "last.ckpt"
    stamp = ckpt.stat().st_mtime_ns
    again = train(cfg)
    assert again["metrics"] == first["metrics"] and ckpt.stat().st_mtime_ns == stamp  # nothing retrained

    t3 = make_cfg("experiment=table3/zf5_spp_single", *ONE_BATCH, config_name="eval")
    assert t3.run_dir == cfg.run_dir
    both = train(t3)
    assert ckpt.stat().st_mtime_ns == stamp  # evaluated the existing checkpoint, no training
    assert set(both["metrics"]) == {"10view", "center", "full"}
    assert both["metrics"]["10view"] == first["metrics"]["10view"]
    assert both["tables"] == ["table2", "table3"]


def test_killed_run_resumes_from_last_checkpoint(make_cfg: Callable[..., DictConfig]) -> None:
    """A run whose results.json still says `running` resumes from last.ckpt instead of starting over."""
    cfg1 = make_cfg("experiment=table2/zf5_spp_multi", "+trainer.limit_train_batches=2", "scale.max_epochs=1")
    out1 = train(cfg1)
    steps1 = out1["train"]["global_step"]
    # Simulate a kill after epoch 1 of a 2-epoch run: same identity, status left at `running`.
    cfg2 = make_cfg("experiment=table2/zf5_spp_multi", "+trainer.limit_train_batches=2", "trainer.max_epochs=2")
    assert cfg2.run_dir == cfg1.run_dir
    res = Path(cfg1.run_dir) / "results.json"
    res.write_text(json.dumps({**json.loads(res.read_text()), "status": "running"}))
    out2 = train(cfg2)
    assert out2["train"]["resumed_from"].endswith("last.ckpt")
    assert out2["train"]["global_step"] == 2 * steps1  # one more epoch, not two
    assert out2["train"]["epochs"] == 2


def test_size_schedules() -> None:
    assert [SizeSchedule("alternate", [224, 180]).size_for_epoch(e) for e in range(4)] == [224, 180, 224, 180]
    assert SizeSchedule("fixed", [224]).size_for_epoch(7) == 224
    rnd = SizeSchedule("random", [180, 224], seed=3)
    drawn = [rnd.size_for_epoch(e) for e in range(50)]
    assert all(180 <= s <= 224 for s in drawn) and len(set(drawn)) > 10
    assert drawn == [
        SizeSchedule("random", [180, 224], seed=3).size_for_epoch(e) for e in range(50)
    ]  # same on all ranks
    with pytest.raises(ValueError, match="schedule"):
        SizeSchedule("cyclic", [224])
