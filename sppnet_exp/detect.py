"""Run one detection cell of Tables 9, 10 or 12: ``python -m sppnet_exp.detect experiment=table9/spp_1scale``.

The entry script only: the task is :func:`sppnet_exp.detection.cells.task.detect`, run by the one task runner
(:func:`sppnet_exp.engine.run_task`: DDP environment per job, crash logging, W&B clean-up). Every input (data
root, proposals, the pretrained net's checkpoint or data) is checked before anything is generated or trained
(:mod:`sppnet_exp.engine.cli`); torch is imported only after.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sppnet_exp.config import config_dir
from sppnet_exp.engine import run_task
from sppnet_exp.engine.cli import run_entry


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="detect")
def hydra_main(cfg: DictConfig) -> float | None:
    """The Hydra app: one job per cell."""
    return run_task("detect", cfg)  # imported once the inputs are checked


def main() -> None:
    """Console entry point (``sppnet-detect``): the ``experiment=`` names checked, then the Hydra app."""
    run_entry("detect", hydra_main)


if __name__ == "__main__":
    main()
