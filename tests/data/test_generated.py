"""Tests of the embedded generated dataset: determinism, reuse, layouts, varied sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from sppnet_exp.data.generated import SPEC_FILE, class_names, ensure_generated, paint_object
from sppnet_exp.data.motifs import MOTIFS, motif_for, motif_mask, pattern_colour

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


def _spectrum(name: str, mirror: bool = False, n: int = 64, draws: int = 8) -> np.ndarray:
    """Mean power spectrum (phase-invariant) of motif ``name`` over random phases, optionally mirrored (u -> -u)."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float64)
    inverse = np.diag([-2.0 / n if mirror else 2.0 / n, 2.0 / n])  # n pixels = the object's unit span of 2
    total = np.zeros((n, n))
    for _ in range(draws):
        mask = motif_mask(name, xs, ys, inverse, np.array([n / 2, n / 2]), rng).astype(np.float64)
        total += np.abs(np.fft.fft2(mask - mask.mean())) ** 2
    return total / total.sum()


def test_motifs_cover_part_of_the_object_and_survive_the_flip() -> None:
    """Each class's cue covers a good part of its object, and a horizontal flip (training and 10-view test) leaves
    every motif closer to itself than to any other motif, so no flipped object shows another class's cue."""
    names = list(MOTIFS)
    assert len(set(motif_for(c) for c in range(10))) == 10  # ten classes, ten different motifs
    spectra = {m: _spectrum(m) for m in names}
    for m in names:
        rng = np.random.default_rng(1)
        ys, xs = np.mgrid[0:64, 0:64].astype(np.float64)
        cover = motif_mask(m, xs, ys, np.diag([1 / 32, 1 / 32]), np.array([32.0, 32.0]), rng).mean()
        assert 0.15 < cover < 0.85, (m, cover)
        flipped = _spectrum(m, mirror=True)
        own = np.abs(flipped - spectra[m]).sum()
        for other in names:
            if other != m:
                assert own < np.abs(flipped - spectra[other]).sum(), (m, other)


def test_painted_object_shows_its_motif_and_moves_with_it() -> None:
    """Inside the mask the object has two colours (its own and the motif's), none outside; the motif is drawn in
    the object's coordinates, so moving the object moves the pattern with it."""
    h = w = 80
    arr = np.zeros((h, w, 3), dtype=np.float32)
    mask = np.zeros((h, w), dtype=bool)
    mask[10:50, 10:50] = True
    col = np.array([220.0, 200.0, 40.0])
    mat = np.diag([20.0, 20.0])
    shade = np.zeros((h, 1, 1), dtype=np.float32)
    out = paint_object(arr, mask, col, shade, 0, mat, np.array([30.0, 30.0]), np.random.default_rng(5))
    inside = {tuple(p) for p in out[mask].round().astype(int)}
    assert inside == {tuple(col.astype(int)), tuple(pattern_colour(col).round().astype(int))}
    assert not out[~mask].any()
    moved = paint_object(
        arr, np.roll(mask, (7, 11), (0, 1)), col, shade, 0, mat, np.array([41.0, 37.0]), np.random.default_rng(5)
    )
    assert np.array_equal(np.roll(out, (7, 11), (0, 1)), moved)
