"""The tasks the engine runs, by command name: the one place that knows which package computes what.

``train`` and ``eval`` are the classification task (:func:`sppnet_exp.classification.task.train`; ``eval`` tests
the views of a trained cell), ``detect`` the detection task (:func:`sppnet_exp.detection.cells.task.detect`).
Each is imported when first run, so the entry scripts and the pre-flight stay free of torch. A task that needs
another task's run — a detection cell its pretrained classification net — asks for it here by command and
config (:func:`run_cell`), never by importing the other package.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig

from sppnet_exp.utils.targets import import_target

__all__ = ["TASKS", "Task", "run_cell", "task_for"]

Task = Callable[[DictConfig], Mapping[str, Any]]

TASKS: dict[str, str] = {
    "train": "sppnet_exp.classification.task:train",
    "eval": "sppnet_exp.classification.task:train",
    "detect": "sppnet_exp.detection.cells.task:detect",
    "transfer": "sppnet_exp.transfer.task:transfer",
}


def task_for(task: Task | str) -> Task:
    """``task`` itself, the task of a command (``"train"``), or the function a ``"module:function"`` names."""
    if not isinstance(task, str):
        return task
    target = TASKS.get(task, task)
    if ":" not in target:
        raise KeyError(f"unknown task {task!r}: one of {sorted(TASKS)} or 'module:function'")
    return import_target(target)


def run_cell(command: str, cfg: DictConfig) -> Mapping[str, Any]:
    """Run (or resume, or skip) the cell ``cfg`` with the task of ``command``; its results."""
    return task_for(command)(cfg)
