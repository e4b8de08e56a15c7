"""The command line: a one-batch Hydra multirun sweep, the report, W&B offline runs, and DDP in a multirun."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, tiny_overrides

ONE_BATCH = [
    "+trainer.limit_train_batches=1",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
]


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
    env.pop("WANDB_API_KEY", None)
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-6000:]}"
    return proc


def _results(runs_root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(runs_root.glob("*/*/results.json"))]


def test_multirun_sweep_then_report(tmp_path: Path, data_dir: Path) -> None:
    cells = "table2/zf5_nospp,table2/zf5_spp_single,table2/zf5_spp_multi"
    common = [*tiny_overrides(tmp_path, data_dir), *ONE_BATCH, "logger=default"]
    _run(["-m", "sppnet_exp.train", "-m", f"experiment={cells}", *common], cwd=REPO)
    runs_root = tmp_path / "outputs" / "runs"
    results = _results(runs_root)
    assert sorted(r["cell"] for r in results) == ["zf5_nospp", "zf5_spp_multi", "zf5_spp_single"]
    for r in results:
        run_dir = Path(r["run_dir"])
        assert r["status"] == "finished" and "10view" in r["metrics"]
        assert len(list(run_dir.glob("wandb/offline-run-*"))) == 1  # one W&B run per job, written offline
        assert (run_dir / ".hydra" / "config.yaml").is_file()
    # Re-running the sweep skips every finished cell.
    again = _run(["-m", "sppnet_exp.train", "-m", f"experiment={cells}", *common], cwd=REPO)
    assert again.stderr.count("Skipping finished cell") + again.stdout.count("Skipping finished cell") == 3
    assert len(_results(runs_root)) == 3

    rep = _run(
        [
            "-m",
            "sppnet_exp.report",
            "table=table2",
            f"paths.output_dir={tmp_path}/outputs",
            f"out_dir={tmp_path}/exp_out",
            "wandb.log=false",
        ],
        cwd=REPO,
    )
    for text in ("ZF-5", "(a) no SPP", "(c) SPP multi-size", "35.99", "34.60"):
        assert text in rep.stdout
    # one-batch runs are not the table's own recipe: reported under the runs root, the out dir left alone
    assert "Not the table's own recipe" in rep.stdout
    assert (runs_root / "report" / "table2" / "results.md").is_file()
    assert (runs_root / "report" / "table2" / "results.csv").is_file()
    assert not (tmp_path / "exp_out").exists()


@pytest.mark.slow
def test_report_logs_wandb_table_offline(tmp_path: Path, data_dir: Path) -> None:
    common = [*tiny_overrides(tmp_path, data_dir), *ONE_BATCH, "logger=none"]
    _run(["-m", "sppnet_exp.train", "experiment=table2/zf5_spp_single", *common], cwd=tmp_path)
    _run(
        [
            "-m",
            "sppnet_exp.report",
            "table=table2",
            f"paths.output_dir={tmp_path}/outputs",
            f"out_dir={tmp_path}/exp_out",
        ],
        cwd=tmp_path,
    )
    assert list(tmp_path.glob("**/offline-run-*"))


def test_ddp_two_cpu_processes_inside_a_multirun(tmp_path: Path, data_dir: Path) -> None:
    """DDP (gloo, 2 CPU ranks) in a Hydra multirun: one run dir and one W&B run per cell, multi-size included."""
    cells = "table2/zf5_spp_single,table2/zf5_spp_multi"
    args = [
        "-m",
        "sppnet_exp.train",
        "-m",
        f"experiment={cells}",
        *tiny_overrides(tmp_path, data_dir),
        "trainer=ddp_cpu",
        "scale.max_epochs=2",
        "scale.size_segments=null",  # the paper's per-epoch switch: one size per epoch in the CSV log
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=2",
        "logger=default",
    ]
    _run(args, cwd=REPO)
    runs_root = tmp_path / "outputs" / "runs"
    assert sorted(p.parents[1].name for p in runs_root.glob("*/*/results.json")) == [
        "zf5_spp_multi",
        "zf5_spp_single",
    ]
    assert len([p for p in runs_root.glob("*/*") if p.is_dir()]) == 2  # no duplicated run dirs
    for r in _results(runs_root):
        run_dir = Path(r["run_dir"])
        assert r["status"] == "finished" and r["host"]["world_size"] == 2
        assert r["train"]["epochs"] == 2
        assert len(list(run_dir.glob("wandb/offline-run-*"))) == 1
        assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    multi = next(r for r in _results(runs_root) if r["cell"] == "zf5_spp_multi")
    with open(Path(multi["run_dir"]) / "csv" / "metrics.csv") as f:
        sizes = {float(row["train/input_size"]) for row in csv.DictReader(f) if row.get("train/input_size")}
    assert sizes == {64.0, 52.0}  # epoch 0 at the crop size, epoch 1 at the multi-size (both ranks switch)


@pytest.mark.slow
def test_killed_process_resumes(tmp_path: Path, data_dir: Path) -> None:
    """Kill -9 a training process after its first checkpoint; the re-run resumes from last.ckpt."""
    import signal
    import time

    args = [
        "-m",
        "sppnet_exp.train",
        "experiment=table2/zf5_spp_single",
        *tiny_overrides(tmp_path, data_dir),
        "scale.max_epochs=3",
        "data.gen_train_per_class=60",  # ~40 steps an epoch: time to kill it mid-run
        "logger=csv",
    ]
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    runs_root = tmp_path / "outputs" / "runs"
    deadline = time.time() + 300
    while time.time() < deadline and not list(runs_root.glob("*/*/checkpoints/last.ckpt")):
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [ckpt] = list(runs_root.glob("*/*/checkpoints/last.ckpt"))
    assert json.loads((ckpt.parents[1] / "results.json").read_text())["status"] == "running"
    _run(args, cwd=REPO)
    done = json.loads((ckpt.parents[1] / "results.json").read_text())
    assert done["status"] == "finished" and done["train"]["resumed_from"] == str(ckpt)


@pytest.mark.slow
def test_ddp_two_ranks_make_the_optimizer_steps_of_one_process(tmp_path: Path, data_dir: Path) -> None:
    """data.batch_size is the global batch: 2 ranks x 4 images make the 8-image steps of one process."""
    from sppnet_exp.classification.task import train
    from sppnet_exp.config import compose_config

    common = [*tiny_overrides(tmp_path, data_dir), "logger=none", "+trainer.limit_test_batches=1"]
    cfg = compose_config("train", ["experiment=table2/zf5_spp_single", *common, "trainer=cpu"])
    lr = float(cfg.optim.lr)  # the scale's rate (embedded: 0.005 at batch 32), the same for both runs
    single = train(cfg)["train"]
    assert single["world_size"] == 1 and single["optimizer_steps_per_epoch"] == 5  # 40 images / 8
    ddp_runs = tmp_path / "ddp_runs"  # the same cell identity: its own runs root, or it would be skipped
    args = ["-m", "sppnet_exp.train", "experiment=table2/zf5_spp_single", *common, "trainer=ddp_cpu"]
    _run([*args, f"paths.runs_root={ddp_runs}"], cwd=REPO)
    [ddp] = [r["train"] for r in _results(ddp_runs)]
    assert ddp["world_size"] == 2
    assert ddp["global_batch"] == single["global_batch"] == 8 and ddp["process_batch"] == 4
    assert ddp["optimizer_steps"] == single["optimizer_steps"] and ddp["lr"] == single["lr"] == lr
    assert ddp["optimizer_steps_per_epoch"] == single["optimizer_steps_per_epoch"]
