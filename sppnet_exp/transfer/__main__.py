"""Run one transfer cell of Table 7 for one split: ``python -m sppnet_exp.transfer experiment=table7/b_spp_crop``.

The entry script only: the task is :func:`sppnet_exp.transfer.task.transfer`, run by the one task runner
(:func:`sppnet_exp.engine.run_task`: crash logging, W&B clean-up). The inputs (data root, the pretrained net's
checkpoint or data) are checked before anything is generated or trained (:mod:`sppnet_exp.engine.cli`).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sppnet_exp.config import config_dir
from sppnet_exp.engine import run_task
from sppnet_exp.engine.cli import run_entry


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="transfer")
def hydra_main(cfg: DictConfig) -> float | None:
    """The Hydra app: one job per (column, split)."""
    return run_task("transfer", cfg)


def main() -> None:
    """Console entry point (``sppnet-transfer``): the ``experiment=`` names checked, then the Hydra app."""
    run_entry("transfer", hydra_main)


if __name__ == "__main__":
    main()
