"""Region proposals: selective search, filtering, the resumable cache, and the precomputed-proposal loaders."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.io
from PIL import Image, ImageDraw

from sppnet_exp.data.images import ImageDecodeError
from sppnet_exp.detection.proposals.cache import ProposalCache
from sppnet_exp.detection.proposals.filters import filter_proposals
from sppnet_exp.detection.proposals.formats import load_array_dir, load_rcnn_mat
from sppnet_exp.detection.proposals.selective_search import selective_search
from sppnet_exp.detection.proposals.sources import get_proposals


def _scene(seed: int, width: int = 160, height: int = 120) -> np.ndarray:
    """A small RGB image: noisy background with a few filled shapes."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(90, 140, size=(height, width, 3), dtype=np.uint8)
    img = Image.fromarray(bg)
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x1, y1 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 30))
        x2, y2 = x1 + int(rng.integers(15, 40)), y1 + int(rng.integers(12, 30))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x1, y1, x2, y2], fill=colour)
    return np.asarray(img)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [_scene(s, 160 + 8 * s, 120) for s in range(3)]


@pytest.fixture
def split(tmp_path: Path, images: list[np.ndarray]) -> SimpleNamespace:
    """Three image files and split-like records (image_id, path, width, height), as DetectionSplit has."""
    records = []
    for i, img in enumerate(images):
        path = tmp_path / "img" / f"im{i:02d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(img).save(path)
        records.append(SimpleNamespace(image_id=f"im{i:02d}", path=path, width=img.shape[1], height=img.shape[0]))
    return SimpleNamespace(records=records)


def _subset(split: SimpleNamespace, idx: list[int]) -> SimpleNamespace:
    return SimpleNamespace(records=[split.records[i] for i in idx])


# ------------------------------------------------------------------------------------------ selective search
def test_selective_search_boxes_are_1based_inside_the_image(images):
    img = images[0]
    h, w = img.shape[:2]
    boxes = selective_search(img, mode="fast")
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 20
    assert (boxes[:, 0] >= 1).all() and (boxes[:, 1] >= 1).all()
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    # the last merge of the hierarchy is the whole image: [1, 1, W, H] in 1-based inclusive pixels
    assert any(np.array_equal(b, [1, 1, w, h]) for b in boxes)
    assert (boxes == np.round(boxes)).all()


def test_selective_search_deterministic_per_image(images):
    a = selective_search(images[0], seed=0)
    selective_search(images[1], seed=5)  # other work in between must not change the result
    b = selective_search(images[0], seed=0)
    np.testing.assert_array_equal(a, b)
    c = selective_search(images[0], seed=3)
    # another seed changes the random ranking, not the set of regions
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(np.unique(a, axis=0), np.unique(c, axis=0))


def test_selective_search_modes_and_errors(images):
    img = images[1]
    fast, quality = selective_search(img, "fast"), selective_search(img, "quality")
    single, rcnn = selective_search(img, "single"), selective_search(img, "rcnn")
    assert len(quality) > len(fast) > len(single) > 0
    assert len(rcnn) > 0
    with pytest.raises(ValueError, match="mode"):
        selective_search(img, "slow")
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        selective_search(img.astype(np.float32))
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        selective_search(img[:, :, 0])


def test_selective_search_max_side_maps_back(images):
    img = images[2]
    h, w = img.shape[:2]
    small = selective_search(img, max_side=80)
    assert len(small) > 0
    assert (small[:, :2] >= 1).all() and (small[:, 2] <= w).all() and (small[:, 3] <= h).all()
    scale = max(h, w) / 80
    # the whole-image box of the shrunk image maps to (1, 1, (w'-1)*s+1, (h'-1)*s+1), near the far corner
    assert small[:, 2].max() > w - scale - 1e-3 and small[:, 3].max() > h - scale - 1e-3
    np.testing.assert_array_equal(selective_search(img, max_side=max(h, w)), selective_search(img))


# ----------------------------------------------------------------------------------------------------- filter
def test_filter_proposals_clip_min_size_dedup_cap():
    boxes = np.array(
        [
            [5, 5, 60, 40],  # kept
            [-10, 2, 30, 200],  # clipped to [1, 2, 30, 100]
            [10, 10, 20, 50],  # width 11 < 20 -> dropped
            [5, 5, 60, 40],  # exact duplicate of row 0 -> dropped
            [150, 150, 170, 190],  # outside the 100x100 image -> empty after clipping
            [50, 50, 99, 99],
            [1, 1, 100, 100],
        ],
        dtype=np.float32,
    )
    out = filter_proposals(boxes, 100, 100, min_size=20)
    np.testing.assert_array_equal(out, [[5, 5, 60, 40], [1, 2, 30, 100], [50, 50, 99, 99], [1, 1, 100, 100]])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(filter_proposals(boxes, 100, 100, min_size=20, max_proposals=2), out[:2])
    kept_all = filter_proposals(boxes, 100, 100)
    assert len(kept_all) == 5  # the duplicate and the empty box go, the thin one stays
    assert len(filter_proposals(boxes, 100, 100, dedup=False)) == 6
    assert filter_proposals(np.zeros((0, 4)), 10, 10).shape == (0, 4)


# ------------------------------------------------------------------------------------------------------ cache
def test_cache_one_file_per_image_and_reuse(tmp_path, split, images):
    cache = ProposalCache(tmp_path / "props", "ss_fast", {"seed": 0})
    stats = cache.compute(split, workers=0, progress=False)
    assert stats["computed"] == 3 and stats["reused"] == 0 and stats["images_per_s"] > 0
    files = sorted(p.name for p in cache.dir.glob("*.npy"))
    assert files == ["im00.npy", "im01.npy", "im02.npy"]
    meta = json.loads((cache.dir / "meta.json").read_text())
    assert meta["method"] == "ss_fast" and meta["params"]["seed"] == 0
    for rec, img in zip(split.records, images):
        np.testing.assert_array_equal(cache.get(rec.image_id), selective_search(img, "fast", seed=0))
    again = ProposalCache(tmp_path / "props", "ss_fast", {"seed": 0}).compute(split, workers=0, progress=False)
    assert again["computed"] == 0 and again["reused"] == 3
    with pytest.raises(KeyError, match="run compute"):
        ProposalCache(tmp_path / "props", "ss_fast").get("unknown")


def test_cache_worker_processes_match_in_process(tmp_path, split):
    serial = ProposalCache(tmp_path / "serial", "ss_fast", {"seed": 1})
    serial.compute(split, workers=0, progress=False)
    pooled = ProposalCache(tmp_path / "pooled", "ss_fast", {"seed": 1})
    stats = pooled.compute(split, workers=2, progress=False)
    assert stats["computed"] == 3 and stats["workers"] == 2 and stats["cpu_seconds_per_image"] > 0
    for rec in split.records:
        np.testing.assert_array_equal(pooled.get(rec.image_id), serial.get(rec.image_id))


def test_cache_errors_name_the_image(tmp_path, split):
    bad = tmp_path / "img" / "broken.jpg"
    bad.write_bytes(b"not an image")
    records = [*split.records, SimpleNamespace(image_id="broken", path=bad, width=10, height=10)]
    cache = ProposalCache(tmp_path / "props", "ss_fast")
    with pytest.raises(RuntimeError, match="broken.jpg"):  # from a worker process
        cache.compute(SimpleNamespace(records=records), workers=2, progress=False)
    with pytest.raises(ImageDecodeError, match="broken.jpg"):  # in this process
        cache.compute(SimpleNamespace(records=records[-1:]), workers=0, progress=False)
    wrong = SimpleNamespace(image_id="im00", path=split.records[0].path, width=99, height=99)
    with pytest.raises(ValueError, match="im00.png is 160x120 but its record says 99x99"):
        ProposalCache(tmp_path / "other", "ss_fast").compute(SimpleNamespace(records=[wrong]), workers=0)
    with pytest.raises(ValueError, match="cannot name a cache file"):
        cache.path("a/b")


def test_cache_read_filters_do_not_change_the_key(tmp_path, split):
    base = ProposalCache(tmp_path, "ss_fast")
    capped = ProposalCache(tmp_path, "ss_fast", {"max_proposals": 5, "min_size": 20})
    assert base.dir == capped.dir
    assert ProposalCache(tmp_path, "ss_fast", {"max_side": 100}).dir != base.dir
    assert ProposalCache(tmp_path, "ss_quality").dir != base.dir
    base.compute(_subset(split, [0]), workers=0, progress=False)
    full = base.get("im00")
    capped_boxes = capped.get("im00")
    expected = full[((full[:, 2] - full[:, 0] + 1) >= 20) & ((full[:, 3] - full[:, 1] + 1) >= 20)][:5]
    np.testing.assert_array_equal(capped_boxes, expected)
    np.testing.assert_array_equal(base.get("im00", max_proposals=7), full[:7])
    with pytest.raises(ValueError, match="unknown ProposalCache params"):
        ProposalCache(tmp_path, "ss_fast", {"cap": 3})
    with pytest.raises(ValueError, match="unknown proposal method"):
        ProposalCache(tmp_path, "edge_boxes")


def test_cache_resumes_after_a_kill(tmp_path, split):
    root = tmp_path / "props"
    reference = ProposalCache(tmp_path / "ref", "ss_fast")
    reference.compute(split, workers=0, progress=False)
    expected = {r.image_id: reference.get(r.image_id) for r in split.records}

    cache = ProposalCache(root, "ss_fast")
    first = cache.compute(_subset(split, [1]), workers=0, progress=False)  # run "killed" after one image
    assert first["computed"] == 1
    mtime = cache.path("im01").stat().st_mtime_ns
    stray = cache.dir / "im00.npy.tmp-999-deadbeef"  # half-written temp file of the killed run
    stray.write_bytes(b"\x93NUMPY partial")
    stats = ProposalCache(root, "ss_fast").compute(split, workers=0, progress=False)
    assert stats["computed"] == 2 and stats["reused"] == 1 and stats["corrupt"] == 0
    assert cache.path("im01").stat().st_mtime_ns == mtime  # not recomputed
    assert not stray.exists()

    # a lost file and a corrupt file: only those two are recomputed, the rest reused
    cache.path("im00").unlink()
    cache.path("im02").write_bytes(b"garbage, not an npy file")
    stats = ProposalCache(root, "ss_fast").compute(split, workers=0, progress=False)
    assert stats["computed"] == 2 and stats["reused"] == 1 and stats["corrupt"] == 1
    fresh = ProposalCache(root, "ss_fast")
    for image_id, boxes in expected.items():
        np.testing.assert_array_equal(fresh.get(image_id), boxes)


def test_cache_get_recomputes_a_corrupt_file_with_a_warning(tmp_path, split):
    cache = ProposalCache(tmp_path, "ss_fast")
    cache.compute(split, workers=0, progress=False)
    good = cache.get("im01")
    with open(cache.path("im01"), "r+b") as fh:  # truncate: the header survives, the data does not
        fh.truncate(100)
    with pytest.warns(RuntimeWarning, match="recomputing proposals of im01"):
        again = cache.get("im01")
    np.testing.assert_array_equal(again, good)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(cache.get("im01"), good)  # repaired on disk
    # a cache that never saw the split cannot recompute: clear error naming the file
    cache.path("im02").write_bytes(b"junk")
    with pytest.raises(ValueError, match="im02.npy"):
        ProposalCache(tmp_path, "ss_fast").get("im02")


def test_cache_detects_boxes_of_another_image(tmp_path, split):
    cache = ProposalCache(tmp_path, "ss_fast")
    cache.compute(_subset(split, [0]), workers=0, progress=False)
    np.save(cache.path("im00"), np.array([[1, 1, 500, 500]], dtype=np.float32))
    stats = ProposalCache(tmp_path, "ss_fast").compute(_subset(split, [0]), workers=0, progress=False)
    assert stats["corrupt"] == 1 and stats["computed"] == 1


# ---------------------------------------------------------------------------------------------------- loaders
def _write_rcnn_mat(path: Path, data: dict[str, np.ndarray]) -> None:
    """R-CNN layout: 1xN cells `images` (char) and `boxes` ([y1 x1 y2 x2] double, 1-based)."""
    ids = np.empty((1, len(data)), dtype=object)
    cells = np.empty((1, len(data)), dtype=object)
    for i, (image_id, xyxy) in enumerate(data.items()):
        ids[0, i] = image_id
        cells[0, i] = np.asarray(xyxy, dtype=np.float64)[:, [1, 0, 3, 2]] if len(xyxy) else np.zeros((0, 0))
    scipy.io.savemat(path, {"images": ids, "boxes": cells})


def test_load_rcnn_mat_round_trip(tmp_path):
    data = {
        "000005": np.array([[10, 20, 110, 220], [1, 1, 353, 500], [3, 4, 5, 6]], dtype=np.float32),
        "000007": np.array([[7, 8, 9, 10]], dtype=np.float32),
        "000009": np.zeros((0, 4), dtype=np.float32),
    }
    path = tmp_path / "voc_2007_test.mat"
    _write_rcnn_mat(path, data)
    loaded = load_rcnn_mat(path, ["000009", "000005", "000007"])
    assert list(loaded) == ["000009", "000005", "000007"]
    for image_id, boxes in data.items():
        assert loaded[image_id].dtype == np.float32
        np.testing.assert_array_equal(loaded[image_id], boxes)
    with pytest.raises(KeyError, match="2 of 3 image ids .*'000001', '000002'"):
        load_rcnn_mat(path, ["000001", "000005", "000002"])
    scipy.io.savemat(tmp_path / "other.mat", {"ids": np.zeros(3)})
    with pytest.raises(ValueError, match="other.mat: no variable 'images'"):
        load_rcnn_mat(tmp_path / "other.mat", ["000005"])
    with pytest.raises(FileNotFoundError, match="nope.mat"):
        load_rcnn_mat(tmp_path / "nope.mat", ["000005"])


def test_load_rcnn_mat_v73(tmp_path):
    path = tmp_path / "v73.mat"
    try:
        import h5py
    except ImportError:
        # without h5py a v7.3 file gets a clear error instead of scipy's NotImplementedError
        path.write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: x HDF5 schema 1.00 ." + b"\0" * 512)
        with pytest.raises(ValueError, match="v7.3 .*needs h5py"):
            load_rcnn_mat(path, ["a"])
        return
    boxes = {"a1": np.array([[2, 3, 40, 50], [1, 1, 9, 9]], dtype=np.float64), "b2": np.array([[5, 6, 7, 8]])}
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        ref_dt = h5py.special_dtype(ref=h5py.Reference)
        img_refs = np.empty((len(boxes), 1), dtype=object)
        box_refs = np.empty((len(boxes), 1), dtype=object)
        for i, (name, xyxy) in enumerate(boxes.items()):
            s = refs.create_dataset(f"s{i}", data=np.array([[ord(c)] for c in name], dtype=np.uint16))
            b = refs.create_dataset(f"b{i}", data=xyxy[:, [1, 0, 3, 2]].T)  # column-major: stored transposed
            img_refs[i, 0], box_refs[i, 0] = s.ref, b.ref
        f.create_dataset("images", data=img_refs, dtype=ref_dt)
        f.create_dataset("boxes", data=box_refs, dtype=ref_dt)
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file")
    loaded = load_rcnn_mat(path, ["b2", "a1"])
    for name, xyxy in boxes.items():
        np.testing.assert_array_equal(loaded[name], xyxy.astype(np.float32))


def test_load_array_dir_npy_txt_and_errors(tmp_path):
    d = tmp_path / "props"
    d.mkdir()
    np.save(d / "a.npy", np.array([[1, 2, 30, 40, 0.9], [5, 5, 9, 9, 0.1]], dtype=np.float64))
    (d / "b.txt").write_text("# x1 y1 x2 y2\n3 4 50 60\n7,8,9,10,0.5\n\n  11\t12  13 14\n")
    (d / "c.txt").write_text("")
    out = load_array_dir(d, ["a", "b", "c"])
    np.testing.assert_array_equal(out["a"], [[1, 2, 30, 40], [5, 5, 9, 9]])
    np.testing.assert_array_equal(out["b"], [[3, 4, 50, 60], [7, 8, 9, 10], [11, 12, 13, 14]])
    assert out["c"].shape == (0, 4) and all(v.dtype == np.float32 for v in out.values())

    with pytest.raises(KeyError, match="2 of 3 image ids .*'x', 'y'"):
        load_array_dir(d, ["a", "x", "y"])
    (d / "bad.txt").write_text("1 2 3 4\n1 2 3\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: expected 4 or 5 values"):
        load_array_dir(d, ["bad"])
    (d / "nan.txt").write_text("1 2 x 4\n")
    with pytest.raises(ValueError, match=r"nan\.txt:1: not a number"):
        load_array_dir(d, ["nan"])
    np.save(d / "shape.npy", np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"shape\.npy: expected a numeric \(K, 4\)"):
        load_array_dir(d, ["shape"])
    (d / "trunc.npy").write_bytes(b"\x93NUMPY")
    with pytest.raises(ValueError, match=r"trunc\.npy: cannot load"):
        load_array_dir(d, ["trunc"])
    (d / "flip.txt").write_text("10 10 5 20\n")
    with pytest.raises(ValueError, match=r"flip\.txt: 1 boxes with x2 < x1"):
        load_array_dir(d, ["flip"])


# --------------------------------------------------------------------------------------------------- dispatch
def test_get_proposals_sources(tmp_path, split, images):
    stats: dict = {}
    ss = get_proposals(split, cache_root=tmp_path / "cache", workers=0, progress=False, max_proposals=15, stats=stats)
    assert list(ss) == ["im00", "im01", "im02"] and stats["computed"] == 3
    for rec, img in zip(split.records, images):
        np.testing.assert_array_equal(ss[rec.image_id], selective_search(img)[:15])

    d = tmp_path / "dir"
    d.mkdir()
    for rec in split.records:
        np.save(d / f"{rec.image_id}.npy", np.array([[0, 0, 500, 500], [2, 2, 5, 5], [10, 10, 60, 50]]))
    out = get_proposals(split, source="array_dir", path=d, min_size=20)
    for rec in split.records:  # clipped to the image, small box dropped
        np.testing.assert_array_equal(out[rec.image_id], [[1, 1, rec.width, rec.height], [10, 10, 60, 50]])

    mat = tmp_path / "ss.mat"
    _write_rcnn_mat(mat, {r.image_id: np.array([[3, 3, 40, 30], [3, 3, 40, 30]]) for r in split.records})
    out = get_proposals(split, source="rcnn_mat", path=mat)
    assert all(np.array_equal(b, [[3, 3, 40, 30]]) for b in out.values())  # duplicate removed
    with pytest.raises(ValueError, match="needs a path"):
        get_proposals(split, source="array_dir")
    with pytest.raises(ValueError, match="unknown proposal source"):
        get_proposals(split, source="edge_boxes", path=d)


@pytest.mark.data
def test_selective_search_on_bccd(shared_data, tmp_path):
    from sppnet_exp.data.detection import load_split

    root = shared_data / "bccd" / "BCCD"
    if not (root / "JPEGImages").is_dir():
        pytest.skip(f"no BCCD images in {root}")
    split = load_split(root, "test").head(2)
    assert len(split) == 2
    stats: dict = {}
    out = get_proposals(split, cache_root=tmp_path, workers=2, progress=False, stats=stats)
    assert stats["computed"] == 2
    for i, rec in enumerate(split.records):
        boxes = out[rec.image_id]
        assert 300 < len(boxes) < 10000
        assert (boxes[:, :2] >= 1).all() and (boxes[:, 2] <= rec.width).all() and (boxes[:, 3] <= rec.height).all()
        img = split.load_image(i).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(boxes, selective_search(img))  # workers give the in-process result
    again: dict = {}
    capped = get_proposals(split, cache_root=tmp_path, workers=2, progress=False, max_proposals=100, stats=again)
    assert again["computed"] == 0 and again["reused"] == 2
    assert all(np.array_equal(capped[k], out[k][:100]) for k in out)


def test_load_fast_rcnn_demo_layout_and_detection(tmp_path):
    """Fast R-CNN's demo files: one ``<id>_boxes.mat`` per image, ``boxes`` 0-based x1 y1 x2 y2 -> 1-based."""
    folder = tmp_path / "demo"
    folder.mkdir()
    zero_based = {"000004": np.array([[0, 0, 39, 29], [5, 6, 50, 60]]), "000007": np.array([[10, 20, 30, 40]])}
    for image_id, b in zero_based.items():
        scipy.io.savemat(folder / f"{image_id}_boxes.mat", {"boxes": b.astype(np.float64)})
    for layout in ("auto", "fast_rcnn"):
        got = load_rcnn_mat(folder, ["000007", "000004"], layout=layout)
        for image_id, b in zero_based.items():
            np.testing.assert_array_equal(got[image_id], b + 1)
    one = load_rcnn_mat(folder / "000004_boxes.mat", ["000004"])
    np.testing.assert_array_equal(one["000004"], zero_based["000004"] + 1)
    with pytest.raises(KeyError, match="000009"):
        load_rcnn_mat(folder, ["000004", "000009"])
    # R-CNN's layout is told apart by its variables: images + boxes cells of y1 x1 y2 x2, 1-based
    mat = tmp_path / "voc_2007_test.mat"
    _write_rcnn_mat(mat, {"000004": np.array([[1, 2, 30, 40]])})
    np.testing.assert_array_equal(load_rcnn_mat(mat, ["000004"])["000004"], [[1, 2, 30, 40]])
    with pytest.raises(ValueError, match="layout"):
        load_rcnn_mat(mat, ["000004"], layout="caffe")
