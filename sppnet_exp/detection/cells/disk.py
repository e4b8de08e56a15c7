"""The disk a cell's caches will take, checked against the free space before the cell starts.

Estimated from the images' sizes and the trunk's geometry without computing anything: a conv5 map at scale ``s``
of an ``H x W`` image is ``C x h x w`` float16 (``h, w`` from the net's ``feature_map_size`` on the resized
image) plus its ``.npy`` header; maps already on disk count nothing. A window
cache holds ``windows x D`` float16 per image. The cell logs the estimate and refuses to start, naming the
figure, the folder and the overrides, when the free space is smaller.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sppnet_exp.detection.features.conv_cache import ConvCache
from sppnet_exp.detection.features.mapping import resized_hw

log = logging.getLogger(__name__)

__all__ = ["DiskSpaceError", "check_free_space", "conv5_bytes"]

NPY_HEADER = 128


class DiskSpaceError(OSError):
    """Not enough free space for a cell's caches."""


def conv5_bytes(
    cache: ConvCache,
    images: Sequence[tuple[str, int, int]],
    map_size: Callable[[int, int], tuple[int, int]],
    channels: int,
    scales: Sequence[int],
    flip: bool = False,
) -> int:
    """Bytes the missing maps of ``images`` (``(image_id, width, height)``) at ``scales`` will take;
    ``map_size(h, w)`` is the trunk's conv5 size on an ``h x w`` input (``SPPNet.feature_map_size``)."""
    total = 0
    for image_id, width, height in images:
        for s in scales:
            if cache.path(image_id, s, flip).is_file():
                continue
            h, w = map_size(*resized_hw(int(height), int(width), int(s)))
            total += channels * h * w * 2 + NPY_HEADER
    return total


def check_free_space(folder: str | Path, needs: Mapping[str, int], enabled: bool = True) -> dict[str, float]:
    """Log the estimate per cache (GB) and raise :class:`DiskSpaceError` when ``folder``'s file system has less
    free space than their sum (``enabled=False`` only logs)."""
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    need = sum(needs.values())
    gb = {k: round(v / 1e9, 3) for k, v in needs.items()}
    log.info(f"disk: the caches of this cell need {need / 1e9:.2f} GB in {folder} ({gb}); {free / 1e9:.1f} GB free")
    if enabled and need > free:
        raise DiskSpaceError(
            f"the caches of this cell need {need / 1e9:.1f} GB ({gb}) in {folder}, but its file system has only "
            f"{free / 1e9:.1f} GB free; free space, point cache_dir=... (or paths.output_dir=...) at a larger disk, "
            "or pass disk_check=false to start anyway"
        )
    return {"need_gb": round(need / 1e9, 3), "free_gb": round(free / 1e9, 1), **{f"{k}_gb": v for k, v in gb.items()}}
