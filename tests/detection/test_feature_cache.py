"""Conv cache via Lightning predict (round trip, resume), pooling from it, and the pool5 cache."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sppnet_exp.data.images import decode_file
from sppnet_exp.data.transforms import normalize
from sppnet_exp.detection.features.conv_cache import (
    ConvCache,
    ImageItems,
    PooledCache,
    SPPPooledSource,
    build_conv_cache,
)
from sppnet_exp.detection.features.mapping import choose_scales, map_windows, receptive_field, resized_hw, scale_boxes
from sppnet_exp.detection.features.window_spp import window_spp_reference
from sppnet_exp.models import build_model

SCALES = (64, 96, 128)
CPU = {"accelerator": "cpu"}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Path, int, int]]:
    """Three small images: RGB JPEG (landscape), PNG (portrait), grayscale JPEG; (id, path, width, height)."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    out = []
    for name, (w, h), mode, ext in [
        ("a", (80, 60), "RGB", "jpg"),
        ("b", (50, 70), "RGB", "png"),
        ("c", (64, 64), "L", "jpg"),
    ]:
        shape = (h, w, 3) if mode == "RGB" else (h, w)
        path = root / f"{name}.{ext}"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
        out.append((name, path, w, h))
    return out


@pytest.fixture(scope="module")
def net() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return build_model("zf5", width=0.125).features.eval()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, images, net) -> ConvCache:
    cache = ConvCache(tmp_path_factory.mktemp("conv"), SCALES, "zf5_tiny")
    stats = build_conv_cache(cache, [(i, p) for i, p, _, _ in images], net, trainer_kwargs=CPU)
    assert stats["computed"] == 3 and stats["reused"] == 0
    return cache


def direct_map(net: torch.nn.Module, path: Path, scale: int) -> torch.Tensor:
    img = decode_file(path)
    x = F.interpolate(
        normalize(img)[None], size=resized_hw(*img.shape[-2:], scale), mode="bilinear", align_corners=False
    )
    with torch.no_grad():
        return net(x)[0]


def test_conv_cache_round_trip(built: ConvCache, images, net) -> None:
    for image_id, path, w, h in images:
        assert built.has(image_id)
        for scale in SCALES:
            stored = built.get(image_id, scale)
            assert isinstance(stored, np.memmap) and stored.dtype == np.float16
            ref = direct_map(net, path, scale)
            assert stored.shape == tuple(ref.shape)
            assert stored.shape[1:] == build_model("zf5", width=0.125).feature_map_size(*resized_hw(h, w, scale))
            np.testing.assert_allclose(stored.astype(np.float32), ref.numpy(), rtol=2e-3, atol=2e-3)
    assert built.path("a", 96) == built.dir / "s96" / "a.npy"
    meta = built.meta()
    assert meta["images_computed"] == 3 and meta["scales"] == list(SCALES)
    assert meta["conv_seconds_per_image"] > 0 and meta["runs"][0]["world_size"] == 1


def test_conv_cache_resume_after_kill(tmp_path: Path, images, net) -> None:
    cache = ConvCache(tmp_path, SCALES, "t")
    items = [(i, p) for i, p, _, _ in images]
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_checkpointing=False
    )
    build_conv_cache(cache, items, net, trainer=trainer)
    # Simulated kill: image "b" lost its 128 map and left a temp file of it behind.
    cache.path("b", 128).unlink()
    (cache.dir / "s128" / ".b.npy.abc123.tmp").write_bytes(b"partial")
    kept = cache.path("a", 64).stat().st_mtime_ns
    assert cache.missing([i for i, _ in items]) == ["b"]
    stats = build_conv_cache(cache, items, net, trainer_kwargs=CPU)
    assert (stats["computed"], stats["reused"]) == (1, 2)
    assert cache.missing([i for i, _ in items]) == []
    assert cache.path("a", 64).stat().st_mtime_ns == kept
    assert cache.meta()["images_computed"] == 4 and len(cache.meta()["runs"]) == 2
    assert cache.build(items, net, trainer_kwargs=CPU)["computed"] == 0


def test_build_a_subset_of_scales(tmp_path: Path, images, net) -> None:
    cache = ConvCache(tmp_path, SCALES, "sub")
    items = [(i, p) for i, p, _, _ in images[:2]]
    stats = build_conv_cache(cache, items, net, (64,), trainer_kwargs=CPU)
    assert stats["computed"] == 2 and cache.missing(["a", "b"], (64,)) == [] and cache.missing(["a", "b"]) == ["a", "b"]
    assert not cache.path("a", 96).exists()
    assert build_conv_cache(cache, items, net, [64], trainer_kwargs=CPU)["computed"] == 0
    with pytest.raises(ValueError, match="subset"):
        build_conv_cache(cache, items, net, (200,), trainer_kwargs=CPU)


def test_conv_cache_errors(tmp_path: Path) -> None:
    cache = ConvCache(tmp_path, (64,), "t")
    with pytest.raises(FileNotFoundError, match="a.npy"):
        cache.get("a", 64)
    with pytest.raises(ValueError, match="scale 96"):
        cache.get("a", 96)
    with pytest.raises(ValueError, match="file name"):
        cache.path("../x", 64)
    cache.path("bad", 64).parent.mkdir(parents=True)
    cache.path("bad", 64).write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="bad.npy"):
        cache.get("bad", 64)


def test_image_items_flip(images) -> None:
    image_id, path, _, _ = images[0]
    idx, img = ImageItems([(image_id, path)], flip=True)[0]
    assert idx == 0 and torch.equal(img, decode_file(path).flip(-1))


def random_boxes(rng: np.random.Generator, k: int, w: int, h: int) -> np.ndarray:
    x1, y1 = rng.uniform(1, w, k), rng.uniform(1, h, k)
    x2, y2 = rng.uniform(x1, w), rng.uniform(y1, h)
    boxes = np.stack([x1, y1, x2, y2], 1).round().astype(np.float32)
    return np.concatenate([boxes, [[1, 1, w, h], [5, 5, 6, 6]]]).astype(np.float32)


@pytest.mark.parametrize(("mapping_rule", "scale_rule"), [("paper", "paper"), ("receptive_field", "authors")])
def test_pooled_source_equals_manual_pipeline(built: ConvCache, images, net, mapping_rule, scale_rule) -> None:
    geom = receptive_field(net)
    meta = [(i, w, h) for i, _, w, h in images]
    source = SPPPooledSource(
        built, meta, SCALES, geom, mapping_rule=mapping_rule, scale_rule=scale_rule, target=48, sz_conv=3
    )
    rng = np.random.default_rng(1)
    for index, (image_id, w, h) in enumerate(meta):
        boxes = random_boxes(rng, 30, w, h)
        got = source(index, boxes)
        assert got.dtype == torch.float32 and got.shape == (len(boxes), source.dim)
        idx = choose_scales(boxes, w, h, SCALES, scale_rule, 48, geom.stride, 3)
        assert len(set(idx.tolist())) > 1  # the test exercises several scales
        keys = source.keys(index, boxes)
        for k, box in enumerate(boxes):
            scale = SCALES[idx[k]]
            fmap = torch.from_numpy(np.array(built.get(image_id, scale))).float()
            cells = map_windows(scale_boxes(box[None], min(w, h), scale), mapping_rule, geom, *fmap.shape[1:])
            assert keys[k].tolist() == [idx[k], *cells[0].tolist()]
            assert torch.equal(got[k], window_spp_reference(fmap, cells)[0])
        fixed = source.pooled_at_scale(index, boxes, 1)
        random_idx = rng.integers(0, len(SCALES), len(boxes))
        mixed = source.pooled_at_scale(index, boxes, random_idx)
        for k in range(len(boxes)):
            assert torch.equal(fixed[k], source.pooled_at_scale(index, boxes[k : k + 1], np.array([1]))[0])
            assert torch.equal(mixed[k], source.pooled_at_scale(index, boxes[k : k + 1], random_idx[k : k + 1])[0])
        assert source(index, np.zeros((0, 4))).shape == (0, source.dim)


def test_pooled_source_fp16_and_bad_scale(built: ConvCache, images, net) -> None:
    geom = receptive_field(net)
    meta = [(i, w, h) for i, _, w, h in images]
    boxes = random_boxes(np.random.default_rng(2), 10, 80, 60)
    half = SPPPooledSource(built, meta, SCALES[:2], geom, dtype=torch.float16)(0, boxes)
    full = SPPPooledSource(built, meta, SCALES[:2], geom)(0, boxes)
    assert half.dtype == torch.float16 and torch.equal(half.float(), full)
    reuse = SPPPooledSource(built, meta, SCALES, geom, reuse_out=True)
    first = reuse(0, boxes)
    assert torch.equal(first, SPPPooledSource(built, meta, SCALES, geom)(0, boxes))
    second = reuse(1, boxes[:4])
    assert second.data_ptr() == first.data_ptr()  # one buffer, overwritten by the next call
    assert torch.equal(second, SPPPooledSource(built, meta, SCALES, geom)(1, boxes[:4]))
    with pytest.raises(ValueError, match="not in the conv cache"):
        SPPPooledSource(built, meta, (64, 200), geom)
    with pytest.raises(ValueError, match="scale indices"):
        SPPPooledSource(built, meta, SCALES, geom).pooled_at_scale(0, boxes, 3)


def test_pooled_cache_round_trip_and_resume(tmp_path: Path, built: ConvCache, images, net) -> None:
    meta = [(i, w, h) for i, _, w, h in images]
    source = SPPPooledSource(built, meta, SCALES, receptive_field(net))
    rng = np.random.default_rng(3)
    boxes = [random_boxes(rng, 5 + 3 * i, w, h) for i, (_, w, h) in enumerate(meta)]
    calls: list[int] = []

    def pool(i: int) -> torch.Tensor:
        calls.append(i)
        return source(i, boxes[i])

    cache = PooledCache(tmp_path / "pool5")
    ids = [m[0] for m in meta]
    stats = cache.build(3, ids, pool, progress=False)
    assert (stats["computed"], stats["reused"], stats["dim"]) == (3, 0, source.dim)
    manifest = PooledCache(tmp_path / "pool5").manifest()
    assert (manifest["dim"], manifest["count"], manifest["rows"]) == (source.dim, 3, sum(len(b) for b in boxes))
    reader = PooledCache(tmp_path / "pool5")
    for i, image_id in enumerate(ids):
        expected = source(i, boxes[i]).half().numpy()
        assert np.array_equal(reader.get(i), expected) and np.array_equal(reader.get(image_id), expected)
        assert isinstance(reader.get(i), np.memmap)
    # Simulated kill: one file gone, a temp file left behind -> only that image is recomputed.
    cache.path("b").unlink()
    (cache.root / ".b.npy.x1y2.tmp").write_bytes(b"partial")
    calls.clear()
    stats = cache.build(3, ids, pool, progress=False)
    assert calls == [1] and (stats["computed"], stats["reused"]) == (1, 2)
    with pytest.raises(ValueError, match="width"):
        PooledCache(tmp_path / "pool5").build(1, ["z"], lambda i: torch.zeros(2, 7), progress=False)
    with pytest.raises(IndexError):
        reader.get(5)
    with pytest.raises(ValueError, match="image ids"):
        cache.build(2, ids, pool, progress=False)


def test_temp_files_never_count(tmp_path: Path) -> None:
    cache = ConvCache(tmp_path, (64,), "t")
    (cache.dir / "s64").mkdir(parents=True)
    (cache.dir / "s64" / ".a.npy.zz.tmp").write_bytes(b"x")
    assert cache.missing(["a"]) == ["a"]
    cache.put("a", 64, torch.ones(2, 3, 4))
    assert cache.missing(["a"]) == [] and cache.get("a", 64).shape == (2, 3, 4)
    assert not [p for p in os.listdir(cache.dir / "s64") if p.endswith(".tmp") and not p.startswith(".a.npy.zz")]


@pytest.mark.slow
def test_conv_cache_ddp_shards_on_cpu(tmp_path: Path, images, net) -> None:
    """Two gloo ranks split the images; together they write every map and one meta run with the summed counts."""
    cache = ConvCache(tmp_path, SCALES[:1], "ddp")
    items = [(i, p) for i, p, _, _ in images]
    kwargs = {"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"}
    stats = build_conv_cache(cache, items, net, trainer_kwargs=kwargs)
    assert stats["computed"] == 3 and cache.missing([i for i, _ in items]) == []
    run = cache.meta()["runs"][0]
    assert run["world_size"] == 2 and run["images"] == 3  # Lightning's predict sampler does not pad the shards
    ref = direct_map(net, images[1][1], SCALES[0]).numpy()
    np.testing.assert_allclose(cache.get("b", SCALES[0]).astype(np.float32), ref, rtol=2e-3, atol=2e-3)


@pytest.mark.data
def test_conv_cache_on_real_images(shared_data: Path, tmp_path: Path, net) -> None:
    """Two BCCD photos (640x480): every scale is stored with the trunk's map size and pools like the reference."""
    folder = shared_data / "bccd" / "BCCD" / "JPEGImages"
    paths = sorted(folder.glob("*.jpg"))[:2]
    if len(paths) < 2:
        pytest.skip(f"no BCCD images in {folder}")
    cache = ConvCache(tmp_path, (96, 160), "real")
    build_conv_cache(cache, [(p.stem, p) for p in paths], net, trainer_kwargs=CPU)
    model = build_model("zf5", width=0.125)
    meta = []
    for p in paths:
        h, w = decode_file(p).shape[-2:]
        meta.append((p.stem, w, h))
        for scale in (96, 160):
            assert cache.get(p.stem, scale).shape[1:] == model.feature_map_size(*resized_hw(h, w, scale))
    source = SPPPooledSource(cache, meta, (96, 160), receptive_field(net), target=96)
    boxes = random_boxes(np.random.default_rng(4), 20, meta[0][1], meta[0][2])
    cells = source.cells(0, boxes)
    idx = source.choose(0, boxes)
    got = source(0, boxes)
    for k in range(len(boxes)):
        fmap = torch.from_numpy(np.array(cache.get(meta[0][0], (96, 160)[idx[k]]))).float()
        assert torch.equal(got[k], window_spp_reference(fmap, cells[k : k + 1])[0])
