"""Shared fixtures of the detection tests: random boxes, a tiny ZF-5 trunk, and a small scene — four images with
GT boxes and proposals, their roidb, and their conv5 maps (and the mirrored images') at three scales."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from sppnet_exp.detection.features.conv_cache import ConvCache, build_conv_cache
from sppnet_exp.detection.features.pooling import PoolingSpec
from sppnet_exp.detection.structures.roidb import build_windows
from sppnet_exp.models import build_model
from sppnet_exp.models.geometry import receptive_field

SCALES = (64, 96, 128)
CPU = {"accelerator": "cpu"}


def random_boxes(rng: np.random.Generator, k: int, w: int, h: int) -> np.ndarray:
    x1, y1 = rng.uniform(1, w, k), rng.uniform(1, h, k)
    x2, y2 = rng.uniform(x1, w), rng.uniform(y1, h)
    boxes = np.stack([x1, y1, x2, y2], 1).round().astype(np.float32)
    return np.concatenate([boxes, [[1, 1, w, h], [5, 5, 6, 6]]]).astype(np.float32)


@pytest.fixture(scope="module")
def trunk() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("zf5", width=0.125).features.eval()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory, trunk: torch.nn.Module) -> SimpleNamespace:
    """Four images with GT boxes and proposals, their conv5 maps (and the mirrored images') at three scales."""
    root = tmp_path_factory.mktemp("pool")
    rng = np.random.default_rng(0)
    records, roidb, items = [], [], []
    for k, (w, h) in enumerate([(80, 60), (50, 70), (64, 64), (90, 40)]):
        path = root / f"im{k}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        gt = np.array([[5, 5, w * 0.6, h * 0.7], [w * 0.3, h * 0.2, w - 2, h - 3]], np.float32)
        rec = SimpleNamespace(
            image_id=f"im{k}", width=w, height=h, boxes=gt, labels=np.array([0, 1]), difficult=np.zeros(2, bool)
        )
        props = np.concatenate([random_boxes(rng, 40, w, h), gt + 1.0]).clip(1, [w, h, w, h])
        records.append(rec)
        roidb.append(build_windows(rec, props, num_classes=2))
        items.append((rec.image_id, path))
    cache = ConvCache(root / "conv5", SCALES, "t")
    build_conv_cache(cache, items, trunk, trainer_kwargs=CPU, flip=(False, True))
    spec = PoolingSpec(receptive_field(trunk), (6, 3, 2, 1), SCALES, target=48)
    return SimpleNamespace(cache=cache, roidb=roidb, spec=spec, records=records, paths=dict(items))
