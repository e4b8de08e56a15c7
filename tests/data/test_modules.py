"""Tests of the DataModules (ImageNet, Caltech-101, VOC 2007 classification) and of robust decoding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from sppnet_exp.data import (
    Caltech101DataModule,
    ImageDecodeError,
    ImageNetDataModule,
    VOC2007ClsDataModule,
    decode_file,
    ensure_generated,
)
from sppnet_exp.data.batches import finish_batch
from sppnet_exp.data.images import collate_train

SMALL = {
    "resize": 40,
    "crop": 32,
    "full_resize": 36,
    "batch_size": 64,
    "eval_batch_size": 4,
    "num_workers": 0,
}


def _save(path: Path, h: int = 48, w: int = 64, seed: int = 0, mode: str = "RGB", fmt: str = "JPEG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    if mode == "L":
        img = img.convert("L")
    elif mode == "CMYK":
        img = img.convert("CMYK")
    elif mode == "RGBA":
        img = Image.fromarray(np.dstack([arr, np.full((h, w, 1), 255, np.uint8)]), "RGBA")
    img.save(path, format=fmt, quality=90)
    return path


@pytest.fixture(scope="module")
def gen_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gen")
    return ensure_generated(root, "imagenet", num_classes=3, train_per_class=6, val_per_class=3, seed=0)


def _check_loaders(dm: ImageNetDataModule, n_classes: int) -> None:
    raw = next(iter(dm.train_dataloader()))  # the workers' uint8 batch, finished on the device by the module
    assert len(raw) == 4 and raw[0].dtype == torch.uint8 and set(raw[3]) == {"crop", "flip", "lighting"}
    images, targets, skipped = finish_batch(raw)
    assert images.shape[1:] == (3, 32, 32) and images.dtype == torch.float32
    assert targets.dtype == torch.long and skipped == 0 and int(targets.max()) < n_classes
    images, targets = finish_batch(next(iter(dm.val_dataloader())))
    assert images.shape == (4, 1, 3, 32, 32) and images.dtype == torch.float32
    loaders = dm.test_dataloader()
    assert len(loaders) == len(dm.eval_views)
    for view, loader in zip(dm.eval_views, loaders):
        seen = 0
        for images, targets in map(finish_batch, loader):
            v = {"10view": 10, "center": 1, "full": 1}[view]
            assert images.shape[1:3] == (v, 3) and images.shape[0] == targets.shape[0]
            if view == "full":
                assert min(images.shape[-2:]) == 36
            seen += targets.shape[0]
        assert seen == len(dm.eval_samples)


def test_imagenet_class_folders(gen_root: Path) -> None:
    dm = ImageNetDataModule(root=str(gen_root), eval_views=["10view", "center", "full"], **SMALL)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.name == "imagenet" and dm.num_classes == 3 and not dm.multilabel
    assert dm.class_names == sorted(p.name for p in (gen_root / "train").iterdir())
    assert len(dm.train_samples) == 18 and len(dm.eval_samples) == 9
    assert [t for _, t in dm.eval_samples] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    _check_loaders(dm, 3)


def test_generated_default(tmp_path: Path) -> None:
    dm = ImageNetDataModule(
        root=None,
        generated_dir=str(tmp_path),
        gen_classes=3,
        gen_train_per_class=4,
        gen_val_per_class=2,
        **SMALL,
    )
    dm.prepare_data()
    dm.setup("fit")
    assert dm.name == "generated" and dm.num_classes == 3 and len(dm.train_samples) == 12
    assert dm.data_root.parent == tmp_path
    # VOC 2007 classification's embedded default: generated VOC-layout scenes, multi-hot targets (Table 6)
    voc = VOC2007ClsDataModule(
        root=None, generated_dir=str(tmp_path), gen_classes=3, gen_train_per_class=3, gen_val_per_class=2,
        difficult="ignore", **SMALL,
    )  # fmt: skip
    voc.prepare_data()
    voc.setup("fit")
    targets = torch.stack([t for _, t in voc.train_samples])
    assert voc.multilabel and voc.name == "generated" and voc.num_classes == 3
    assert len(voc.train_samples) == 9 and len(voc.eval_samples) == 6 and targets.shape == (9, 3)
    assert set(targets.unique().tolist()) <= {-1.0, 0.0, 1.0} and (targets != 0).any(1).all()  # each has an object
    assert (voc.data_root / "Annotations").is_dir() and voc.data_root.parent == tmp_path


def test_imagenet_flat_val_with_devkit(tmp_path: Path) -> None:
    wnids = ["n001", "n002", "n003"]
    for k, w in enumerate(wnids):
        for i in range(2):
            _save(tmp_path / "train" / w / f"{w}_{i}.JPEG", seed=k * 10 + i)
    # ILSVRC IDs deliberately not in wnid order: 1 -> n003, 2 -> n001, 3 -> n002, 4 -> a synset not in train/.
    synsets = np.zeros((4,), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O")])
    for i, (ident, w) in enumerate([(1, "n003"), (2, "n001"), (3, "n002"), (4, "n999")]):
        synsets[i] = (ident, w, "x")
    devkit = tmp_path / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True)
    scipy.io.savemat(str(devkit / "meta.mat"), {"synsets": synsets})
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("2\n1\n3\n1\n")
    for i in range(1, 5):
        _save(tmp_path / "val" / f"ILSVRC2012_val_{i:08d}.JPEG", seed=100 + i)
    dm = ImageNetDataModule(root=str(tmp_path), eval_views=["center", "full"], **SMALL)
    dm.setup("test")
    assert dm.class_names == wnids
    assert [(Path(p).name, t) for p, t in dm.eval_samples] == [
        ("ILSVRC2012_val_00000001.JPEG", 0),
        ("ILSVRC2012_val_00000002.JPEG", 2),
        ("ILSVRC2012_val_00000003.JPEG", 1),
        ("ILSVRC2012_val_00000004.JPEG", 2),
    ]
    _check_loaders(dm, 3)
    (devkit / "meta.mat").unlink()
    with pytest.raises(FileNotFoundError, match="ILSVRC2012_devkit_t12"):
        ImageNetDataModule(root=str(tmp_path), **SMALL).setup()


def test_missing_and_wrong_roots(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"does not exist.*expected train/<wnid>/\*\.JPEG"):
        ImageNetDataModule(root=str(tmp_path / "nope"), **SMALL).setup()
    _save(tmp_path / "wrong" / "images" / "a.jpg")
    with pytest.raises(FileNotFoundError, match=r"expected train/<wnid>"):
        ImageNetDataModule(root=str(tmp_path / "wrong"), **SMALL).setup()
    with pytest.raises(FileNotFoundError, match="expected 101_ObjectCategories"):
        Caltech101DataModule(root=str(tmp_path / "wrong"), **SMALL).setup()
    with pytest.raises(FileNotFoundError, match="expected Annotations"):
        VOC2007ClsDataModule(root=str(tmp_path / "wrong"), **SMALL).setup()
    (tmp_path / "empty" / "train" / "n001").mkdir(parents=True)
    (tmp_path / "empty" / "val").mkdir()
    with pytest.raises(ValueError, match=r"empty.train.n001 contains no images"):
        ImageNetDataModule(root=str(tmp_path / "empty"), **SMALL).setup()


def _copy_root(src: Path, root: Path) -> Path:
    """A copy of the generated train/val JPEGs under ``root`` (so a test may add broken files to it)."""
    for split in ("train", "val"):
        for p in (src / split).rglob("*.JPEG"):
            dst = root / split / p.parent.name / p.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(p.read_bytes())
    return root


def test_corrupt_and_truncated_images(tmp_path: Path, gen_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _copy_root(gen_root, tmp_path / "in")
    cls = sorted(p.name for p in (root / "train").iterdir())[0]
    good = next((root / "train" / cls).glob("*.JPEG")).read_bytes()
    (root / "train" / cls / "corrupt.JPEG").write_bytes(b"this is not a jpeg" * 10)
    (root / "train" / cls / "truncated.JPEG").write_bytes(good[: len(good) // 2])
    dm = ImageNetDataModule(root=str(root), **SMALL)
    with caplog.at_level("WARNING"):
        batches = list(dm.train_dataloader())
    assert len(batches) == 1
    images, targets, skipped = finish_batch(batches[0])
    assert skipped == 2 and images.shape[0] == 18 == targets.shape[0]
    assert "corrupt.JPEG" in caplog.text and "truncated.JPEG" in caplog.text
    (root / "val" / cls / "truncated.JPEG").write_bytes(good[: len(good) // 2])
    dm = ImageNetDataModule(root=str(root), eval_views=["10view"], **SMALL)
    with pytest.raises(ImageDecodeError, match="truncated.JPEG"):
        for loader in dm.test_dataloader():
            list(loader)
    with pytest.raises(ImageDecodeError, match="truncated.JPEG"):
        list(dm.val_dataloader())
    images, targets, skipped = collate_train([None, None], empty_shape=(3, 32, 32))
    assert skipped == 2 and images.shape == (0, 3, 32, 32) and targets.shape == (0,)


def test_gray_cmyk_rgba_become_rgb(tmp_path: Path) -> None:
    ref = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    gray = decode_file(_save(tmp_path / "g.jpg", mode="L"))
    assert gray.shape == (3, 48, 64) and torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    cmyk_path = _save(tmp_path / "c.jpg", mode="CMYK")
    with Image.open(cmyk_path) as im:
        assert im.mode == "CMYK"
    cmyk = decode_file(cmyk_path)
    assert cmyk.shape == (3, 48, 64) and cmyk.dtype == torch.uint8
    assert (cmyk.permute(1, 2, 0).float() - torch.from_numpy(ref).float()).abs().mean() < 20
    rgba = decode_file(_save(tmp_path / "a.png", mode="RGBA", fmt="PNG"))
    assert rgba.shape == (3, 48, 64) and torch.equal(rgba.permute(1, 2, 0), torch.from_numpy(ref))
    # Grayscale and CMYK images go through a whole data module too.
    root = tmp_path / "caltech" / "101_ObjectCategories"
    for i in range(32):
        _save(root / "gray" / f"{i}.jpg", mode="L", seed=i)
        _save(root / "cmyk" / f"{i}.jpg", mode="CMYK", seed=i)
    dm = Caltech101DataModule(root=str(root.parent), eval_views=["full"], **SMALL)
    images, targets, skipped = finish_batch(next(iter(dm.train_dataloader())))
    assert images.shape == (60, 3, 32, 32) and skipped == 0
    (images,), _ = zip(*[next(iter(loader)) for loader in dm.test_dataloader()])
    assert images.shape[1:3] == (1, 3)


def _caltech(root: Path, counts: dict[str, int]) -> Path:
    for c, (name, n) in enumerate(counts.items()):
        for i in range(n):
            _save(root / "101_ObjectCategories" / name / f"image_{i + 1:04d}.jpg", h=8, w=8, seed=c * 1000 + i)
    return root


def test_caltech_protocol(tmp_path: Path) -> None:
    root = _caltech(tmp_path, {"ant": 35, "bee": 90, "cat": 31, "BACKGROUND_Google": 40})
    dm = Caltech101DataModule(root=str(root), seed=0, **SMALL)
    dm.setup()
    assert dm.class_names == ["ant", "bee", "cat"] and dm.name == "caltech101"
    train = np.bincount([t for _, t in dm.train_samples])
    test = np.bincount([t for _, t in dm.eval_samples])
    assert train.tolist() == [30, 30, 30] and test.tolist() == [5, 50, 1]
    assert not {p for p, _ in dm.train_samples} & {p for p, _ in dm.eval_samples}
    assert all("BACKGROUND" not in p for p, _ in dm.train_samples + dm.eval_samples)
    same = Caltech101DataModule(root=str(root), seed=0, **SMALL)
    other = Caltech101DataModule(root=str(root), seed=1, **SMALL)
    assert same.train_samples == dm.train_samples and same.eval_samples == dm.eval_samples
    assert set(other.train_samples) != set(dm.train_samples)
    assert Caltech101DataModule(root=str(root / "101_ObjectCategories"), seed=0, **SMALL).train_samples == (
        dm.train_samples
    )
    _caltech(tmp_path, {"small": 30})
    with pytest.raises(ValueError, match=r"small has 30 images"):
        Caltech101DataModule(root=str(root), **SMALL).setup()


def test_caltech_generated_default(tmp_path: Path) -> None:
    dm = Caltech101DataModule(
        root=None,
        generated_dir=str(tmp_path),
        gen_classes=2,
        gen_train_per_class=30,
        gen_val_per_class=5,
        **SMALL,
    )
    assert dm.name == "generated" and dm.num_classes == 2
    assert len(dm.train_samples) == 60 and len(dm.eval_samples) == 10


ANNOTATION = """<annotation><folder>VOC2007</folder><filename>{id}.jpg</filename>
<size><width>64</width><height>48</height><depth>3</depth></size>{objects}</annotation>"""
OBJECT = "<object><name>{name}</name><difficult>{d}</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>\
<xmax>10</xmax><ymax>10</ymax></bndbox></object>"


def _voc(root: Path, images: dict[str, list[tuple[str, int]]], splits: dict[str, list[str]]) -> Path:
    voc = root / "VOCdevkit" / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for k, (image_id, objs) in enumerate(images.items()):
        _save(voc / "JPEGImages" / f"{image_id}.jpg", seed=k)
        body = "".join(OBJECT.format(name=n, d=d) for n, d in objs)
        (voc / "Annotations" / f"{image_id}.xml").write_text(ANNOTATION.format(id=image_id, objects=body))
    for split, ids in splits.items():
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return voc


def test_voc_multilabel(tmp_path: Path) -> None:
    images = {
        "000001": [("dog", 0), ("person", 0), ("person", 1)],
        "000002": [("cat", 0)],
        "000003": [("cat", 1), ("dog", 0)],  # cat only difficult
        "000004": [("person", 0), ("dog", 0), ("cat", 0)],
    }
    voc = _voc(tmp_path, images, {"trainval": ["000001", "000002"], "test": ["000003", "000004"]})
    dm = VOC2007ClsDataModule(root=str(tmp_path / "VOCdevkit"), eval_views=["10view", "full"], **SMALL)
    dm.setup()
    assert dm.multilabel and dm.name == "voc07_cls" and dm.class_names == ["cat", "dog", "person"]
    targets = {Path(p).stem: t.tolist() for p, t in dm.train_samples + dm.eval_samples}
    assert targets == {
        "000001": [0, 1, 1],
        "000002": [1, 0, 0],
        "000003": [1, 1, 0],
        "000004": [1, 1, 1],
    }
    ignore = VOC2007ClsDataModule(root=str(voc), difficult="ignore", **SMALL)
    assert ignore.eval_samples[0][1].tolist() == [-1, 1, 0]
    assert ignore.train_samples[0][1].tolist() == [0, 1, 1]  # a non-difficult person makes it positive
    negative = VOC2007ClsDataModule(root=str(voc), difficult="negative", **SMALL)
    assert negative.eval_samples[0][1].tolist() == [0, 1, 0]
    images_b, targets_b, skipped = finish_batch(next(iter(dm.train_dataloader())))
    assert images_b.shape == (2, 3, 32, 32) and targets_b.dtype == torch.float32 and targets_b.shape == (2, 3)
    for loader in dm.test_dataloader():
        images_b, targets_b = next(iter(loader))
        assert targets_b.shape[1] == 3 and images_b.shape[1] in (1, 10)
    (voc / "Annotations" / "000004.xml").write_text("<annotation><object><name>cat</name>")
    with pytest.raises(ValueError, match="000004.xml"):
        VOC2007ClsDataModule(root=str(voc), **SMALL).setup()
    (voc / "Annotations" / "000004.xml").unlink()
    with pytest.raises(FileNotFoundError, match="000004.xml"):
        VOC2007ClsDataModule(root=str(voc), **SMALL).setup()


def _shared_data() -> Path:
    env = os.environ.get("SPPNET_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.data
def test_real_caltech101_subset() -> None:
    root = _shared_data() / "caltech101_subset24"
    if not (root / "101_ObjectCategories").is_dir():
        pytest.skip(f"real Caltech-101 subset not found at {root} (set SPPNET_SHARED_DATA)")
    dm = Caltech101DataModule(
        root=str(root),
        resize=64,
        crop=56,
        full_resize=64,
        batch_size=16,
        eval_batch_size=8,
        eval_views=["full"],
    )
    dm.setup()
    assert dm.num_classes == 24 and "BACKGROUND_Google" not in dm.class_names
    train = np.bincount([t for _, t in dm.train_samples], minlength=24)
    test = np.bincount([t for _, t in dm.eval_samples], minlength=24)
    assert (train == 30).all() and (test <= 50).all() and (test > 0).all()
    car = dm.class_names.index("car_side")
    car_path = next(p for p, t in dm.train_samples if t == car)
    with Image.open(car_path) as im:
        assert im.mode == "L"
    assert decode_file(car_path).shape[0] == 3
    loader = dm.train_dataloader()
    for k, (images, _targets, skipped) in enumerate(map(finish_batch, loader)):
        assert images.shape == (16, 3, 56, 56) and skipped == 0
        if k == 1:
            break
    images, targets = next(iter(dm.test_dataloader()[0]))
    assert images.shape[1:3] == (1, 3) and min(images.shape[-2:]) == 64


def test_pinned_memory_and_persistent_workers_follow_the_trainer(gen_root: Path) -> None:
    from types import SimpleNamespace

    from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator

    dm = ImageNetDataModule(root=str(gen_root), **{**SMALL, "num_workers": 2})
    assert dm._loader_kwargs() == {"num_workers": 2, "pin_memory": False, "persistent_workers": True}
    dm.trainer = SimpleNamespace(accelerator=CUDAAccelerator(), world_size=1, global_rank=0)
    assert dm._loader_kwargs()["pin_memory"] is True  # auto: pinned for a GPU trainer
    dm.trainer = SimpleNamespace(accelerator=CPUAccelerator(), world_size=1, global_rank=0)
    assert dm._loader_kwargs()["pin_memory"] is False
    off = ImageNetDataModule(root=str(gen_root), pin_memory=False, **SMALL)
    off.trainer = SimpleNamespace(accelerator=CUDAAccelerator(), world_size=1, global_rank=0)
    assert off._loader_kwargs() == {"num_workers": 0, "pin_memory": False, "persistent_workers": False}
    with pytest.raises(ValueError, match="pin_memory"):
        ImageNetDataModule(root=str(gen_root), pin_memory="yes", **SMALL)


def _epoch_batches(dm: ImageNetDataModule, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return [finish_batch(raw)[:2] for raw in loader]


def test_augmentations_do_not_depend_on_the_number_of_workers(gen_root: Path) -> None:
    """Crops, flips and lighting are drawn per (seed, epoch, image): 0 and 2 workers give the same batches, the
    next epoch and another seed give other ones (without SeededIndices each worker drew from its own stream)."""
    args = {**SMALL, "batch_size": 6, "color": 0.1}
    runs = {nw: ImageNetDataModule(root=str(gen_root), seed=3, **{**args, "num_workers": nw}) for nw in (0, 2)}
    for dm in runs.values():
        dm.setup("fit")
    a, b = _epoch_batches(runs[0], 1), _epoch_batches(runs[2], 1)
    assert len(a) == len(b) == 3
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
    assert not torch.equal(_epoch_batches(runs[0], 2)[0][0], a[0][0])
    other = ImageNetDataModule(root=str(gen_root), seed=4, **{**args, "num_workers": 0})
    other.setup("fit")
    assert not all(torch.equal(x, y) for (x, _), (y, _) in zip(_epoch_batches(other, 1), a))


def test_loaders_leave_the_global_rng_alone(gen_root: Path) -> None:
    """Starting an epoch must not consume the global torch RNG (dropout draws from it): before each loader
    had its own generator, a persistent-worker loader drew its base seed once and a 0-worker loader every epoch."""
    for nw in (0, 2):
        dm = ImageNetDataModule(root=str(gen_root), seed=3, **{**SMALL, "num_workers": nw})
        dm.setup("fit")
        state = torch.get_rng_state()
        for loader in (dm.train_dataloader(), dm.val_dataloader()):
            next(iter(loader))
        assert torch.equal(state, torch.get_rng_state()), nw


def test_image_cache_gives_the_same_batches_and_still_skips_corrupt_files(tmp_path: Path, gen_root: Path) -> None:
    """``cache_images``: images decoded and resized once, kept in memory; every epoch's training batches and every
    test view are the same bit for bit as reading the files, a corrupt file is still skipped (never cached), and a
    file changed on disk after the first epoch is not read again (the cache is per run)."""
    root = _copy_root(gen_root, tmp_path / "in")
    cls = sorted(p.name for p in (root / "train").iterdir())[0]
    (root / "train" / cls / "corrupt.JPEG").write_bytes(b"not a jpeg" * 10)
    args = {**SMALL, "batch_size": 6, "eval_views": ["10view", "center", "full"]}
    plain = ImageNetDataModule(root=str(root), seed=1, **args)
    cached = ImageNetDataModule(root=str(root), seed=1, cache_images=True, **args)
    for dm in (plain, cached):
        dm.setup("fit")
    for epoch in (0, 1):
        a, b = _epoch_batches(plain, epoch), _epoch_batches(cached, epoch)
        assert len(a) == len(b) > 0
        for (xa, ya), (xb, yb) in zip(a, b):
            assert torch.equal(ya, yb) and torch.equal(xa, xb)
    for view in ("10view", "center", "full"):
        pa, pb = plain.eval_dataset(view), cached.eval_dataset(view)
        for i in range(len(pa)):
            assert torch.equal(pa[i][0], pb[i][0])
        assert len(pb._cache) == len(pb) and all(min(v.shape[-2:]) == pb.cache_side for v in pb._cache.values())
    dataset = cached.train_dataset()
    items = [dataset[i] for i in range(len(dataset))]
    assert sum(item is None for item in items) == 1 and len(dataset._cache) == len(dataset) - 1
