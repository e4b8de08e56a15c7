"""Run one detection cell of Tables 9, 10 or 12: ``python -m sppnet_exp.detect experiment=table9/spp_1scale``.

The entry script only: the task is :func:`sppnet_exp.detection.cells.task.detect`, run by the one task runner
(:func:`sppnet_exp.engine.run_task`: DDP environment per job, crash logging, W&B clean-up).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sppnet_exp.config import config_dir
from sppnet_exp.detection.cells.task import detect
from sppnet_exp.engine import run_task


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="detect")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point (``sppnet-detect``)."""
    return run_task(detect, cfg)


if __name__ == "__main__":
    main()
