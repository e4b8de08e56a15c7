"""The three input paths give the same batches: float32 workers, uint8 workers + device finish, device decode.

The uint8 path must reproduce the float32 path exactly on the CPU (same random decisions, same operations in
the same order); the device-decode path runs here on the CPU (``torchvision.io.decode_jpeg`` accepts CPU
tensors), with the same decisions and the same decoder, so its batches are equal too. Corrupt files keep the
CPU path's policy in every path.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sppnet_exp.data import ImageDecodeError, ImageNetDataModule, ensure_generated
from sppnet_exp.data.batches import batch_nbytes, finish_batch
from sppnet_exp.data.device_decode import EncodedBatch, decode_jpegs, device_decodable_size

GEOMETRY = {"resize": 40, "crop": 32, "full_resize": 36, "batch_size": 8, "eval_batch_size": 3}


def _copy_tree(src: Path, dst: Path) -> Path:
    for p in src.rglob("*.JPEG"):
        out = dst / p.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(p.read_bytes())
    return dst


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small ImageNet-layout set with, besides JPEGs, a PNG, a CMYK JPEG and a grayscale JPEG per split."""
    gen = ensure_generated(tmp_path_factory.mktemp("gen"), "imagenet", 3, 6, 3, seed=0)
    root = _copy_tree(gen, tmp_path_factory.mktemp("mixed"))
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        cls = sorted((root / split).iterdir())[0]
        arr = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
        Image.fromarray(arr).save(cls / "odd_png.png")
        Image.fromarray(arr).convert("CMYK").save(cls / "odd_cmyk.JPEG", quality=90)
        Image.fromarray(arr).convert("L").save(cls / "odd_gray.JPEG", quality=90)
    return root


def _dm(root: Path, seed: int = 3, **kw: object) -> ImageNetDataModule:
    dm = ImageNetDataModule(root=str(root), eval_views=["10view", "center", "full"], num_workers=0, seed=seed, **kw)
    dm.setup()
    return dm


def _train_batches(dm: ImageNetDataModule) -> list:
    out = []  # augmentations are seeded per (data module seed, epoch, image): no global RNG to set
    for batch in dm.train_dataloader():
        if isinstance(batch, EncodedBatch):
            batch = batch.decode("cpu")
        out.append(finish_batch(batch))
    return out


def _eval_batches(dm: ImageNetDataModule) -> dict[str, list]:
    out = {}
    for view, loader in zip(dm.eval_views, dm.test_dataloader()):
        out[view] = [finish_batch(b.decode("cpu") if isinstance(b, EncodedBatch) else b) for b in loader]
    return out


def _assert_same(a: list, b: list) -> None:
    assert len(a) == len(b) and a
    for x, y in zip(a, b):
        assert len(x) == len(y)
        for u, v in zip(x, y):
            if isinstance(u, torch.Tensor):
                assert u.dtype == v.dtype and u.shape == v.shape
                assert torch.equal(u, v), (u - v).abs().max()
            else:
                assert u == v


@pytest.mark.parametrize("decode", ["cpu", "gpu"])
def test_uint8_and_device_decode_paths_give_the_float32_batches(mixed_root: Path, decode: str) -> None:
    f32 = _dm(mixed_root, worker_output="float32", **GEOMETRY)
    other = _dm(mixed_root, worker_output="uint8", decode=decode, **GEOMETRY)
    ref = _train_batches(f32)
    assert ref[0][0].dtype == torch.float32 and ref[0][0].shape == (8, 3, 32, 32)
    got = _train_batches(other)
    _assert_same(got, ref)  # bit for bit: same crops, flips and lighting, same arithmetic
    reseeded = _dm(mixed_root, seed=4, worker_output="uint8", decode=decode, **GEOMETRY)
    assert not torch.equal(_train_batches(reseeded)[0][0], ref[0][0])  # the test can tell seeds apart
    ref_eval, got_eval = _eval_batches(f32), _eval_batches(other)
    for view in ("10view", "center", "full"):
        _assert_same(got_eval[view], ref_eval[view])
    assert ref_eval["10view"][0][0].shape[1:] == (10, 3, 32, 32)


def test_uint8_path_with_workers_matches_float32_and_ships_a_quarter_of_the_bytes(mixed_root: Path) -> None:
    common = {**GEOMETRY, "num_workers": 2, "persistent_workers": False}
    f32 = ImageNetDataModule(root=str(mixed_root), worker_output="float32", seed=1, **common)
    u8 = ImageNetDataModule(root=str(mixed_root), worker_output="uint8", seed=1, **common)
    ref = list(f32.train_dataloader())  # two workers, each image's decisions drawn from its own seed
    raw = list(u8.train_dataloader())
    _assert_same([finish_batch(b) for b in raw], ref)
    images, _, _, aug = raw[0]
    assert images.dtype == torch.uint8 and aug["crop"].shape == (8, 2) and aug["lighting"].shape == (8, 3)
    assert aug["flip"].dtype == torch.bool
    flips = torch.cat([b[3]["flip"] for b in raw])
    assert 0 < int(flips.sum()) < len(flips)  # both decisions occur
    ratio = batch_nbytes(ref[0]) / batch_nbytes(raw[0])
    assert 3.9 < ratio < 4.0  # 4x for the pixels, a few bytes per image for the decisions


def test_device_decode_path_runs_inside_a_trainer_on_cpu(mixed_root: Path) -> None:
    """``data.decode=gpu`` through Lightning on the CPU: the module's hooks decode, crop and normalise."""
    import lightning as L

    from sppnet_exp.classification.classifier import SPPClassifier

    dm = ImageNetDataModule(root=str(mixed_root), decode="gpu", eval_views=["10view", "full"], **GEOMETRY)
    dm.setup()
    module = SPPClassifier(
        model={"name": "zf5", "head": "spp", "levels": [2, 1], "width": 0.125, "input_size": 32},
        num_classes=dm.num_classes,
        sizes={"schedule": "fixed", "sizes": [32]},
        optim={"lr": 0.01, "scheduler": {"name": "step", "milestones": [10.0]}},
        eval_views=["10view", "full"],
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == len(dm.train_samples) // 8
    out = trainer.test(module, datamodule=dm, verbose=False)
    counts = {k: v for o in out for k, v in o.items() if k.endswith("/n")}
    assert counts == {"test/10view/n": len(dm.eval_samples), "test/full/n": len(dm.eval_samples)}


def test_device_decode_keeps_the_corrupt_file_policy(
    tmp_path: Path, mixed_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _copy_tree(mixed_root, tmp_path / "root")
    cls = sorted((root / "train").iterdir())[0]
    good = next(cls.glob("*.JPEG")).read_bytes()
    sos = good.find(b"\xff\xda")
    (cls / "corrupt.JPEG").write_bytes(b"not a jpeg at all" * 20)  # rejected in the worker
    (cls / "truncated.JPEG").write_bytes(good[: len(good) // 2])  # no EOI: decoded on the CPU in the worker
    (cls / "headonly.JPEG").write_bytes(good[:sos] + b"\xff\xd9")  # passes the header check, fails to decode
    assert device_decodable_size((cls / "headonly.JPEG").read_bytes()) is not None
    dm = ImageNetDataModule(root=str(root), decode="gpu", **{**GEOMETRY, "batch_size": 64})
    dm.setup()
    with caplog.at_level("WARNING"):
        [batch] = list(dm.train_dataloader())
        images, targets, skipped, _ = batch.decode("cpu")
    assert skipped == 3 and images.shape[0] == len(dm.train_samples) - 3 == targets.shape[0]
    for name in ("corrupt.JPEG", "truncated.JPEG", "headonly.JPEG"):
        assert name in caplog.text
    vcls = sorted((root / "val").iterdir())[0]
    (vcls / "headonly.JPEG").write_bytes(good[:sos] + b"\xff\xd9")
    dm = ImageNetDataModule(root=str(root), decode="gpu", eval_views=["center"], **GEOMETRY)
    with pytest.raises(ImageDecodeError, match="headonly.JPEG"):
        for b in dm.val_dataloader():
            b.decode("cpu")


def test_decode_jpegs_retries_one_by_one() -> None:
    arr = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    good = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
    bad = torch.frombuffer(bytearray(b"\xff\xd8 broken \xff\xd9"), dtype=torch.uint8)
    out = decode_jpegs([good, bad, good], torch.device("cpu"))
    assert out[1] is None and out[0].shape == (3, 20, 30) and torch.equal(out[0], out[2])
    assert decode_jpegs([], torch.device("cpu")) == []


def test_bad_path_settings_fail_clearly(mixed_root: Path) -> None:
    with pytest.raises(ValueError, match="worker_output"):
        ImageNetDataModule(root=str(mixed_root), worker_output="float16")
    with pytest.raises(ValueError, match="decode=gpu .* worker_output=uint8"):
        ImageNetDataModule(root=str(mixed_root), worker_output="float32", decode="gpu")
