"""The conv5 cache via Lightning predict: round trip, resume after a kill, subsets of scales, flipped maps, errors,
DDP sharding, and two processes filling one cache."""

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
from sppnet_exp.detection.features.conv_cache import ConvCache, ImageItems, build_conv_cache
from sppnet_exp.detection.features.mapping import resized_hw
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
    idx, img = ImageItems([(image_id, path, True)])[0]
    assert idx == 0 and torch.equal(img, decode_file(path).flip(-1))


def test_flipped_maps_are_the_mirrored_images(tmp_path: Path, images, net) -> None:
    """Maps of the mirrored image sit beside the others (``s<scale>_flip/``) and equal the trunk on the flip."""
    cache = ConvCache(tmp_path, SCALES[:2], "flip")
    items = [(i, p) for i, p, _, _ in images[:2]]
    stats = build_conv_cache(cache, items, net, trainer_kwargs=CPU, flip=(False, True))
    assert stats["computed"] == 4
    assert cache.path("a", 64, flip=True) == cache.dir / "s64_flip" / "a.npy"
    for image_id, path, _, _ in images[:2]:
        img = decode_file(path).flip(-1)
        x = F.interpolate(normalize(img)[None], size=resized_hw(*img.shape[-2:], 64), mode="bilinear")
        with torch.no_grad():
            ref = net(x)[0].numpy()
        np.testing.assert_allclose(cache.get(image_id, 64, flip=True).astype(np.float32), ref, rtol=2e-3, atol=2e-3)
        assert not np.array_equal(cache.get(image_id, 64, flip=True), cache.get(image_id, 64))
    # only the flipped maps of one image are missing: only they are computed
    cache.path("b", 96, flip=True).unlink()
    again = build_conv_cache(cache, [("b", images[1][1], True), ("a", images[0][1], False)], net, trainer_kwargs=CPU)
    assert (again["computed"], again["reused"]) == (1, 1)


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


class SlowTrunk(torch.nn.Module):
    """The tiny ZF-5 trunk, 0.3 s slower per image: two builders are sure to overlap in time."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inner = build_model("zf5", width=0.125).features.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import time

        time.sleep(0.3)
        return self.inner(x)


def _build_shared(root: str, items: list[tuple[str, str]], out: str) -> None:
    """One of two processes filling the same cache folder (run by multiprocessing)."""
    import json

    torch.set_num_threads(1)
    stats = build_conv_cache(ConvCache(root, (64,), "shared"), items, SlowTrunk(), trainer_kwargs=CPU)
    Path(out).write_text(json.dumps(stats))


def test_two_processes_share_one_cache(tmp_path: Path) -> None:
    """Two builders of the same entries split them through claims: every map is written once, none is partial."""
    import json
    import multiprocessing as mp

    rng = np.random.default_rng(5)
    items = []
    for k in range(8):
        path = tmp_path / f"im{k}.png"
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)
        items.append((f"im{k}", str(path)))
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_build_shared, args=(str(tmp_path / "cache"), items, str(tmp_path / f"stats{j}.json")))
        for j in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    stats = [json.loads((tmp_path / f"stats{j}.json").read_text()) for j in range(2)]
    assert sum(s["computed"] for s in stats) == len(items), stats  # no entry computed twice
    assert all(s["computed"] > 0 for s in stats), stats  # both did part of the work
    cache = ConvCache(tmp_path / "cache", (64,), "shared")
    assert cache.missing([i for i, _ in items]) == []
    assert not list((cache.dir / "s64").glob("*.claim")) and not list((cache.dir / "s64").glob("*.tmp"))
    ref = SlowTrunk().inner
    for image_id, path in items[:2]:
        img = decode_file(Path(path))
        x = F.interpolate(normalize(img)[None], size=resized_hw(*img.shape[-2:], 64), mode="bilinear")
        with torch.no_grad():
            np.testing.assert_allclose(cache.get(image_id, 64).astype(np.float32), ref(x)[0].numpy(), atol=2e-3)
