"""Run identity: what enters a fingerprint, the refusal to reuse a run dir made with other settings, forced re-runs
that keep the earlier log, and the report's one-recipe rule (issue: a 2-batch run stood in for the real cell)."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from sppnet_exp.classification.task import train
from sppnet_exp.config import config_dir, fingerprint
from sppnet_exp.engine.lifecycle import RunMismatchError
from sppnet_exp.engine.results import iter_results
from sppnet_exp.utils.identity import recipe_overrides_of, setting_differences

CELL = "experiment=table2/zf5_spp_single"
SHORT = ["trainer.max_epochs=1", "+trainer.limit_train_batches=2"]  # the user's 1-epoch, 2-batch run


def _old_fingerprint(cfg: DictConfig) -> str:
    """The fingerprint before trainer and loader settings counted (conf/train.yaml at 17884c4)."""
    d = cfg.data
    parts = (d.get("gen_classes"), d.get("gen_train_per_class"), d.get("gen_val_per_class"), d.get("gen_seed"))
    return fingerprint(cfg.model, cfg.mode, cfg.scale, cfg.optim, d.name, d.root, *parts, cfg.seed)


def test_default_runs_keep_their_run_dirs_and_result_settings_count() -> None:
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        for overrides in ([CELL], [CELL, "seed=1"], ["experiment=table2/overfeat7_nospp"], [CELL, "trainer=cpu"]):
            cfg = compose("train", overrides=overrides)
            assert dict(cfg.recipe_overrides) == {} and cfg.fingerprint == _old_fingerprint(cfg), overrides
        base = compose("train", overrides=[CELL]).fingerprint
        for neutral in ("trainer=ddp_cpu", "data.num_workers=3", "trainer.enable_progress_bar=false", "logger=csv"):
            assert compose("train", overrides=[CELL, neutral]).fingerprint == base, neutral
        assert compose("train", overrides=[CELL, "trainer.max_epochs=9"]).fingerprint == base  # the scale's 9
        short = compose("train", overrides=[CELL, *SHORT])
        assert dict(short.recipe_overrides) == {"trainer.limit_train_batches": 2, "trainer.max_epochs": 1}
        assert short.fingerprint != base and short.run_dir != compose("train", overrides=[CELL]).run_dir
        for changing in (
            "+trainer.limit_train_batches=1.0001",
            "+trainer.limit_val_batches=2",
            "trainer.precision=bf16-mixed",
            "+trainer.accumulate_grad_batches=2",
            "+trainer.gradient_clip_val=1.0",
            "data.batch_size=16",
            "data.flip=false",
            "data.color=0",
            "matmul_precision=medium",
            "debug=limit",
        ):
            assert compose("train", overrides=[CELL, changing]).fingerprint != base, changing
        # a value taken from the scale is the recipe's own: a smaller scale moves the run through the scale hash
        assert dict(compose("train", overrides=[CELL, "scale.max_epochs=3"]).recipe_overrides) == {}
        # detection cells: unchanged by default, the conv5 precision counts
        det = compose("detect", overrides=["experiment=table9/spp_1scale"])
        d = det.data
        old = fingerprint(
            det.detector, det.scale, d.name, d.root, d.gen, d.classes, d.max_images, d.train_split, d.test_split,
            det.pretrained, det.proposals, det.svm, det.test, det.rows, det.seed, det.finetune_precision,
        )  # fmt: skip
        assert det.fingerprint == old
        gpu = compose("detect", overrides=["experiment=table9/spp_1scale", "trainer=gpu"])
        assert dict(gpu.recipe_overrides) == {"trainer.precision": "bf16-mixed"} and gpu.fingerprint != old


def test_setting_differences_of_recorded_and_requested_configs() -> None:
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        requested = compose("train", overrides=[CELL])
        short = OmegaConf.to_container(compose("train", overrides=[CELL, *SHORT]), resolve=True)
    assert isinstance(short, dict)
    diffs = setting_differences(short, requested)
    assert diffs == {"trainer.limit_train_batches": (2, None), "trainer.max_epochs": (1, 9)}
    assert recipe_overrides_of(short) == {"trainer.limit_train_batches": 2, "trainer.max_epochs": 1}
    legacy = {k: v for k, v in short.items() if k != "recipe_overrides"}  # a results.json from before the list
    assert recipe_overrides_of(legacy) == recipe_overrides_of(short)
    resolved = OmegaConf.to_container(requested, resolve=True)
    assert isinstance(resolved, dict)
    assert setting_differences(resolved, requested) == {}
    older = json.loads(json.dumps(resolved))
    del older["trainer"]["precision"], older["matmul_precision"]  # keys a config of an older commit lacks
    assert setting_differences(older, requested) == {}  # missing = the default


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_a_short_run_never_stands_in_for_the_default_cell(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    """(a) the 1-epoch 2-batch run has its own dir and the default cell trains; (b) the report uses the default
    run only, and a report of the short run alone goes under the runs root, never to the experiments dir."""
    short = make_cfg(CELL, "scale.max_epochs=2", *SHORT)
    default = make_cfg(CELL, "scale.max_epochs=2")  # the tiny scale's default trainer settings
    assert short.run_dir != default.run_dir
    first = train(short)
    assert first["train"]["epochs"] == 1 and first["train"]["global_step"] == 2
    second = train(default)
    assert second["train"]["resumed_from"] is None  # trained, not skipped, not resumed from the short run
    assert second["train"]["epochs"] == 2 and second["train"]["global_step"] == 2 * 5  # 40 images / batch 8
    on_disk = json.loads((Path(default.run_dir) / "results.json").read_text())
    assert on_disk["config"]["trainer"]["max_epochs"] == 2 and on_disk["config"]["recipe_overrides"] == {}

    from sppnet_exp.report import report

    runs_root = Path(default.paths.runs_root)
    out_dir = tmp_path / "report_out"

    def report_cfg(root: Path) -> DictConfig:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return compose(
                "report",
                overrides=[
                    "table=table2",
                    f"paths.output_dir={tmp_path}/outputs",
                    f"paths.runs_root={root}",
                    f"out_dir={out_dir}",
                    "wandb.log=false",
                ],
            )

    assert report(report_cfg(runs_root))
    md = (out_dir / "table2" / "results.md").read_text()
    rows = {(r["row"], r["column"], r["metric"]): r for r in _csv_rows(out_dir / "table2" / "results.csv")}
    ours = rows[("spp_single", "zf5", "top1_err")]
    assert float(ours["ours"]) == second["metrics"]["10view"]["top1_err"] and ours["n"] == "1"  # not averaged
    assert "the table's own recipe" in md and "Not the table's own recipe" not in md
    assert "left out (not averaged): 1 run(s) with trainer.limit_train_batches=2, trainer.max_epochs=1" in md
    assert "What the paper finds" in md and "What these runs show" in md
    assert not (runs_root / "report").exists()

    # A runs root holding only the short run: reported under <runs_root>/report/, the out dir left alone.
    only_short = tmp_path / "short_root"
    shutil.copytree(Path(short.run_dir), only_short / Path(short.run_dir).relative_to(runs_root))
    (out_dir / "table2" / "results.md").write_text("earlier report")
    assert report(report_cfg(only_short))
    assert (out_dir / "table2" / "results.md").read_text() == "earlier report"
    other = (only_short / "report" / "table2" / "results.md").read_text()
    assert "**Not the table's own recipe**: these runs were made with trainer.limit_train_batches=2" in other
    assert f"written to {only_short / 'report' / 'table2'}" in other


def test_run_dir_made_with_other_settings_is_refused_and_a_forced_rerun_keeps_the_log(
    make_cfg: Callable[..., DictConfig],
) -> None:
    """A run dir whose results.json records other settings (written before they counted: simulated by moving a
    short run into the requested run's dir) is never reused; retrain=true trains again and (c) keeps the earlier
    CSV log, as do a resume and a re-test."""
    requested = ["scale.max_epochs=2", "+trainer.limit_train_batches=2", "+trainer.limit_test_batches=1"]
    short = make_cfg(CELL, *requested, "trainer.max_epochs=1", logger="csv")
    cfg = make_cfg(CELL, *requested, logger="csv")
    train(short)
    run_dir = Path(cfg.run_dir)
    shutil.move(short.run_dir, run_dir)
    old_log = _csv_rows(run_dir / "csv" / "metrics.csv")
    assert any(r.get("train/loss_epoch") or r.get("train/loss") for r in old_log)  # training rows

    with pytest.raises(RunMismatchError) as refused:
        train(cfg)
    message = str(refused.value)
    assert "\n" not in message and "trainer.max_epochs 1 → 2" in message and "retrain=true" in message
    with pytest.raises(RunMismatchError):
        train(make_cfg(CELL, *requested, "skip_finished=false", logger="csv"))  # re-testing is no way round

    out = train(make_cfg(CELL, *requested, "retrain=true", logger="csv"))
    assert out["train"]["epochs"] == 2 and out["train"]["resumed_from"] is None
    assert _csv_rows(run_dir / "csv" / "metrics.csv") == old_log  # the earlier log, untouched
    new_log = _csv_rows(run_dir / "csv" / "version_0" / "metrics.csv")
    assert {r["epoch"] for r in new_log if r.get("epoch")} >= {"0", "1"}
    [earlier] = (run_dir / "superseded").iterdir()
    assert json.loads((earlier / "results.json").read_text())["config"]["trainer"]["max_epochs"] == 1
    assert (earlier / "checkpoints" / "last.ckpt").is_file()
    assert [d["_path"] for d in iter_results(run_dir.parent)] == [str(run_dir / "results.json")]

    retest = train(make_cfg(CELL, *requested, "skip_finished=false", logger="csv"))  # now the same settings
    assert retest["train"] == out["train"]
    assert _csv_rows(run_dir / "csv" / "version_0" / "metrics.csv") == new_log  # the re-test logs to version_1
    assert (run_dir / "csv" / "version_1" / "metrics.csv").is_file()


def test_detection_run_dir_made_with_another_conv5_precision_is_refused(tmp_path: Path) -> None:
    from sppnet_exp.engine.lifecycle import check_recipe_overrides as _check_reusable

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("detect", overrides=["experiment=table9/spp_1scale"])
    recorded = {"task_name": "detect", "trainer": {"precision": "bf16-mixed"}}  # a legacy results.json config
    with pytest.raises(RunMismatchError, match=r"trainer\.precision \"bf16-mixed\" → null.*retrain=true"):
        _check_reusable(cfg, {"status": "finished", "config": recorded}, tmp_path)
    _check_reusable(cfg, {"status": "finished", "config": {**recorded, "trainer": {"precision": "32-true"}}}, tmp_path)
