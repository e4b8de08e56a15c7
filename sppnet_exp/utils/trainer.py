"""The one quiet Lightning Trainer: no logger, checkpoints, progress bar or model summary unless asked for.

Library stages (conv5 extraction, fine-tuning, the benchmarks) run a Trainer inside a larger task whose own
loggers and run dir are the record; their Trainers stay silent and write nothing unless the caller says so.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L

__all__ = ["QUIET", "quiet_trainer"]

QUIET: dict[str, Any] = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "num_sanity_val_steps": 0,
}


def quiet_trainer(**kwargs: Any) -> L.Trainer:
    """``L.Trainer(**QUIET, **kwargs)`` (``kwargs`` win); Lightning's start-up banner is kept at WARNING."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return L.Trainer(**{**QUIET, **kwargs})
