"""Networks of the SPP-net paper (ZF-5, Convnet*-5, Overfeat-5/7, R-CNN's AlexNet), the SPP layer, and the
geometry of their conv maps (:mod:`.geometry`: receptive field, window -> conv5 cells, Appendix A).

The names below are imported on first use, so :mod:`.window_rules` (the mapping rules' names, standard library
only) loads without torch: the pre-flight checks validate a config's rule names before torch is imported.
"""

from __future__ import annotations

from sppnet_exp.utils.lazy import lazy_getattr

_EXPORTS = {
    "SPPNet": "net",
    "build_model": "net",
    "list_models": "net",
    "SpatialPyramidPooling": "spp",
    "spp_bins": "spp",
    "map_sizes": "backbones",
    "stage_sizes": "backbones",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
