"""DDP that works inside a Hydra multirun: each job's extra ranks re-run *that job*, not the whole sweep.

Lightning's script launcher starts ranks 1..N-1 by re-running ``sys.argv``. Inside a Hydra multirun that
command is the whole sweep (``-m experiment=a,b,c``), so every rank would start every job — the known
Lightning+Hydra failure (duplicated run dirs, hangs). Here the children get the current job's own overrides
(``HydraConfig.get().overrides.task``), its output dir as ``hydra.run.dir`` and the checkpoint rank 0
resumes from, so each cell has exactly one run dir and one W&B run (rank 0's).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from lightning.fabric.strategies.launchers.subprocess_script import _launch_process_observer
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher


def hydra_job_command(local_rank: int, resume_from: str | None = None) -> tuple[list[str], str | None]:
    """Return the command (and cwd) that re-runs the current Hydra job as DDP rank ``local_rank``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    import __main__

    hc = HydraConfig.get()
    module = __main__.__spec__.name if __main__.__spec__ is not None else None
    command = [sys.executable, "-m", module] if module else [sys.executable, os.path.abspath(sys.argv[0])]
    overrides = [o for o in hc.overrides.task if not o.startswith(("resume_from=", "+resume_from="))]
    command += overrides
    command += [
        f"hydra.run.dir={hc.runtime.output_dir}",
        f"hydra.job.name={hc.job.name}_rank{local_rank}",
        "hydra.output_subdir=null",
        "hydra/hydra_logging=none",
        f"hydra.job_logging.handlers.file.filename={hc.runtime.output_dir}/{hc.job.name}_rank{local_rank}.log",
        f"resume_from={resume_from or 'null'}",
    ]
    return command, get_original_cwd()


class HydraJobDDPStrategy(DDPStrategy):
    """``DDPStrategy`` whose extra ranks re-run only the current Hydra job (see module docstring)."""

    strategy_name = "ddp_hydra_job"

    def __init__(self, *args, resume_from: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.resume_from = resume_from

    def _configure_launcher(self) -> None:
        assert self.cluster_environment is not None
        self._launcher = _HydraJobLauncher(
            self.cluster_environment, self.num_processes, self.num_nodes, resume_from=self.resume_from
        )


class _HydraJobLauncher(_SubprocessScriptLauncher):
    def __init__(self, *args, resume_from: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.resume_from = resume_from

    def launch(self, function, *args, trainer=None, **kwargs):  # noqa: ANN001, ANN201
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():  # not under Hydra: Lightning's own launcher is right
            return super().launch(function, *args, trainer=trainer, **kwargs)
        if not self.cluster_environment.creates_processes_externally:
            self._call_hydra_children()
            _launch_process_observer(self.procs)
        return function(*args, **kwargs)

    def _call_hydra_children(self) -> None:
        self._check_can_spawn_children()
        env = self.cluster_environment
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        os.environ["NODE_RANK"] = str(env.node_rank())
        os.environ["LOCAL_RANK"] = str(env.local_rank())
        os.environ["WORLD_SIZE"] = f"{self.num_processes * self.num_nodes}"
        os.environ["LOCAL_WORLD_SIZE"] = str(self.num_processes)
        for local_rank in range(1, self.num_processes):
            child_env = os.environ.copy()
            child_env["LOCAL_RANK"] = str(local_rank)
            command, cwd = hydra_job_command(local_rank, self.resume_from)
            self.procs.append(subprocess.Popen(command, env=child_env, cwd=cwd))


DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")


@contextmanager
def distributed_job() -> Iterator[None]:
    """Run one multirun job: afterwards destroy its process group and restore the DDP environment variables.

    The launcher sets ``LOCAL_RANK`` etc. in rank 0's own environment; left there, the next job of the sweep
    would take itself for a child rank and never launch its own children.
    """
    saved = {k: os.environ.get(k) for k in DDP_ENV}
    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
