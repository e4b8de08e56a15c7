"""The one rank lookup: which process of a distributed job this is, from the launcher's environment.

Launchers and what they set:

* Lightning's subprocess launcher (``trainer=ddp`` on one machine, :mod:`sppnet_exp.engine.ddp`): the
  children get ``LOCAL_RANK`` > 0, ``NODE_RANK``, ``WORLD_SIZE`` and (ours) ``LOCAL_WORLD_SIZE``; rank 0 sets
  the same in its own environment once it has started them
  (:func:`sppnet_exp.engine.ddp.distributed_job` restores it between multirun jobs).
* ``torchrun`` / ``torch.distributed``: ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``.
* SLURM (``hydra/launcher=slurm``, one ``srun`` task per GPU): ``SLURM_PROCID`` (global rank), ``SLURM_LOCALID``
  and ``SLURM_NTASKS``; ``LOCAL_RANK`` is *not* set. Only a step with more than one task is taken as distributed,
  so a one-task job (or an interactive shell inside an allocation) is rank 0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["RankInfo", "current_rank", "is_primary", "rank_info"]


@dataclass(frozen=True)
class RankInfo:
    """Global ``rank``, ``local_rank`` on its node, ``world_size`` and where they were read from."""

    rank: int
    local_rank: int
    world_size: int
    source: str

    @property
    def is_primary(self) -> bool:
        return self.rank == 0


def _int(env: Mapping[str, str], key: str, default: int = 0) -> int:
    value = env.get(key, "")
    try:
        return int(value) if value.strip() else default
    except ValueError as exc:
        raise ValueError(f"environment variable {key}={value!r} is not an integer") from exc


def rank_info(env: Mapping[str, str] | None = None) -> RankInfo:
    """The rank of this process (``env`` defaults to ``os.environ``); see the module docstring."""
    env = os.environ if env is None else env
    if "RANK" in env:  # torchrun / an initialised torch.distributed launcher
        return RankInfo(_int(env, "RANK"), _int(env, "LOCAL_RANK"), _int(env, "WORLD_SIZE", 1), "RANK")
    if "LOCAL_RANK" in env or "NODE_RANK" in env:  # Lightning's subprocess launcher
        local, node, world = _int(env, "LOCAL_RANK"), _int(env, "NODE_RANK"), _int(env, "WORLD_SIZE", 1)
        # Ranks are numbered node by node: rank = node * processes per node + local rank.
        per_node = max(1, _int(env, "LOCAL_WORLD_SIZE", world))
        return RankInfo(node * per_node + local, local, world, "LOCAL_RANK")
    if _int(env, "SLURM_NTASKS", 1) > 1 and "SLURM_PROCID" in env:
        return RankInfo(_int(env, "SLURM_PROCID"), _int(env, "SLURM_LOCALID"), _int(env, "SLURM_NTASKS"), "SLURM")
    return RankInfo(0, 0, 1, "none")


def is_primary(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process is global rank 0 (the one that runs everything after the sharded stages)."""
    return rank_info(env).is_primary


def current_rank() -> int:
    """This process's global rank: ``torch.distributed``'s once a process group is up, else the launcher's."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    return rank_info().rank
