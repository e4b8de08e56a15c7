"""The training file list is scanned once, cached on disk, reused by other modules/ranks, and invalidated by
changes of the folder tree (files added, removed or renamed, classes added, the devkit ground truth)."""

from __future__ import annotations

import gzip
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from sppnet_exp.data import Caltech101DataModule, ImageNetDataModule
from sppnet_exp.data.file_lists import cache_path, load_or_scan, tree_signature
from sppnet_exp.data.imagenet import scan_imagenet


def _jpeg(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, quality=90)
    return path


def _imagenet(root: Path, classes: tuple[str, ...] = ("n01", "n02"), per_class: int = 3) -> Path:
    for k, c in enumerate(classes):
        for i in range(per_class):
            _jpeg(root / "train" / c / f"{c}_{i}.JPEG", seed=10 * k + i)
            _jpeg(root / "val" / c / f"{c}_val_{i}.JPEG", seed=100 + 10 * k + i)
    return root


class _Counting(ImageNetDataModule):
    scans = 0

    def _scan(self, root: Path):  # noqa: ANN202
        type(self).scans += 1
        return super()._scan(root)


def _dm(root: Path, cache: Path, cls: type = _Counting) -> ImageNetDataModule:
    dm = cls(root=str(root), file_list_cache=str(cache), resize=24, crop=16, full_resize=24, batch_size=2)
    dm.setup()
    return dm


def test_scanned_once_then_read_from_the_cache(tmp_path: Path) -> None:
    root, cache = _imagenet(tmp_path / "in"), tmp_path / "runs" / "file_lists"
    _Counting.scans = 0
    first = _dm(root, cache)
    assert first.scan_source == "scan" and _Counting.scans == 1
    [cached] = list(cache.glob("imagenet-*.json.gz"))
    second = _dm(root, cache)
    assert second.scan_source == "cache" and _Counting.scans == 1  # no second scan
    assert second.train_samples == first.train_samples and second.eval_samples == first.eval_samples
    assert second.class_names == first.class_names == ["n01", "n02"]
    assert second.train_samples == scan_imagenet(root)[1]  # what a fresh scan gives
    assert b"n01_0.JPEG" in gzip.decompress(cached.read_bytes())
    assert str(root) not in gzip.decompress(cached.read_bytes()).decode().split('"train"')[1]  # stored relative


@pytest.mark.parametrize("change", ["add_file", "remove_file", "rename_file", "add_class", "val_file"])
def test_a_changed_folder_invalidates_the_cache(tmp_path: Path, change: str) -> None:
    root, cache = _imagenet(tmp_path / "in"), tmp_path / "cache"
    before = _dm(root, cache)
    if change == "add_file":
        _jpeg(root / "train" / "n02" / "n02_new.JPEG")
    elif change == "remove_file":
        (root / "train" / "n01" / "n01_1.JPEG").unlink()
    elif change == "rename_file":
        (root / "train" / "n01" / "n01_1.JPEG").rename(root / "train" / "n01" / "n01_9.JPEG")
    elif change == "add_class":
        _jpeg(root / "train" / "n03" / "n03_0.JPEG")
    else:
        _jpeg(root / "val" / "n01" / "n01_val_9.JPEG")
    after = _dm(root, cache)
    assert after.scan_source == "scan"
    assert (after.train_samples, after.eval_samples) != (before.train_samples, before.eval_samples)
    assert (after.train_samples, after.eval_samples) == scan_imagenet(root)[1:]
    assert _dm(root, cache).scan_source == "cache"  # and the new listing is cached in turn


def test_flat_val_ground_truth_is_part_of_the_key(tmp_path: Path) -> None:
    root = tmp_path / "in"
    for k, w in enumerate(("n001", "n002")):
        _jpeg(root / "train" / w / f"{w}_0.JPEG", seed=k)
    synsets = np.zeros((2,), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O")])
    synsets[0], synsets[1] = (1, "n001", "x"), (2, "n002", "y")
    devkit = root / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True)
    scipy.io.savemat(str(devkit / "meta.mat"), {"synsets": synsets})
    gt = devkit / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text("1\n2\n")
    for i in (1, 2):
        _jpeg(root / "val" / f"ILSVRC2012_val_{i:08d}.JPEG", seed=10 + i)
    a = _dm(root, tmp_path / "cache")
    assert [t for _, t in a.eval_samples] == [0, 1]
    gt.write_text("2\n1\n")  # edited in place: the folder's mtime may not change, the file's does
    b = _dm(root, tmp_path / "cache")
    assert b.scan_source == "scan" and [t for _, t in b.eval_samples] == [1, 0]


def test_caltech_split_settings_are_part_of_the_key(tmp_path: Path) -> None:
    base = tmp_path / "cal" / "101_ObjectCategories"
    for c in ("ant", "bee"):
        for i in range(6):
            _jpeg(base / c / f"image_{i:04d}.jpg", seed=i)
    kw = {"file_list_cache": str(tmp_path / "cache"), "train_per_class": 3, "resize": 24, "crop": 16}
    s0 = Caltech101DataModule(root=str(base.parent), split_seed=0, **kw)
    s0.setup()
    s1 = Caltech101DataModule(root=str(base.parent), split_seed=1, **kw)
    s1.setup()
    again = Caltech101DataModule(root=str(base.parent), split_seed=0, **kw)
    again.setup()
    assert s0.scan_source == s1.scan_source == "scan" and again.scan_source == "cache"
    assert set(s0.train_samples) != set(s1.train_samples) and again.train_samples == s0.train_samples
    assert len(list((tmp_path / "cache").glob("caltech101-*.json.gz"))) == 2


def test_other_ranks_wait_for_rank_zero_and_damaged_caches_are_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _imagenet(tmp_path / "in")
    params = {"dataset": "imagenet"}
    path = cache_path(tmp_path / "cache", "imagenet", root, params)
    scans: list[str] = []

    def scan(who: str):  # noqa: ANN202
        scans.append(who)
        return scan_imagenet(root)

    # Rank 0 writes the cache 0.5 s after rank 1 started waiting: rank 1 reads it instead of scanning.
    writer = threading.Timer(0.5, lambda: load_or_scan(path, root, params, lambda: scan("rank0")))
    writer.start()
    listing, source = load_or_scan(path, root, params, lambda: scan("rank1"), primary=False, wait_s=30, poll_s=0.05)
    writer.join()
    assert source == "cache" and scans == ["rank0"] and listing == scan_imagenet(root)
    # No rank 0 at all: a waiting rank gives up after wait_s and scans itself, saying so.
    path.unlink()
    with caplog.at_level("WARNING"):
        _, source = load_or_scan(path, root, params, lambda: scan("alone"), primary=False, wait_s=0.2, poll_s=0.05)
    assert source == "scan" and "no file list from rank 0" in caplog.text
    # A damaged file (e.g. a disk filled up in an earlier run) is never trusted.
    path.write_bytes(b"\x1f\x8b garbage")
    with caplog.at_level("WARNING"):
        _, source = load_or_scan(path, root, params, lambda: scan("again"))
    assert source == "scan" and "unreadable" in caplog.text
    assert load_or_scan(path, root, params, lambda: scan("never"))[1] == "cache"
    assert not list(path.parent.glob(".*.tmp"))  # atomic writes leave no temporary files behind


def test_signature_follows_links_and_sees_a_repointed_link(tmp_path: Path) -> None:
    a, b = _imagenet(tmp_path / "a"), _imagenet(tmp_path / "b", classes=("n01", "n02", "n03"))
    root = tmp_path / "root"
    root.mkdir()
    (root / "train").symlink_to(a / "train")
    (root / "val").symlink_to(a / "val")
    sig = tree_signature(root)
    assert sum(1 for e in sig if isinstance(e, list) and e[0].startswith("train/")) == 2  # class folders seen
    (root / "train").unlink()
    (root / "train").symlink_to(b / "train")
    assert tree_signature(root) != sig


def test_an_unwritable_cache_folder_costs_a_warning_not_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _imagenet(tmp_path / "in")
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level("WARNING"):
        dm = _dm(root, blocker / "file_lists")
    assert dm.scan_source == "scan" and len(dm.train_samples) == 6 and "cannot write the file list cache" in caplog.text
