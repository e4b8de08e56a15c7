"""The one task runner of ``train``, ``eval`` and ``detect`` (lightning-hydra-template's ``task_wrapper``).

Every Hydra job goes through :func:`run_task`: its inputs are checked first (:mod:`.preflight`; a job that fails
them leaves no run dir and one message, :func:`~.cli.fail`), then the task runs inside
:func:`~sppnet_exp.engine.ddp.distributed_job` (the DDP environment and process group of one multirun job
never leak into the next, so job 2 is not taken for a child rank), a crash is logged with the cell and run dir
before it propagates, and the W&B run is closed whatever happens, so the jobs of a multirun never merge.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sppnet_exp.engine.cli import fail, remove_unused_job_dir
from sppnet_exp.engine.preflight import check_inputs
from sppnet_exp.engine.tasks import Task, task_for

log = logging.getLogger(__name__)

__all__ = ["optimized_metric", "run_task"]


def optimized_metric(results: Mapping[str, Any] | None, metric: str | None) -> float | None:
    """``results["metrics"][a][b]`` for ``metric="a/b"`` (a test view or a detection row), else None."""
    if not metric or not results:
        return None
    group, name = str(metric).split("/", 1)
    value = results.get("metrics", {}).get(group, {}).get(name)
    return None if value is None else float(value)


def run_task(task: Task | str, cfg: DictConfig) -> float | None:
    """Run ``task(cfg)`` as one job; return the value of ``cfg.optimized_metric`` (for a sweeper).

    The inputs of ``cfg`` are checked first (the Hydra callback has checked them already for a local run or
    sweep; a job started elsewhere, e.g. by a cluster launcher, is checked here, where it runs). ``task`` may be
    a command (``"train"``, :data:`~.tasks.TASKS`) or a ``"module:function"`` string: the entry scripts name
    theirs so, and torch is imported only after the check."""
    command = str(cfg.task_name)
    problems = check_inputs(cfg, command)
    if problems:
        remove_unused_job_dir(OmegaConf.select(cfg, "paths.runs_root"))
        fail(command, problems)
    # torch and Lightning are imported here, once the config is known to be runnable
    from sppnet_exp.engine.ddp import distributed_job
    from sppnet_exp.engine.lifecycle import RunMismatchError
    from sppnet_exp.engine.wiring import finish_wandb

    run = task_for(task)
    try:
        with distributed_job():
            results = run(cfg)
    except RunMismatchError as e:  # a refusal, not a crash: its one line says what differs and how to force
        log.error(str(e))
        raise
    except Exception:
        log.exception(f"{cfg.task_name} cell <{cfg.get('cell')}> failed; run dir {cfg.get('run_dir')}")
        raise
    finally:
        finish_wandb()
    return optimized_metric(results, cfg.get("optimized_metric"))
