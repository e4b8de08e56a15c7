"""The names of the window -> conv5 mapping rules (Appendix A; :func:`sppnet_exp.models.geometry.map_windows`).

``receptive_field`` (the authors' ``spm_pool_caffe_mex.cpp``, what Appendix A asks for with the released nets'
paddings), ``paper`` (the v4 formula as printed) and ``paper_offset`` (the same with its "proper offset"). Standard
library only: the pre-flight checks and the typed settings validate these names before torch is imported.
"""

from __future__ import annotations

__all__ = ["MAPPING_RULES"]

MAPPING_RULES = ("receptive_field", "paper", "paper_offset")
