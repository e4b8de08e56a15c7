"""Running tasks: the one task runner that the entry scripts (``train``, ``eval``, ``detect``) call."""

from sppnet_exp.engine.runner import optimized_metric, run_task

__all__ = ["optimized_metric", "run_task"]
