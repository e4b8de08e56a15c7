"""Networks of the SPP-net paper (ZF-5, Convnet*-5, Overfeat-5/7, R-CNN's AlexNet) and the SPP layer."""

from sppnet_exp.models.backbones import map_sizes, stage_sizes
from sppnet_exp.models.net import SPPNet, build_model, list_models
from sppnet_exp.models.spp import SpatialPyramidPooling, spp_bins

__all__ = [
    "SPPNet",
    "SpatialPyramidPooling",
    "build_model",
    "list_models",
    "map_sizes",
    "spp_bins",
    "stage_sizes",
]
