"""Tests of the embedded generated dataset: determinism, reuse, layouts, varied sizes."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from sppnet_exp.data.generated import SPEC_FILE, class_names, ensure_generated

SMALL = {"num_classes": 3, "train_per_class": 6, "val_per_class": 3, "seed": 0}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.*")) if p.name != SPEC_FILE}


def test_imagenet_layout_and_determinism(tmp_path: Path) -> None:
    a = ensure_generated(tmp_path / "a", "imagenet", **SMALL)
    b = ensure_generated(tmp_path / "b", "imagenet", **SMALL)
    names = class_names(3)
    assert sorted(p.name for p in (a / "train").iterdir()) == names
    assert sorted(p.name for p in (a / "val").iterdir()) == names
    for c in names:
        assert len(list((a / "train" / c).glob("*.JPEG"))) == 6
        assert len(list((a / "val" / c).glob("*.JPEG"))) == 3
    fa, fb = _files(a), _files(b)
    assert fa.keys() == fb.keys() and fa == fb  # same seed -> identical bytes
    c = ensure_generated(tmp_path / "c", "imagenet", **{**SMALL, "seed": 1})
    assert _files(c) != fa


def test_caltech_layout(tmp_path: Path) -> None:
    root = ensure_generated(tmp_path, "caltech101", **SMALL)
    base = root / "101_ObjectCategories"
    assert sorted(p.name for p in base.iterdir()) == sorted([*class_names(3), "BACKGROUND_Google"])
    for c in class_names(3):
        assert len(list((base / c).glob("*.jpg"))) == 9
    assert len(list((base / "BACKGROUND_Google").glob("*.jpg"))) > 0


def test_reused_when_present_and_regenerated_for_other_spec(tmp_path: Path) -> None:
    root = ensure_generated(tmp_path, "imagenet", **SMALL)
    spec = json.loads((root / SPEC_FILE).read_text())
    assert spec["num_classes"] == 3 and spec["seed"] == 0
    marker = root / "train" / "marker.txt"
    marker.write_text("kept")
    again = ensure_generated(tmp_path, "imagenet", **SMALL)
    assert again == root and marker.exists()  # reused, not rewritten
    other = ensure_generated(tmp_path, "imagenet", **{**SMALL, "val_per_class": 2})
    assert other != root and root.exists()
    assert len(list((other / "val" / class_names(1)[0]).iterdir())) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    # A folder whose marker does not match is rebuilt.
    (root / SPEC_FILE).write_text("{}")
    rebuilt = ensure_generated(tmp_path, "imagenet", **SMALL)
    assert rebuilt == root and not marker.exists()


def test_varied_sizes_and_rgb(tmp_path: Path) -> None:
    root = ensure_generated(tmp_path, "imagenet", num_classes=4, train_per_class=10, val_per_class=0, seed=0)
    sizes, aspects = set(), set()
    for p in (root / "train").rglob("*.JPEG"):
        with Image.open(p) as im:
            assert im.mode == "RGB"
            w, h = im.size
        assert 120 <= min(w, h) <= 200 and 0.6 <= w / h <= 1.81
        sizes.add((w, h))
        aspects.add(round(w / h, 2))
    assert len(sizes) > 15 and len(aspects) >= 5
