"""The classification task (Tables 2 and 3): the classifier module, its size schedules and the task function.

A peer of :mod:`sppnet_exp.detection` below the engine (:mod:`sppnet_exp.engine`: run dirs, results.json, the
Lightning wiring, DDP); neither imports the other.

Checkpoints are Lightning's own: it writes them through an fsspec transaction (temp file, then rename), so a
killed run never leaves a half-written ``last.ckpt``.
"""

from sppnet_exp.classification.classifier import SPPClassifier
from sppnet_exp.classification.sizes import SizeSchedule

__all__ = ["SPPClassifier", "SizeSchedule"]
