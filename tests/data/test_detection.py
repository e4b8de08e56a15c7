"""Detection data: VOC / LabelImg parsing with real-world quirks, generated VOC scenes, the DataModule."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sppnet_exp.data.detection import (
    STAT_KEYS,
    DetectionDataModule,
    detect_layout,
    discover_classes,
    load_split,
    read_voc_xml,
)
from sppnet_exp.data.generated import class_names
from sppnet_exp.data.generated_det import ensure_generated_voc


# ----- helpers ----------------------------------------------------------------------------------------------------
def _xml(
    filename: str | None,
    size: tuple[int, int] | None,
    objects: list[tuple],
    path: str | None = None,
) -> str:
    """VOC XML; objects are ``(name, (x1, y1, x2, y2), difficult, truncated)`` (flags None: tag left out)."""
    parts = ["<annotation>", "<folder>JPEGImages</folder>"]
    if filename is not None:
        parts.append(f"<filename>{filename}</filename>")
    if path is not None:
        parts.append(f"<path>{path}</path>")
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for name, box, difficult, truncated in objects:
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose>")
        if truncated is not None:
            parts.append(f"<truncated>{int(truncated)}</truncated>")
        if difficult is not None:
            parts.append(f"<difficult>{int(difficult)}</difficult>")
        x1, y1, x2, y2 = box
        parts.append(f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")
    parts.append("</annotation>")
    return "\n".join(parts)


def _image(path: Path, w: int, h: int, mode: str = "RGB", fmt: str = "JPEG", seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    if mode == "RGBA":
        arr[..., 3] = 255
    img = Image.fromarray(arr[..., 0] if mode == "L" else arr, mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)


def _voc(tmp: Path) -> Path:
    """A small VOC dataset inside ``tmp/VOCdevkit/VOC2007`` with one quirk or more per image."""
    voc = tmp / "VOCdevkit" / "VOC2007"
    ann, jpg, sets = voc / "Annotations", voc / "JPEGImages", voc / "ImageSets" / "Main"
    for d in (ann, jpg, sets):
        d.mkdir(parents=True)
    # a: size 0x0 in the XML; difficult+truncated box; zero-area box; a box that sticks out (clipped)
    _image(jpg / "a.jpg", 40, 30)
    (ann / "a.xml").write_text(
        _xml(
            "a.jpg",
            (0, 0),
            [("cat", (2, 3, 20, 25), 1, 1), ("dog", (10, 10, 10, 20), 0, 0), ("cat", (30, 5, 60, 40), 0, 0)],
            path="C:\\Users\\me\\VOC\\a.jpg",
        )
    )
    # b: an RGBA PNG named .jpg; the XML says a wrong size; no <difficult>/<truncated> tags; float coordinates
    _image(jpg / "b.jpg", 50, 20, mode="RGBA", fmt="PNG")
    (ann / "b.xml").write_text(_xml("b.jpg", (100, 100), [("dog", (1.0, 1.0, 50.0, 20.0), None, None)]))
    # c: grayscale, upper-case extension on disk; inverted box and a box fully outside the image
    _image(jpg / "c.JPG", 30, 30, mode="L")
    (ann / "c.xml").write_text(
        _xml(
            "c.jpg",
            (30, 30),
            [("cat", (20, 5, 10, 15), 0, 0), ("dog", (100, 100, 120, 120), 0, 0), ("dog", (1, 1, 8, 9), 0, 0)],
        )
    )
    # d (test): a PNG whose XML <filename> has the wrong extension; a class that only the test split has
    _image(jpg / "d.png", 32, 24, fmt="PNG")
    (ann / "d.xml").write_text(_xml("d.jpeg", (32, 24), [("horse", (3, 4, 30, 20), 0, 0)]))
    (sets / "trainval.txt").write_text("a\nb\nc\na\n")
    (sets / "test.txt").write_text("d\n")
    return voc


def _card_set(folder: Path, names: list[tuple[str, str]], upper: bool = True) -> None:
    """LabelImg files in ``folder``: (stem, class) pairs, XML beside an upper-case ``.JPG``."""
    for i, (stem, cls) in enumerate(names):
        ext = ".JPG" if upper else ".jpg"
        _image(folder / f"{stem}{ext}", 36, 48, seed=i)
        xml = _xml(f"{stem}{ext}", (36, 48), [(cls, (5, 6, 30, 40), 0, 0)], path=f"C:\\cards\\train\\{stem}{ext}")
        (folder / f"{stem}.xml").write_text(xml)


# ----- VOC layout -----------------------------------------------------------------------------------------------
def test_voc_quirks_are_repaired_and_counted(tmp_path: Path) -> None:
    voc = _voc(tmp_path)
    assert detect_layout(tmp_path / "VOCdevkit") == "voc"
    split = load_split(tmp_path / "VOCdevkit", "trainval")  # the single VOC folder below the root is found
    assert split.root == voc and split.layout == "voc"
    assert split.classes == ["cat", "dog", "horse"]  # discovered over all splits (horse is only in test)
    assert [r.image_id for r in split.records] == ["a", "b", "c"]  # ImageSets order, duplicate dropped
    a, b, c = split.records
    assert (a.width, a.height) == (40, 30)  # XML said 0x0
    assert a.boxes.dtype == np.float32 and a.labels.dtype == np.int64
    np.testing.assert_array_equal(a.boxes, [[2, 3, 20, 25], [30, 5, 40, 30]])  # zero-area dropped; clipped
    np.testing.assert_array_equal(a.labels, [0, 0])
    np.testing.assert_array_equal(a.difficult, [True, False])
    np.testing.assert_array_equal(a.truncated, [True, False])
    assert (b.width, b.height) == (50, 20)  # XML said 100x100
    np.testing.assert_array_equal(b.boxes, [[1, 1, 50, 20]])
    assert not b.difficult.any() and not b.truncated.any()
    assert c.path.name == "c.JPG" and (c.width, c.height) == (30, 30)
    np.testing.assert_array_equal(c.boxes, [[1, 1, 8, 9]])
    np.testing.assert_array_equal(c.labels, [1])
    assert split.stats == {
        **dict.fromkeys(STAT_KEYS, 0),
        "images": 3,
        "objects": 4,
        "difficult_boxes": 1,
        "truncated_boxes": 1,
        "zero_area_boxes": 1,
        "inverted_boxes": 1,
        "outside_boxes": 1,
        "clipped_boxes": 1,
        "size_fixed": 2,
        "duplicate_ids": 1,
    }
    for i, (h, w) in enumerate([(30, 40), (20, 50), (30, 30)]):
        img = split.load_image(i)
        assert img.dtype == torch.uint8 and tuple(img.shape) == (3, h, w)
    gray = split.load_image(2)
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    test = load_split(voc, "test")
    assert test.records[0].path.name == "d.png" and test.classes == split.classes
    np.testing.assert_array_equal(test.records[0].labels, [2])


def test_given_classes_drop_and_count_others(tmp_path: Path) -> None:
    voc = _voc(tmp_path)
    split = load_split(voc, "trainval", classes=["dog", "cat"], layout="voc")
    assert split.classes == ["dog", "cat"]
    np.testing.assert_array_equal(split.records[0].labels, [1, 1])
    np.testing.assert_array_equal(split.records[1].labels, [0])
    test = load_split(voc, "test", classes=["dog", "cat"])
    assert test.stats["unknown_class_boxes"] == 1 and test.stats["empty_images"] == 1
    assert len(test.records[0].boxes) == 0 and test.records[0].boxes.shape == (0, 4)
    with pytest.raises(ValueError, match="distinct"):
        load_split(voc, "trainval", classes=["dog", "dog"])


MALFORMED = {
    "parse": ("<annotation><size><width>10</width></size", "XML parse error"),
    "root": ("<labels><object/></labels>", "root element is <labels>"),
    "no_bndbox": ("<annotation><object><name>cat</name></object></annotation>", "no <bndbox>"),
    "no_name": ("<annotation><object><bndbox/></object></annotation>", "object 1 has no <name>"),
    "no_xmax": (
        "<annotation><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><ymax>5</ymax></bndbox>"
        "</object></annotation>",
        r"object 1 \(cat\) has no <bndbox><xmax>",
    ),
    "non_numeric": (
        "<annotation><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>"
        "<ymax>five</ymax></bndbox></object></annotation>",
        r"<bndbox><ymax> is not a number: 'five'",
    ),
    "bad_size": ("<annotation><size><width>wide</width><height>3</height></size></annotation>", "<size><width>"),
    "bad_flag": (
        "<annotation><object><name>cat</name><difficult>maybe</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>",
        "<difficult>",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_xml_names_file_and_field(tmp_path: Path, case: str) -> None:
    voc = _voc(tmp_path)
    text, field = MALFORMED[case]
    (voc / "Annotations" / "b.xml").write_text(text)
    with pytest.raises(ValueError, match=field) as info:
        load_split(voc, "trainval", classes=["cat", "dog"])
    assert "b.xml" in str(info.value)
    with pytest.raises(ValueError, match="b.xml"):
        read_voc_xml(voc / "Annotations" / "b.xml")


def test_missing_files_are_named(tmp_path: Path) -> None:
    voc = _voc(tmp_path)
    (voc / "JPEGImages" / "b.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"b\.xml: image not found.*'b\.jpg'"):
        load_split(voc, "trainval")
    with pytest.raises(FileNotFoundError, match="val.txt"):
        load_split(voc, "val")
    (voc / "ImageSets" / "Main" / "test.txt").write_text("d\nzz\n")
    with pytest.raises(FileNotFoundError, match=r"lists 'zz'.*zz\.xml"):
        load_split(voc, "test")


# ----- LabelImg layouts -----------------------------------------------------------------------------------------
def test_labelimg_beside_images_with_split_folders(tmp_path: Path) -> None:
    root = tmp_path / "cards" / "images"
    _card_set(root / "train", [("IMG_3", "king"), ("IMG_1", "ace"), ("IMG_2", "king")])
    _card_set(root / "test", [("IMG_9", "queen")], upper=False)
    (root / "train" / "IMG_7.JPG").write_bytes((root / "train" / "IMG_1.JPG").read_bytes())  # no XML
    assert detect_layout(tmp_path / "cards") == "labelimg"
    train = load_split(tmp_path / "cards", "trainval")  # trainval -> train/, found one level down
    assert train.layout == "labelimg" and train.root == root / "train"
    assert train.classes == ["ace", "king", "queen"]  # over both splits
    assert train.image_ids == ["IMG_1", "IMG_2", "IMG_3"]  # sorted by file name
    assert [r.path.name for r in train.records] == ["IMG_1.JPG", "IMG_2.JPG", "IMG_3.JPG"]
    np.testing.assert_array_equal([int(r.labels[0]) for r in train.records], [0, 1, 1])
    np.testing.assert_array_equal(train.records[0].boxes, [[5, 6, 30, 40]])
    assert train.stats["unannotated_images"] == 1 and train.stats["images"] == 3
    test = load_split(root, "test", layout="labelimg")
    assert test.image_ids == ["IMG_9"] and test.classes == train.classes
    assert tuple(test.load_image(0).shape) == (3, 48, 36)
    assert train.index_of("IMG_3") == 2


def test_labelimg_images_and_annotations_folders(tmp_path: Path) -> None:
    root = tmp_path / "set"
    for stem, cls in (("b", "cup"), ("a", "pen")):
        _image(root / "images" / f"{stem}.png", 20, 20, fmt="PNG")
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"{stem}.xml").write_text(_xml(f"{stem}.png", (20, 20), [(cls, (2, 2, 9, 9), 0, 0)]))
    assert detect_layout(root) == "labelimg"
    split = load_split(root, "test")  # no split folders: the whole folder
    assert split.image_ids == ["a", "b"] and split.classes == ["cup", "pen"]
    assert split.stats["objects"] == 2
    # split folders inside images/ and annotations/
    for sub in ("images", "annotations"):
        shutil.copytree(root / sub, tmp_path / "nested" / sub / "test")
    (tmp_path / "nested" / "annotations" / "test" / "b.xml").unlink()
    nested = load_split(tmp_path / "nested", "test")
    assert nested.image_ids == ["a"] and nested.root == tmp_path / "nested" / "annotations" / "test"
    assert nested.classes == ["pen"]


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no detection dataset"):
        detect_layout(tmp_path)
    voc = _voc(tmp_path)
    assert detect_layout(tmp_path) == "voc"  # two levels down: VOCdevkit/VOC2007
    shutil.copytree(voc, voc.parent / "VOC2012")
    with pytest.raises(ValueError, match="several datasets.*VOC2007.*VOC2012"):
        detect_layout(voc.parent)
    with pytest.raises(FileNotFoundError, match="expected an XML beside each image"):
        load_split(voc / "ImageSets", layout="labelimg")
    with pytest.raises(ValueError, match="layout must be"):
        load_split(voc, layout="coco")


# ----- generated scenes ------------------------------------------------------------------------------------------
GEN = {"num_classes": 4, "trainval": 16, "test": 8, "max_objects": 6, "seed": 3}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_generated_voc(tmp_path_factory.mktemp("gen"), **GEN)


def test_generated_voc_layout_and_content(generated: Path) -> None:
    assert generated.name.startswith("voc-4c-")
    assert detect_layout(generated) == "voc"
    main = generated / "ImageSets" / "Main"
    assert {p.name for p in main.iterdir()} == {"trainval.txt", "train.txt", "val.txt", "test.txt"}
    assert len(main.joinpath("trainval.txt").read_text().split()) == 16
    assert len(list((generated / "JPEGImages").glob("*.jpg"))) == 24
    assert set(discover_classes(generated)) <= set(class_names(4))
    ann = read_voc_xml(generated / "Annotations" / "000000.xml")
    assert ann.filename == "000000.jpg" and ann.width > 0 and ann.objects
    difficult = truncated = 0
    for name in ("trainval", "test"):
        split = load_split(generated, name, classes=class_names(4))
        assert split.stats["size_fixed"] == split.stats["clipped_boxes"] == split.stats["zero_area_boxes"] == 0
        assert split.stats["empty_images"] == 0
        assert all(1 <= len(r.boxes) <= 6 for r in split.records)
        assert all(min(r.width, r.height) >= 180 for r in split.records)
        difficult += split.stats["difficult_boxes"]
        truncated += split.stats["truncated_boxes"]
        for r in split.records:
            for box, trunc in zip(r.boxes, r.truncated):
                on_border = box[0] == 1 or box[1] == 1 or box[2] == r.width or box[3] == r.height
                assert on_border or not trunc  # a truncated object is cut by the border
    assert difficult > 0 and truncated > 0


def test_generated_voc_is_deterministic_and_reused(generated: Path, tmp_path: Path) -> None:
    stamp = (generated / "spec.json").stat().st_mtime_ns
    assert ensure_generated_voc(generated.parent, **GEN) == generated
    assert (generated / "spec.json").stat().st_mtime_ns == stamp
    # the same (seed, split, index) gives the same scene, whatever the split sizes
    other = ensure_generated_voc(tmp_path, **{**GEN, "trainval": 2, "test": 1})
    assert other.name != generated.name
    for rel in ("JPEGImages/000001.jpg", "Annotations/000001.xml", "Annotations/100000.xml"):
        assert (other / rel).read_bytes() == (generated / rel).read_bytes()
    reseeded = ensure_generated_voc(tmp_path, **{**GEN, "trainval": 2, "test": 1, "seed": 4})
    assert (reseeded / "JPEGImages/000001.jpg").read_bytes() != (other / "JPEGImages/000001.jpg").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


# ----- DataModule ---------------------------------------------------------------------------------------------------
def test_datamodule_generated_default(tmp_path: Path) -> None:
    dm = DetectionDataModule(
        root=None, gen={"num_classes": 3, "trainval": 4, "test": 3}, data_dir=tmp_path, max_images={"test": 2}
    )
    dm.prepare_data()
    dm.setup("fit")
    assert dm.classes == class_names(3) and dm.num_classes == 3
    assert len(dm.train) == 4 and len(dm.test) == 2
    assert dm.split("trainval") is dm.train and dm.split("test") is dm.test
    assert dm.test.stats["images"] == 2
    batches = list(dm.test_dataloader())
    assert [i for i, _ in batches] == [0, 1]
    index, img = batches[0]
    assert img.dtype == torch.uint8 and tuple(img.shape) == (3, dm.test[0].height, dm.test[0].width)
    assert len(list(dm.predict_dataloader())) == 2
    with pytest.raises(ValueError, match="max_images keys"):
        DetectionDataModule(max_images={"val": 3})


def test_datamodule_on_a_folder(tmp_path: Path) -> None:
    _voc(tmp_path)
    dm = DetectionDataModule(root=tmp_path / "VOCdevkit", classes=["cat", "dog"], max_images={"train": 2})
    assert dm.num_classes == 2  # set up on first use
    assert dm.train.image_ids == ["a", "b"] and dm.test.classes == ["cat", "dog"]
    assert dm.test.stats["unknown_class_boxes"] == 1


# ----- real data ----------------------------------------------------------------------------------------------------
@pytest.mark.data
def test_real_bccd(shared_data: Path) -> None:
    root = shared_data / "bccd"
    assert detect_layout(root) == "voc"
    train = load_split(root, "trainval")
    test = load_split(root, "test")
    assert train.classes == test.classes == ["Platelets", "RBC", "WBC"]
    assert (len(train), len(test)) == (292, 72)
    assert train.stats["zero_area_boxes"] + test.stats["zero_area_boxes"] == 2  # BloodImage_00338 and _00343
    assert train.stats["objects"] + test.stats["objects"] == 4888 - 2
    assert train.stats["size_fixed"] == 0 and train.stats["difficult_boxes"] == 0
    assert train.records[0].image_id == (root / "BCCD/ImageSets/Main/trainval.txt").read_text().split()[0]
    rec = train.records[0]
    assert (rec.width, rec.height) == (640, 480)
    assert tuple(train.load_image(0).shape) == (3, 480, 640)


@pytest.mark.data
def test_real_playing_cards(shared_data: Path) -> None:
    root = shared_data / "playing_cards" / "images"
    assert detect_layout(root) == "labelimg"
    train = load_split(root, "train")
    test = load_split(root, "test")
    assert train.classes == test.classes == ["ace", "jack", "king", "nine", "queen", "ten"]
    assert (len(train), len(test)) == (296, 67)
    assert (train.stats["objects"], test.stats["objects"]) == (527, 143)
    assert train.image_ids == sorted(train.image_ids)
    assert any(r.path.suffix == ".JPG" for r in train.records)
    rec = train.records[0]
    assert tuple(train.load_image(0).shape) == (3, rec.height, rec.width)
