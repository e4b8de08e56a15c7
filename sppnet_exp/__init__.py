"""sppnet-exp: reproduce the tables of SPP-net (He, Zhang, Ren, Sun) with Lightning + Hydra.

Library users need two names::

    from sppnet_exp import SpatialPyramidPooling, build_model
"""

from sppnet_exp.config import register_resolvers
from sppnet_exp.models import SpatialPyramidPooling, build_model

__all__ = ["SpatialPyramidPooling", "build_model", "__version__"]
__version__ = "0.1.0"

register_resolvers()
