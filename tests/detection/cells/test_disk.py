"""The disk estimate of a cell's caches (equal to what the cache then writes) and the refusal to start."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from sppnet_exp.detection.cells.disk import DiskSpaceError, check_free_space, conv5_bytes
from sppnet_exp.detection.features.conv_cache import ConvCache, build_conv_cache
from sppnet_exp.models import build_model
from tests.detection.conftest import CPU, SCALES


def test_conv5_estimate_is_what_the_cache_writes(tmp_path: Path, scene: SimpleNamespace, trunk) -> None:
    images = [(r.image_id, r.width, r.height) for r in scene.records]
    cache = ConvCache(tmp_path, SCALES, "estimate")
    size = build_model("zf5", width=0.125).feature_map_size
    est = conv5_bytes(cache, images, size, 32, SCALES)
    flipped = conv5_bytes(cache, images[:2], size, 32, SCALES, flip=True)
    paths = scene.paths
    build_conv_cache(cache, [(i, paths[i]) for i, _, _ in images], trunk, trainer_kwargs=CPU)
    build_conv_cache(cache, [(i, paths[i], True) for i, _, _ in images[:2]], trunk, trainer_kwargs=CPU)
    written = sum(f.stat().st_size for f in cache.dir.glob("s*/*.npy"))
    assert est + flipped == written
    assert conv5_bytes(cache, images, size, 32, SCALES) == 0  # present maps cost nothing


def test_refuses_when_the_caches_do_not_fit(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    out = check_free_space(tmp_path / "cache", {"conv5": 1000})
    assert out["need_gb"] == 0.0 and out["free_gb"] > 0
    with pytest.raises(DiskSpaceError) as err:
        check_free_space(tmp_path / "cache", {"conv5": free + 10**9, "conv5_flipped": 10**9})
    msg = str(err.value)
    assert str(tmp_path / "cache") in msg and "disk_check=false" in msg and "cache_dir=" in msg
    assert f"{(free + 2 * 10**9) / 1e9:.1f} GB" in msg
    check_free_space(tmp_path / "cache", {"conv5": free + 10**9}, enabled=False)  # only logged
