"""Train one table cell and test it: ``python -m sppnet_exp.train experiment=table2/zf5_spp_multi``.

The entry script only: the task is :func:`sppnet_exp.classification.task.train`, run by the one task runner
(:func:`sppnet_exp.engine.run_task`: DDP environment per job, crash logging, W&B clean-up). Its inputs are
checked before anything is trained (:mod:`sppnet_exp.engine.cli`); torch is imported only then, so ``--help``
and a config error come back in about a second.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sppnet_exp.config import config_dir
from sppnet_exp.engine import run_task
from sppnet_exp.engine.cli import run_entry


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def hydra_main(cfg: DictConfig) -> float | None:
    """The Hydra app: one job per cell."""
    return run_task("train", cfg)  # imported once the inputs are checked


def main() -> None:
    """Console entry point (``sppnet-train``): the ``experiment=`` names checked, then the Hydra app."""
    run_entry("train", hydra_main)


if __name__ == "__main__":
    main()
