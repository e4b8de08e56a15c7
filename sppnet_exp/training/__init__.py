"""Lightning pieces: the classifier module, size schedules, checkpoint IO and the Hydra-aware DDP launcher."""

from sppnet_exp.training.classifier import SPPClassifier
from sppnet_exp.training.sizes import SizeSchedule

__all__ = ["SPPClassifier", "SizeSchedule"]
