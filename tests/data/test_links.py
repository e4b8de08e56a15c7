"""Datasets whose split or class folders are symbolic links are read like real folders, in every layout.

``Path.rglob`` does not follow linked folders (Python < 3.13): a LabelImg set with linked ``train/`` and
``test/`` folders failed with "no objects in any annotation file". Each test builds the real folders in one
place and the dataset from links to them; link cycles must neither hang nor duplicate files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sppnet_exp.data import Caltech101DataModule, ImageNetDataModule, VOC2007ClsDataModule
from sppnet_exp.data.detection import discover_classes, load_split
from sppnet_exp.data.folders import walk_files

XML = (
    "<annotation><filename>{f}</filename><size><width>40</width><height>30</height><depth>3</depth></size>"
    "<object><name>{c}</name><difficult>0</difficult><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>20</xmax>"
    "<ymax>25</ymax></bndbox></object></annotation>"
)


def _jpeg(path: Path, seed: int = 0, h: int = 30, w: int = 40) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, quality=90)
    return path


def _link(target: Path, link: Path) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link, target_is_directory=target.is_dir())
    return link


def test_walk_follows_links_and_survives_cycles(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "a").mkdir(parents=True)
    (real / "a" / "x.xml").write_text("<a/>")
    (real / "b.XML").write_text("<b/>")
    root = tmp_path / "root"
    _link(real / "a", root / "split_a")  # a linked folder
    _link(real / "b.XML", root / "b.XML")  # a linked file
    _link(root, root / "split_a_again" / "loop")  # a cycle back to the root
    _link(real / "a", root / "second_link_to_a")  # the same real folder twice
    _link(tmp_path / "missing", root / "dangling")
    found = walk_files(root, (".xml",))
    # Each real file once (the first link in name order wins), the cycle ended, the dangling link ignored.
    assert [p.relative_to(root).as_posix() for p in found] == ["b.XML", "second_link_to_a/x.xml"]


def test_labelimg_with_linked_split_folders(tmp_path: Path) -> None:
    real = tmp_path / "disk2"
    for split, stems in (("train", [("c1", "ace"), ("c2", "king")]), ("test", [("c3", "queen")])):
        for i, (stem, cls) in enumerate(stems):
            _jpeg(real / split / f"{stem}.jpg", seed=i)
            (real / split / f"{stem}.xml").write_text(XML.format(f=f"{stem}.jpg", c=cls))
    root = tmp_path / "cards" / "images"
    _link(real / "train", root / "train")
    _link(real / "test", root / "test")
    _link(tmp_path / "cards", root / "test" / "up")  # a cycle inside a linked split: ends, adds nothing
    assert discover_classes(tmp_path / "cards") == ["ace", "king", "queen"]
    train = load_split(tmp_path / "cards", "trainval")
    assert train.image_ids == ["c1", "c2"] and train.stats["objects"] == 2
    assert load_split(tmp_path / "cards", "test").image_ids == ["c3"]


def test_voc_detection_and_classification_with_linked_folders(tmp_path: Path) -> None:
    real = tmp_path / "real"
    for i, (stem, cls) in enumerate((("000001", "cat"), ("000002", "dog"))):
        _jpeg(real / "JPEGImages" / f"{stem}.jpg", seed=i)
        (real / "Annotations").mkdir(parents=True, exist_ok=True)
        (real / "Annotations" / f"{stem}.xml").write_text(XML.format(f=f"{stem}.jpg", c=cls))
    (real / "ImageSets" / "Main").mkdir(parents=True)
    (real / "ImageSets" / "Main" / "trainval.txt").write_text("000001\n")
    (real / "ImageSets" / "Main" / "test.txt").write_text("000002\n")
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets"):
        _link(real / sub, voc / sub)
    split = load_split(tmp_path / "VOCdevkit", "trainval")
    assert split.layout == "voc" and split.classes == ["cat", "dog"] and split.image_ids == ["000001"]
    whole = tmp_path / "linked_devkit"
    _link(tmp_path / "VOCdevkit", whole)  # the whole devkit folder a link too
    dm = VOC2007ClsDataModule(root=str(whole), resize=24, crop=16, full_resize=24, batch_size=2)
    assert dm.class_names == ["cat", "dog"] and len(dm.train_samples) == 1 and len(dm.eval_samples) == 1


def test_imagenet_and_caltech_with_linked_split_and_class_folders(tmp_path: Path) -> None:
    real = tmp_path / "real"
    for c in ("n01", "n02"):
        for i in range(3):
            _jpeg(real / "train" / c / f"{c}_{i}.JPEG", seed=i)
            _jpeg(real / "val" / c / f"{c}_v{i}.JPEG", seed=10 + i)
    root = tmp_path / "ilsvrc"
    _link(real / "train", root / "train")  # a linked split folder
    for c in ("n01", "n02"):
        _link(real / "val" / c, root / "val" / c)  # linked class folders
    dm = ImageNetDataModule(root=str(root), resize=24, crop=16, full_resize=24, batch_size=2)
    assert dm.class_names == ["n01", "n02"] and len(dm.train_samples) == 6 and len(dm.eval_samples) == 6
    assert all(p.startswith(str(root)) for p, _ in dm.train_samples)  # paths keep the link, not the target

    cal = tmp_path / "caltech" / "101_ObjectCategories"
    for c in ("ant", "bee"):
        for i in range(5):
            _jpeg(real / "cal" / c / f"image_{i:04d}.jpg", seed=i)
        _link(real / "cal" / c, cal / c)
    dm = Caltech101DataModule(root=str(cal.parent), train_per_class=3, test_per_class=2, resize=24, crop=16)
    assert dm.class_names == ["ant", "bee"] and len(dm.train_samples) == 6 and len(dm.eval_samples) == 4


@pytest.mark.data
def test_real_playing_cards_through_linked_split_folders(shared_data: Path, tmp_path: Path) -> None:
    """The reported failure: the real LabelImg set, its train/ and test/ folders linked from elsewhere."""
    images = shared_data / "playing_cards" / "images"
    if not (images / "train").is_dir():
        pytest.skip(f"playing cards not found at {images}")
    root = tmp_path / "cards" / "images"
    for split in ("train", "test"):
        _link(images / split, root / split)
    assert discover_classes(tmp_path / "cards") == discover_classes(shared_data / "playing_cards")
    linked, direct = load_split(tmp_path / "cards", "test"), load_split(shared_data / "playing_cards", "test")
    assert linked.image_ids == direct.image_ids and linked.stats == direct.stats
    shutil.rmtree(root)  # removes the links only
    assert (images / "train").is_dir()
