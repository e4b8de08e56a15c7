"""Window features. :mod:`.mapping` (box scaling, scale choice; the window -> conv5 cells are
:mod:`sppnet_exp.models.geometry`'s) and :mod:`.window_spp` (the batched pyramid) build :mod:`.pooling`, the one path
from conv5 maps to pooled window vectors; :mod:`.conv_cache` holds
conv5 per image, scale and orientation; :mod:`.windows` gives the roidb windows' features on the fly (SPP-net from
the cache, R-CNN by :mod:`.warping` and the trunk); :mod:`.heads` is fc6/fc7 on them; :mod:`.window_cache` the
optional per-window cache."""
