"""Lightning pieces: the classifier module, size schedules, config wiring and the Hydra-aware DDP launcher.

Checkpoints are Lightning's own: it writes them through an fsspec transaction (temp file, then rename), so a
killed run never leaves a half-written ``last.ckpt``.
"""

from sppnet_exp.training.classifier import SPPClassifier
from sppnet_exp.training.sizes import SizeSchedule

__all__ = ["SPPClassifier", "SizeSchedule"]
