"""One-batch runs of every experiment config, skip-when-finished, resume, and the results file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import DictConfig

from sppnet_exp.classification import SizeSchedule
from sppnet_exp.classification.task import train
from tests.test_configs import EXPERIMENTS

ONE_BATCH = [
    "+trainer.limit_train_batches=1",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
]


CLASSIFICATION = [e for e in EXPERIMENTS if e.split("/")[0] in ("table2", "table3", "table4")]


@pytest.mark.parametrize("experiment", CLASSIFICATION)
def test_one_batch_of_every_experiment(experiment: str, make_cfg: Callable[..., DictConfig]) -> None:
    name = "eval" if experiment.startswith(("table3/", "table4/")) else "train"
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


class KillAfterFirstEpoch(L.Callback):
    """Stands for a kill: raises when the second epoch starts (epoch 1's last.ckpt is on disk by then)."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 1:
            raise RuntimeError("killed")


def test_map_views_are_tested_again_under_other_map_settings(make_cfg: Callable[..., DictConfig]) -> None:
    """Table 4's views pooled from feature maps keep the run dir of the checkpoint (a test setting), so their results
    record the map settings, and other settings test them again (the crop views are kept)."""
    cfg = make_cfg("experiment=table4/overfeat7_spp_multi", *ONE_BATCH, config_name="eval")
    first = train(cfg)
    assert first["map_views"]["mapping"] == "receptive_field" and first["map_views"]["scales"][0] == cfg.data.crop
    assert train(cfg)["metrics"] == first["metrics"]  # finished with these settings: skipped
    other = make_cfg("experiment=table4/overfeat7_spp_multi", "eval.map.mapping=paper", *ONE_BATCH, config_name="eval")
    assert other.run_dir == cfg.run_dir
    again = train(other)
    assert again["map_views"]["mapping"] == "paper"
    assert again["metrics"]["10view"] == first["metrics"]["10view"]
    assert set(again["metrics"]) == {"10view", "10view_maps", "multiview", "multiview_full"}


def test_killed_run_resumes_from_last_checkpoint(make_cfg: Callable[..., DictConfig]) -> None:
    """A run whose results.json still says `running` resumes from last.ckpt instead of starting over.

    The killed run is the same 2-epoch run as its resume (epochs are part of a run's identity: a 1-epoch run
    resumed with trainer.max_epochs=2 would be another run, in another run dir); the kill comes from a callback,
    which is not part of the identity."""
    args = ["experiment=table2/zf5_spp_multi", "+trainer.limit_train_batches=2", "scale.max_epochs=2"]
    kill = "+callbacks.kill._target_=tests.classification.test_train.KillAfterFirstEpoch"
    cfg1 = make_cfg(*args, kill, logger="csv")
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg1)
    assert json.loads((Path(cfg1.run_dir) / "results.json").read_text())["status"] == "running"
    cfg2 = make_cfg(*args, logger="csv")
    assert cfg2.run_dir == cfg1.run_dir
    out2 = train(cfg2)
    assert out2["train"]["resumed_from"].endswith("last.ckpt")
    assert out2["train"]["global_step"] == 4 and out2["train"]["epochs"] == 2  # one more epoch of 2 steps
    logs = Path(cfg1.run_dir) / "csv"
    assert (logs / "metrics.csv").is_file() and (logs / "version_0" / "metrics.csv").is_file()  # both logs kept


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


def test_global_batch_is_split_over_processes() -> None:
    from sppnet_exp.data.base import per_process_batch

    assert per_process_batch(128, 1) == 128 and per_process_batch(128, 8) == 16
    with pytest.raises(ValueError, match=r"batch_size=128 is the global batch.*divisible by the world size 3"):
        per_process_batch(128, 3)


def test_loader_takes_its_share_of_the_global_batch(make_cfg: Callable[..., DictConfig]) -> None:
    from sppnet_exp.engine.wiring import build_datamodule

    dm = build_datamodule(make_cfg())
    dm.prepare_data()
    dm.setup()
    assert dm.batch_size == 8 and dm.train_dataloader().batch_size == 8
    dm._world = lambda: (2, 1)  # what a 2-process trainer reports to its rank 1
    assert dm.process_batch_size == 4 and dm.train_dataloader().batch_size == 4
    dm._world = lambda: (3, 0)
    with pytest.raises(ValueError, match="divisible by the world size 3"):
        dm.train_dataloader()


def test_results_record_batch_world_steps_and_the_cached_file_list(make_cfg: Callable[..., DictConfig]) -> None:
    limits = ["+trainer.limit_train_batches=2", "+trainer.limit_test_batches=1"]
    cfg = make_cfg("experiment=table2/zf5_spp_single", *limits)
    info = train(cfg)["train"]
    assert info["global_batch"] == 8 and info["world_size"] == 1 and info["process_batch"] == 8
    assert info["optimizer_steps"] == info["global_step"] == 2 == info["optimizer_steps_per_epoch"]
    assert info["lr"] == cfg.scale.lr and info["file_list"] == "scan"
    [cache] = list((Path(cfg.paths.runs_root) / "file_lists").glob("imagenet-*.json.gz"))  # beside the runs
    other = make_cfg("experiment=table2/zf5_nospp", "+trainer.limit_train_batches=1", "+trainer.limit_test_batches=1")
    assert train(other)["train"]["file_list"] == "cache"  # another cell reuses the listing


def test_bf16_channels_last_gpu_trainer_config_runs_one_cpu_batch(make_cfg: Callable[..., DictConfig]) -> None:
    """`trainer=gpu` composes to bf16-mixed + channels-last; Lightning runs bf16 autocast on the CPU too."""
    cfg = make_cfg("experiment=table2/zf5_spp_multi", "trainer=gpu", "trainer.accelerator=cpu", *ONE_BATCH)
    assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.channels_last is True
    results = train(cfg)
    assert results["status"] == "finished" and results["config"]["trainer"]["precision"] == "bf16-mixed"
    m = results["metrics"]["10view"]
    assert 0.0 <= m["top1_err"] <= 100.0
    from sppnet_exp.classification.classifier import SPPClassifier

    module = SPPClassifier.load_from_checkpoint(Path(cfg.run_dir) / "checkpoints" / "last.ckpt", channels_last=True)
    module.setup("test")
    conv1 = module.net.features.conv1.weight
    assert conv1.is_contiguous(memory_format=torch.channels_last) and conv1.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = torch.randn(2, 3, 64, 64)
        assert module(x).dtype == torch.bfloat16  # convs and fcs in bf16; LRN inside stays float32
    assert "channels_last" not in module.hparams  # a speed setting, not part of the model


def test_test_views_of_many_images_go_through_one_forward(make_cfg: Callable[..., DictConfig]) -> None:
    """10-view and full-image testing: one network call per loader batch, holding the views of all its images."""
    import lightning as L

    from sppnet_exp.classification.classifier import SPPClassifier
    from sppnet_exp.engine.wiring import build_datamodule, model_kwargs

    cfg = make_cfg("eval.views=[10view,full]", "scale.eval_batch_size=4")
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup()
    module = SPPClassifier(model_kwargs(cfg), dm.num_classes, eval_views=["10view", "full"])
    calls: list[int] = []
    module.net.register_forward_hook(lambda m, args, out: calls.append(int(args[0].shape[0])))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(module, datamodule=dm, verbose=False)
    n = len(dm.eval_samples)  # 15 images
    loaders = dm.test_dataloader()
    assert len(calls) == len(loaders[0]) + len(loaders[1])  # one forward per batch, not per image or view
    assert calls[: len(loaders[0])] == [10 * min(4, n - 4 * i) for i in range(len(loaders[0]))]
    assert sum(calls[len(loaders[0]) :]) == n and max(calls[len(loaders[0]) :]) > 1  # full: same-size images


def test_wandb_mode_disabled_builds_no_wandb_logger_and_writes_no_wandb_dir(
    make_cfg: Callable[..., DictConfig], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``WANDB_MODE=disabled`` with the default logger group (csv + wandb): no WandbLogger, no ``wandb`` folder."""
    from lightning.pytorch.loggers import CSVLogger

    from sppnet_exp.engine.wiring import build_loggers

    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = make_cfg("experiment=table2/zf5_spp_single", *ONE_BATCH, logger="default")
    assert "wandb" in cfg.logger  # the group still asks for it
    with caplog.at_level("INFO", logger="sppnet_exp.engine.wiring"):
        assert [type(lg) for lg in build_loggers(cfg)] == [CSVLogger]
    assert sum("W&B is disabled by WANDB_MODE" in r.getMessage() for r in caplog.records) == 1
    assert train(cfg)["status"] == "finished"
    run_dir = Path(cfg.run_dir)
    assert (run_dir / "csv").is_dir() and not (run_dir / "wandb").exists()
    assert not list(Path(cfg.paths.output_dir).rglob("wandb"))
