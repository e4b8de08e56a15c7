"""Every config composes, and every group option instantiates what it names."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sppnet_exp.config import REPO_DIR, config_dir
from sppnet_exp.engine.wiring import build_trainer
from sppnet_exp.reporting.sweeps import load_sweep

CONF = Path(config_dir())
EXPERIMENTS = sorted(
    str(p.relative_to(CONF / "experiment").with_suffix(""))
    for p in CONF.glob("experiment/**/*.yaml")
    if not p.name.startswith("_")  # shared parts of a table's experiments (table6/_voc.yaml)
)


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if not p.stem.startswith("_"))


def test_every_table_cell_has_an_experiment() -> None:
    for model in ("zf5", "convnet5", "overfeat5", "overfeat7"):
        for mode in ("nospp", "spp_single", "spp_multi"):
            assert f"table2/{model}_{mode}" in EXPERIMENTS
    for cell in ("zf5_spp_single", "zf5_spp_multi", "overfeat7_spp_single", "overfeat7_spp_multi"):
        assert f"table3/{cell}" in EXPERIMENTS


DETECTION_TABLES = ("table9", "table10", "table12")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(experiment: str) -> None:
    table, cell = experiment.split("/")
    name = load_sweep(REPO_DIR / "experiments", table).command  # the table's own command
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(name, overrides=[f"experiment={experiment}"], return_hydra_config=True)
    assert cfg.table == table
    assert cfg.run_dir.endswith(f"{cfg.cell}/generated-embedded-s0-{cfg.fingerprint}")
    # resolved in place, as `--cfg job --resolve` and launchers do: every value (the recipe mappings too) stores
    resolved = cfg.copy()
    OmegaConf.resolve(resolved)
    assert resolved.run_dir == cfg.run_dir
    if name == "transfer":
        assert cfg.view in ("crop", "full", "warp") and cfg.pretrained.experiment.startswith("table2/")
        assert (CONF / "experiment" / f"{cfg.pretrained.experiment}.yaml").is_file()
        return
    assert dict(resolved.recipe_overrides) == {}
    if table in DETECTION_TABLES:
        assert cfg.detector.method in ("spp", "rcnn", "combine", "timing")
        return
    assert cfg.cell == cell
    assert cfg.model.name in cell and cfg.mode.name in cell


def test_detection_tables_name_their_cells() -> None:
    """Every cell a detection table reads is produced by one of its experiments; shared cells share run dirs."""
    from sppnet_exp.reporting.tables import load_spec

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for table in DETECTION_TABLES:
            spec = load_spec(CONF.parent / "experiments" / table / "expected.yaml")
            made = {}
            for e in (x for x in EXPERIMENTS if x.startswith(table + "/")):
                cfg = compose("detect", overrides=[f"experiment={e}"])
                made[cfg.cell] = cfg.run_dir
            assert set(spec.cells()) <= set(made), (table, set(spec.cells()) - set(made))
        t9 = compose("detect", overrides=["experiment=table9/spp_5scale"]).run_dir
        t10 = compose("detect", overrides=["experiment=table10/spp_5scale"]).run_dir
        t12 = compose("detect", overrides=["experiment=table12/net1"]).run_dir
        assert t9 == t10 == t12
        net2 = compose("detect", overrides=["experiment=table12/net2"])
        assert net2.pretrained.seed == 1 and net2.run_dir != t12


def test_table3_cells_find_table2_runs() -> None:
    """Table 3 evaluates Table 2's checkpoints: the same cell must map to the same run dir."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for cell in ("zf5_spp_single", "overfeat7_spp_multi"):
            t2 = compose("train", overrides=[f"experiment=table2/{cell}"])
            t3 = compose("eval", overrides=[f"experiment=table3/{cell}"])
            assert t2.run_dir == t3.run_dir
            assert list(t3.eval.views) == ["center", "full"]


def test_fingerprint_tracks_what_changes_results() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        base = compose("train").fingerprint
        assert compose("train", overrides=["data.num_workers=7"]).fingerprint == base
        assert compose("train", overrides=["optim.lr=0.02"]).fingerprint != base
        assert compose("train", overrides=["seed=1"]).fingerprint != base
        assert compose("train", overrides=["data.gen_seed=1"]).fingerprint != base
        assert compose("train", overrides=["data.gen_train_per_class=50"]).fingerprint != base
        assert compose("train", overrides=["mode.levels=[4,3,2,1]"]).fingerprint != base


@pytest.mark.parametrize("group", ["data", "model", "mode", "scale", "trainer", "logger", "callbacks", "debug"])
def test_group_options_compose(group: str) -> None:
    for option in _options(group):
        overrides = [f"{group}={option}"]
        if group == "data" and option != "generated":
            overrides.append("data.root=/nonexistent")
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
        if group == "debug":
            assert cfg.task_name == "debug" and not cfg.skip_finished
        else:
            assert cfg[group] is not None or group == "logger"


@pytest.mark.parametrize("trainer", ["default", "cpu", "ddp_cpu"])
def test_trainers_instantiate(trainer: str, tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"trainer={trainer}", f"paths.output_dir={tmp_path}", "trainer.accelerator=cpu"],
        )
    t = build_trainer(cfg, callbacks=[], loggers=[])
    assert t.max_epochs == cfg.scale.max_epochs
    if trainer == "ddp_cpu":
        assert type(t.strategy).__name__ == "HydraJobDDPStrategy"
        assert t.num_devices == 2


def test_callbacks_and_loggers_instantiate(tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.output_dir={tmp_path}"])
    names = {type(instantiate(node)).__name__ for node in cfg.callbacks.values()}
    assert names == {"ModelCheckpoint", "LearningRateMonitor"}
    assert cfg.logger.wandb.group == "adhoc" and cfg.logger.csv.save_dir == cfg.run_dir


def test_slurm_launcher_composes() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "trainer=ddp"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.tasks_per_node == cfg.hydra.launcher.gpus_per_node


def test_report_config_composes() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("report", overrides=["table=table3"])
        assert cfg.table == "table3" and cfg.source == "local" and cfg.runs.data is None
        # `data=` / `scale=` name the runs to show: read as runs.data / runs.scale, not as the config groups
        from sppnet_exp.report import plain_key_overrides

        argv = plain_key_overrides(["table=table9", "data=voc07", "scale=paper", "verify=true"])
        assert argv == ["table=table9", "runs.data=voc07", "runs.scale=paper", "verify=true"]
        chosen = compose("report", overrides=argv)
    assert (chosen.runs.data, chosen.runs.scale, chosen.verify) == ("voc07", "paper", True)


def test_detection_paper_scale_and_voc07_compose() -> None:
    """The paper's detection settings: s = 688 or five scales, 224 target, VOC 2007's 20 classes."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        one = compose("detect", overrides=["experiment=table9/spp_1scale", "scale=detect_paper", "data=voc07"])
        five = compose(
            "detect",
            overrides=["experiment=table9/spp_5scale", "scale=detect_paper", "scale.scales_5=[480,576,688,874,1200]"],
        )
        rcnn = compose("detect", overrides=["experiment=table9/rcnn_alexnet", "scale=detect_paper"])
    assert list(one.detector.scales) == [688] and one.detector.pooling.target_size == 224
    assert len(one.data.classes) == 20
    assert list(five.detector.scales) == [480, 576, 688, 874, 1200]
    assert rcnn.detector.padding == 16 and rcnn.detector.bbox_reg.lam == 1000.0
    assert one.scale.pretrain.data == "imagenet" and one.fingerprint != five.fingerprint


def test_gpu_trainers_default_to_bf16_and_channels_last(tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for name in ("gpu", "ddp"):
            cfg = compose("train", overrides=[f"trainer={name}"])
            assert cfg.trainer.precision == "bf16-mixed" and cfg.trainer.channels_last is True
        plain = compose("train")
        assert plain.trainer.precision == "32-true" and plain.trainer.channels_last is False
        assert plain.data.worker_output == "uint8" and plain.data.decode == "cpu" and plain.data.pin_memory == "auto"
        assert plain.data.file_list_cache == f"{plain.paths.runs_root}/file_lists"
        fp32 = compose("train", overrides=["trainer=gpu", "trainer.precision=32-true", "trainer.channels_last=false"])
        assert fp32.fingerprint == plain.fingerprint  # speed settings do not change a run's identity
        gpu = compose("train", overrides=["trainer=gpu", "trainer.accelerator=cpu", f"paths.output_dir={tmp_path}"])
    t = build_trainer(gpu, callbacks=[], loggers=[])  # channels_last is not passed to the Trainer
    assert "bf16" in str(t.precision_plugin.precision)


@pytest.mark.parametrize(
    ("experiment", "model", "mode"),
    [("table9/rcnn_alexnet", "alexnet", "nospp"), ("table9/spp_5scale", "zf5", "spp_single")],
)
def test_pretrained_overrides_add_to_the_net_never_replace_it(experiment: str, model: str, mode: str) -> None:
    """`pretrained.overrides` from the command line (another generator seed, an ImageNet root) keeps the network:
    R-CNN's AlexNet stays AlexNet (it once silently became the ZF-5 SPP net when the list was replaced)."""
    from sppnet_exp.engine.pretrained import pretrained_train_config

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("detect", overrides=[f"experiment={experiment}", "pretrained.overrides=['data.gen_seed=1']"])
        base = compose("detect", overrides=[f"experiment={experiment}"])
    train = pretrained_train_config(cfg)
    assert train.model.name == model and train.mode.name == mode and train.data.gen_seed == 1
    assert pretrained_train_config(base).data.gen_seed == 0
    assert train.run_dir != pretrained_train_config(base).run_dir
