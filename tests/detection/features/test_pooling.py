"""The one pooling path (WindowPooler) and what reads through it: SPP window sources, their streams, the optional
window cache, and fine-tuning's on-the-fly batches with random scales and flips."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sppnet_exp.detection.features.conv_cache import ConvCache
from sppnet_exp.detection.features.mapping import choose_scales, scale_boxes
from sppnet_exp.detection.features.pooling import PoolingSpec, WindowPooler
from sppnet_exp.detection.features.window_cache import WindowCache
from sppnet_exp.detection.features.window_spp import window_spp_reference
from sppnet_exp.detection.features.windows import CachedFeatures, SPPFeatures
from sppnet_exp.detection.finetune.batches import PooledWindows
from sppnet_exp.detection.structures.boxes import flip_boxes
from sppnet_exp.models.geometry import map_windows, receptive_field
from tests.detection.conftest import SCALES, random_boxes


def _maps(cache: ConvCache, image_id: str, flip: bool = False) -> list[torch.Tensor]:
    return [torch.from_numpy(m) for m in cache.maps(image_id, SCALES, flip)]


@pytest.mark.parametrize(("mapping_rule", "scale_rule"), [("paper", "paper"), ("receptive_field", "authors")])
def test_pooler_equals_crop_and_pyramid(scene: SimpleNamespace, trunk, mapping_rule: str, scale_rule: str) -> None:
    """Every window: its scale by the rule, its cells by the mapping, then SpatialPyramidPooling of the crop."""
    geom = receptive_field(trunk)
    spec = PoolingSpec(geom, (6, 3, 2, 1), SCALES, mapping_rule, scale_rule, target=48, sz_conv=3)
    pooler = WindowPooler(spec)
    rng = np.random.default_rng(1)
    for rec in scene.records:
        w, h = rec.width, rec.height
        boxes = random_boxes(rng, 30, w, h)
        maps = _maps(scene.cache, rec.image_id)
        got = pooler.pool(maps, boxes, w, h)
        assert got.dtype == torch.float32 and got.shape == (len(boxes), pooler.output_dim(maps[0].shape[0]))
        idx = choose_scales(boxes, w, h, SCALES, scale_rule, 48, geom.stride, 3)
        assert len(set(idx.tolist())) > 1  # several scales are exercised
        keys = pooler.keys(boxes, w, h, [tuple(m.shape[1:]) for m in maps])
        for k, box in enumerate(boxes):
            fmap = maps[idx[k]].float()
            cells = map_windows(scale_boxes(box[None], min(w, h), SCALES[idx[k]]), mapping_rule, geom, *fmap.shape[1:])
            assert keys[k].tolist() == [idx[k], *cells[0].tolist()]
            assert torch.equal(got[k], window_spp_reference(fmap, cells, (6, 3, 2, 1))[0])
        assert pooler.pool(maps, np.zeros((0, 4)), w, h).shape == (0, got.shape[1])


def test_direct_and_batched_paths_agree(scene: SimpleNamespace) -> None:
    """A few windows per map are pooled directly, many through the range-max table: the same numbers."""
    rng = np.random.default_rng(2)
    table, direct = WindowPooler(scene.spec, path="table"), WindowPooler(scene.spec, path="direct")
    for rec in scene.records:
        maps = _maps(scene.cache, rec.image_id)
        boxes = random_boxes(rng, 50, rec.width, rec.height)
        for idx in (None, 2, rng.integers(0, len(SCALES), len(boxes))):
            a = table.pool(maps, boxes, rec.width, rec.height, idx)
            assert torch.equal(a, direct.pool(maps, boxes, rec.width, rec.height, idx))
            for k in range(3):  # one window alone gives its row of the batch
                ik = idx[k : k + 1] if isinstance(idx, np.ndarray) else idx
                assert torch.equal(a[k], direct.pool(maps, boxes[k : k + 1], rec.width, rec.height, ik)[0])
    with pytest.raises(ValueError, match="scale indices"):
        table.pool(maps, boxes, rec.width, rec.height, 3)
    with pytest.raises(ValueError, match="maps for the 3 scales"):
        table.pool(maps[:2], boxes, rec.width, rec.height)


def test_spp_features_rows_and_stream(scene: SimpleNamespace) -> None:
    """Rows of the roidb's windows from the cache; a selection; the prefetching stream (2 workers) gives the same."""
    src = SPPFeatures(scene.cache, scene.roidb, WindowPooler(scene.spec))
    pooler = WindowPooler(scene.spec)
    for i, w in enumerate(scene.roidb):
        rows = src.rows(i)
        assert rows.shape == (len(w), src.dim)
        assert torch.equal(rows, pooler.pool(_maps(scene.cache, w.image_id), w.boxes, w.width, w.height))
        sel = np.array([0, 3, 7])
        assert torch.equal(src.rows(i, sel), rows[sel])
    streamed = SPPFeatures(scene.cache, scene.roidb, WindowPooler(scene.spec), workers=2)
    got = list(streamed.stream([2, 0, 3], lambda i: np.arange(i + 2)))
    assert [i for i, _ in got] == [2, 0, 3]
    for i, x in got:
        assert torch.equal(x, src.rows(i, np.arange(i + 2)))
    with pytest.raises(ValueError, match="not in the conv cache"):
        SPPFeatures(scene.cache, scene.roidb, WindowPooler(PoolingSpec(scene.spec.geom, (1,), (64, 200))))


def test_window_cache_behind_a_source(tmp_path: Path, scene: SimpleNamespace) -> None:
    """The optional per-window cache holds what the source computes; a lost file is recomputed alone."""
    src = SPPFeatures(scene.cache, scene.roidb, WindowPooler(scene.spec))
    cached = CachedFeatures(src, WindowCache(tmp_path / "w"))
    assert cached.stats["computed"] == len(scene.roidb) and cached.dim == src.dim
    for i in range(len(scene.roidb)):
        assert torch.equal(cached.rows(i), src.rows(i).half().float())
    (tmp_path / "w" / "im1.npy").unlink()
    again = CachedFeatures(src, WindowCache(tmp_path / "w"))
    assert (again.stats["computed"], again.stats["reused"]) == (1, len(scene.roidb) - 1)
    assert torch.equal(again.rows(1), src.rows(1).half().float())


def _dataset(scene: SimpleNamespace, random_scale: bool, flip: bool, seed: int = 0):  # noqa: ANN202
    source = PooledWindows(scene.cache, scene.spec, random_scale, flip, images_per_chunk=3, steps_per_chunk=4)
    kw = {"batch_size": 16, "fg_fraction": 0.25, "fg_thresh": 0.5, "bg_thresh": (0.1, 0.5)}
    return source.batches(scene.roidb, np.arange(len(scene.roidb)), kw, steps=6, seed=seed)


def test_finetune_batches_pool_each_window_at_its_scale_and_flip(scene: SimpleNamespace) -> None:
    """A drawn window is pooled from its image's maps at the drawn scale, from the mirrored maps (mirrored box)
    when flipped; over many draws every scale and both orientations occur."""
    ds = _dataset(scene, random_scale=True, flip=True)
    rng = np.random.default_rng(3)
    sampler, maps = ds._chunk(rng)
    assert set(maps) == {(i, f) for i in {k for k, _ in maps} for f in (False, True)}
    pooler = WindowPooler(scene.spec)
    seen_scales, flips = set(), []
    for _ in range(5):
        draws = ds.draw(sampler, rng)
        x, y = ds.pool_draws(
            pooler, maps, draws, torch.empty(16, pooler.output_dim(maps[next(iter(maps))][0].shape[0]))
        )
        img, row, lab, scales, flipped = draws
        assert torch.equal(y, torch.from_numpy(lab)) and (lab > 0).sum() == 4
        for k in range(len(img)):
            w = scene.roidb[img[k]]
            box = w.boxes[row[k]][None]
            if flipped[k]:
                box = flip_boxes(box, w.width)
            ref = pooler.pool(_maps(scene.cache, w.image_id, bool(flipped[k])), box, w.width, w.height, [scales[k]])
            assert torch.equal(x[k], ref[0])
        seen_scales |= set(scales.tolist())
        flips += flipped.tolist()
    assert seen_scales == set(range(len(SCALES))) and 0.25 < np.mean(flips) < 0.75


def test_finetune_batches_without_augmentation_use_the_rule(scene: SimpleNamespace) -> None:
    ds = _dataset(scene, random_scale=False, flip=False)
    rng = np.random.default_rng(4)
    sampler, maps = ds._chunk(rng)
    assert {f for _, f in maps} == {False}
    draws = ds.draw(sampler, rng)
    assert (draws[3] == -1).all() and not draws[4].any()
    pooler = WindowPooler(scene.spec)
    x, _ = ds.pool_draws(pooler, maps, draws, torch.empty(16, pooler.output_dim(maps[next(iter(maps))][0].shape[0])))
    img, row = draws[0], draws[1]
    for k in range(len(img)):
        w = scene.roidb[img[k]]
        assert torch.equal(
            x[k], pooler.pool(_maps(scene.cache, w.image_id), w.boxes[row[k]][None], w.width, w.height)[0]
        )


def test_finetune_stream_is_seeded(scene: SimpleNamespace) -> None:
    a = [(x.clone(), y) for x, y in _dataset(scene, True, True, seed=7)]
    b = [(x.clone(), y) for x, y in _dataset(scene, True, True, seed=7)]
    c = [(x.clone(), y) for x, y in _dataset(scene, True, True, seed=8)]
    assert len(a) == 6 and all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p[0], q[0]) for p, q in zip(a, c, strict=True))
