"""How the entry scripts fail fast: once, in a few lines, before anything heavy and before a run dir exists.

* :func:`run_entry` wraps each Hydra main: the ``experiment=`` arguments are checked against ``conf/experiment``
  (:mod:`.experiments`) before Hydra composes anything;
* :class:`PreflightCallback` (``hydra.callbacks.preflight`` in ``conf/hydra/default.yaml``) checks every input of
  the composed config (:mod:`.preflight`) in ``on_run_start`` — before Hydra creates the run dir — and, for a
  multirun, of every job of the sweep in ``on_multirun_start``, before the sweep dir is created;
* :func:`fail` prints the message (:func:`~.preflight.format_problems`) once on stderr and exits with code 2;
  ``HYDRA_FULL_ERROR=1`` adds the call stack above it. Hydra turns a callback's exception into a warning and an
  error of a task into a traceback, so a failed check leaves through ``SystemExit``.

Nothing here imports torch or Lightning: ``--help`` and these errors come back in about a second.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from sppnet_exp.engine.experiments import argv_problems
from sppnet_exp.engine.preflight import PreflightError, Problem, check_inputs, format_problems

__all__ = ["PreflightCallback", "fail", "remove_unused_job_dir", "run_entry"]

log = logging.getLogger(__name__)

_BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
_BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def fail(command: str, problems: Sequence[Problem]) -> NoReturn:
    """Print the problems once (stderr) and exit with code 2; with ``HYDRA_FULL_ERROR=1`` the call stack comes
    above the message, as the traceback of a :class:`~.preflight.PreflightError` (the message still once)."""
    message = format_problems(command, problems, sys.argv[1:])
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        stack = "".join(traceback.format_stack()[:-1])
        message = f"Traceback (most recent call last):\n{stack}{PreflightError.__module__}.PreflightError: {message}"
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    sys.exit(2)


def run_entry(command: str, hydra_main: Callable[[], Any], argv: Sequence[str] | None = None) -> None:
    """Check the command line's ``experiment=`` names, then run the Hydra main (``--help``, ``-m`` and all)."""
    problems = argv_problems(command, sys.argv[1:] if argv is None else argv)
    if problems:
        fail(command, problems)
    hydra_main()


def _sweep_jobs(config: DictConfig) -> list[list[str]] | None:
    """The overrides of every job of a basic-sweeper multirun (as Hydra's ``BasicSweeper`` splits them)."""
    if str(config.hydra.sweeper.get("_target_")) != _BASIC_SWEEPER:
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    args = params + [str(o) for o in config.hydra.overrides.task]
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    batches = BasicSweeper.split_arguments(parser.parse_overrides(args), None)
    return [list(job) for batch in batches for job in batch]


class PreflightCallback(Callback):
    """Run :func:`~.preflight.check_inputs` on the composed config before Hydra creates any folder."""

    def on_run_start(self, config: DictConfig, config_name: str | None = None, **kwargs: Any) -> None:
        command = str(config_name or config.get("task_name"))
        problems = check_inputs(config, command)
        if problems:
            fail(command, problems)

    def on_multirun_start(self, config: DictConfig, config_name: str | None = None, **kwargs: Any) -> None:
        jobs = _sweep_jobs(config)
        if jobs is None:  # another sweeper: each job is checked by the task runner
            return
        from hydra.core.global_hydra import GlobalHydra

        command = str(config_name or config.get("task_name"))
        loader = GlobalHydra.instance().config_loader()
        found: dict[Problem, list[int]] = {}
        # the basic launcher runs the jobs one after another, so job i may read what jobs < i write; a parallel
        # launcher (submitit, joblib) gives no order: each job's inputs must be there before the sweep
        in_order = str(config.hydra.launcher.get("_target_")) == _BASIC_LAUNCHER
        earlier: list[Path] = []
        for i, overrides in enumerate(jobs):
            job = loader.load_sweep_config(config, overrides)
            for problem in check_inputs(job, command, earlier):
                found.setdefault(problem, []).append(i)
            run_dir = OmegaConf.select(job, "run_dir", throw_on_resolution_failure=False)
            earlier += [Path(str(run_dir))] if run_dir and in_order else []
        if found:
            n = len(jobs)
            fail(command, [_in_jobs(p, idx, n) for p, idx in found.items()])


def _in_jobs(problem: Problem, jobs: list[int], n: int) -> Problem:
    """The problem of some jobs of a sweep of ``n``: its key says which (``#0, #2 of 3 jobs``; all: unchanged)."""
    if len(jobs) == n:
        return problem
    which = ", ".join(f"#{j}" for j in jobs)
    return Problem(f"{problem.key} (job {which} of {n})", problem.problem, problem.expected, problem.fix)


def remove_unused_job_dir(stop_at: str | os.PathLike[str] | None) -> None:
    """Remove the job dir Hydra made for a job that failed its pre-flight, when it holds only what Hydra wrote
    (``.hydra/`` and ``*.log``), and its parents left empty below ``stop_at`` (the runs root)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    out = Path(HydraConfig.get().runtime.output_dir).resolve()
    hydra_subdir = HydraConfig.get().output_subdir
    entries = list(out.iterdir()) if out.is_dir() else []
    if any(not (e.name == hydra_subdir or (e.is_file() and e.suffix == ".log")) for e in entries):
        return  # a run was here before: leave it
    shutil.rmtree(out, ignore_errors=True)
    stop = Path(stop_at).resolve() if stop_at is not None else None
    parent = out.parent
    while stop is not None and parent != stop and stop in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent
