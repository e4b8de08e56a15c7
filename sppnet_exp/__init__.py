"""sppnet-exp: reproduce the tables of SPP-net (He, Zhang, Ren, Sun) with Lightning + Hydra.

Library users need two names::

    from sppnet_exp import SpatialPyramidPooling, build_model

Both are imported on first use (PEP 562): importing the package (and its entry scripts, whose ``--help`` and
config errors come back before torch is loaded) registers the OmegaConf resolvers and the typed config schemas
(:mod:`sppnet_exp.detection.settings`) and nothing heavy.
"""

from __future__ import annotations

from typing import Any

from sppnet_exp.config import register_resolvers, register_schemas

__all__ = ["SpatialPyramidPooling", "build_model", "__version__"]
__version__ = "0.1.0"

register_resolvers()
register_schemas()


def __getattr__(name: str) -> Any:
    """``SpatialPyramidPooling`` and ``build_model`` from :mod:`sppnet_exp.models`, imported on first use."""
    if name in ("SpatialPyramidPooling", "build_model"):
        from sppnet_exp import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
