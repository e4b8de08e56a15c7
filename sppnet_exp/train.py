"""Train one table cell and test it: ``python -m sppnet_exp.train experiment=table2/zf5_spp_multi``.

The entry script only: the task is :func:`sppnet_exp.training.task.train`, run by the one task runner
(:func:`sppnet_exp.engine.run_task`: DDP environment per job, crash logging, W&B clean-up).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sppnet_exp.config import config_dir
from sppnet_exp.engine import run_task
from sppnet_exp.training.task import train


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point (``sppnet-train``)."""
    return run_task(train, cfg)


if __name__ == "__main__":
    main()
