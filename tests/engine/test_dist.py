"""The one rank lookup across launchers (simulated environments) and the one task runner's DDP guard."""

from __future__ import annotations

import os

import pytest
from omegaconf import OmegaConf

from sppnet_exp.engine import optimized_metric, run_task
from sppnet_exp.utils.dist import is_primary, rank_info


@pytest.mark.parametrize(
    ("env", "rank", "local", "world", "source"),
    [
        ({}, 0, 0, 1, "none"),
        ({"LOCAL_RANK": "1", "NODE_RANK": "0", "WORLD_SIZE": "2"}, 1, 1, 2, "LOCAL_RANK"),
        ({"LOCAL_RANK": "0", "NODE_RANK": "0", "WORLD_SIZE": "2"}, 0, 0, 2, "LOCAL_RANK"),
        ({"LOCAL_RANK": "1", "NODE_RANK": "1", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}, 5, 1, 8, "LOCAL_RANK"),
        ({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}, 3, 1, 4, "RANK"),
        # srun with one task per GPU: LOCAL_RANK is not set, SLURM says which task this is
        ({"SLURM_PROCID": "2", "SLURM_LOCALID": "2", "SLURM_NTASKS": "8"}, 2, 2, 8, "SLURM"),
        ({"SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NTASKS": "8"}, 0, 0, 8, "SLURM"),
        # an interactive shell or a one-task job inside an allocation is not distributed
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, 0, 0, 1, "none"),
    ],
)
def test_rank_from_each_launcher(env: dict, rank: int, local: int, world: int, source: str) -> None:
    info = rank_info(env)
    assert (info.rank, info.local_rank, info.world_size, info.source) == (rank, local, world, source)
    assert is_primary(env) == (rank == 0)


def test_bad_rank_variable_is_named() -> None:
    with pytest.raises(ValueError, match="SLURM_PROCID"):
        rank_info({"SLURM_PROCID": "x", "SLURM_NTASKS": "2"})


def test_runner_restores_the_ddp_environment_between_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job that set the launcher's variables (as rank 0 does) leaves none behind for the next job."""
    for key in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)

    def job(cfg):  # noqa: ANN001, ANN202
        os.environ.update(LOCAL_RANK="0", NODE_RANK="0", WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
        return {"metrics": {"ftfc7_bb": {"mAP": 41.5}}}

    cfg = OmegaConf.create({"task_name": "detect", "cell": "c", "run_dir": "r", "optimized_metric": "ftfc7_bb/mAP"})
    assert run_task(job, cfg) == 41.5
    assert "LOCAL_RANK" not in os.environ and "WORLD_SIZE" not in os.environ and is_primary()
    assert optimized_metric({"metrics": {}}, "10view/top1_err") is None
