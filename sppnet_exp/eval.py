"""Test a cell's checkpoint on more views (Table 3): ``python -m sppnet_exp.eval experiment=table3/zf5_spp_single``.

The cell's run dir is found from its config exactly as training computes it, so Table 2's sweep provides
the checkpoints; a cell that was never trained (or was killed) is trained (or resumed) first. Inputs are
checked first (:mod:`sppnet_exp.engine.cli`); torch is imported only after.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sppnet_exp.config import config_dir
from sppnet_exp.engine import run_task
from sppnet_exp.engine.cli import run_entry


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="eval")
def hydra_main(cfg: DictConfig) -> float | None:
    """The Hydra app: one job per cell."""
    return run_task("eval", cfg)  # imported once the inputs are checked


def main() -> None:
    """Console entry point (``sppnet-eval``): the ``experiment=`` names checked, then the Hydra app."""
    run_entry("eval", hydra_main)


if __name__ == "__main__":
    main()
