"""R-CNN baseline: context warping, pool5 features of warped windows, whole-network fine-tuning."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sppnet_exp.data.transforms import normalize
from sppnet_exp.detection.features.warping import warp_geometry, warp_windows
from sppnet_exp.detection.features.windows import RCNNFeatures
from sppnet_exp.detection.finetune.rcnn import RCNNFineTuner, WarpedWindowDataset, finetune_rcnn, warp_batch
from sppnet_exp.detection.structures.roidb import build_windows
from sppnet_exp.models import build_model

GEOMS = ["paper", "rcnn"]
COLOURS = {1: (230, 40, 40), 2: (40, 200, 60)}  # class -> RGB


def _random_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _crop_resize(image: torch.Tensor, box: list[int], size: int) -> torch.Tensor:
    x1, y1, x2, y2 = box
    crop = normalize(image)[None, :, y1 - 1 : y2, x1 - 1 : x2]
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("geometry", GEOMS)
def test_warp_without_padding_is_resize_of_crop(geometry: str) -> None:
    image = _random_image(60, 80)
    box = [11, 21, 50, 50]  # 40 x 30 pixels
    # Shrinking: exactly crop-then-bilinear-resize.
    out = warp_windows(image, np.array([box], np.float32), 24, padding=0, geometry=geometry)
    assert out.shape == (1, 3, 24, 24)
    torch.testing.assert_close(out, _crop_resize(image, box, 24), atol=1e-4, rtol=0)
    # Enlarging: equal away from the half-crop-pixel band at the crop edge (see the module docstring).
    out = warp_windows(image, np.array([box], np.float32), 64, padding=0, geometry=geometry)
    ref = _crop_resize(image, box, 64)
    torch.testing.assert_close(out[..., 2:-2, 2:-2], ref[..., 2:-2, 2:-2], atol=1e-4, rtol=0)
    assert (out - ref).abs().max() < 1.5  # the band only blends in one neighbouring pixel


@pytest.mark.parametrize("geometry", GEOMS)
def test_context_padding_places_box_inside_margin(geometry: str) -> None:
    image = torch.full((3, 160, 200), 128, dtype=torch.uint8)
    x1, y1, x2, y2 = 41, 31, 120, 110  # 80 x 80 red box, context fully inside the image
    image[:, y1 - 1 : y2, x1 - 1 : x2] = torch.tensor(COLOURS[1], dtype=torch.uint8)[:, None, None]
    size, pad = 64, 8
    out = warp_windows(image, np.array([[x1, y1, x2, y2]], np.float32), size, padding=pad, geometry=geometry)[0]
    red = normalize(torch.tensor(COLOURS[1], dtype=torch.uint8)[:, None, None])
    grey = normalize(torch.full((3, 1, 1), 128, dtype=torch.uint8))
    inner = out[:, pad + 1 : size - pad - 1, pad + 1 : size - pad - 1]
    torch.testing.assert_close(inner, red.expand_as(inner), atol=1e-4, rtol=0)
    for ring in (out[:, :, : pad - 1], out[:, :, size - pad + 1 :], out[:, : pad - 1, :], out[:, size - pad + 1 :, :]):
        torch.testing.assert_close(ring, grey.expand_as(ring), atol=1e-4, rtol=0)


def test_rcnn_geometry_follows_rcnn_im_crop() -> None:
    # rcnn_im_crop by hand for box [1, 1, 10, 10], crop 227, padding 16: scale 227/195, centre 6, half 5 ->
    # dilated [0, 12] (13 px), 1 px left of the image -> clipped [1, 12]; crop round(12 * 227/13) = 210 after
    # round(227/13) = 17 mean pixels.
    rois, inside = warp_geometry(np.array([[1, 1, 10, 10]]), 100, 100, 227, 16, "rcnn")
    assert inside.tolist() == [[17, 17, 227, 227]]
    step = 12 / 210
    np.testing.assert_allclose(rois[0], [-17 * step, -17 * step, 227 * step - 17 * step, 227 * step - 17 * step])
    # Paper geometry: box [0, 10] continuous, dilated about 5 by 227/195.
    rois, inside = warp_geometry(np.array([[1, 1, 10, 10]]), 100, 100, 227, 16, "paper")
    half = 5 * 227 / 195
    np.testing.assert_allclose(rois[0], [5 - half, 5 - half, 5 + half, 5 + half])


@pytest.mark.parametrize("geometry", GEOMS)
def test_outside_image_is_mean(geometry: str) -> None:
    image = _random_image(40, 50, seed=1)
    boxes = np.array([[1, 1, 20, 16], [35, 25, 50, 40], [15, 12, 30, 25]], np.float32)
    size = 48
    out = warp_windows(image, boxes, size, padding=8, geometry=geometry)
    _, inside = warp_geometry(boxes, 50, 40, size, 8, geometry)
    for k, (c0, r0, c1, r1) in enumerate(inside):
        mask = torch.zeros(size, size, dtype=torch.bool)
        mask[r0:r1, c0:c1] = True
        assert (out[k][:, ~mask] == 0).all()
        assert (out[k][:, mask] != 0).float().mean() > 0.99
    assert inside[0, 0] > 0 and inside[0, 1] > 0  # top-left box: context off the image
    assert inside[1, 2] < size and inside[1, 3] < size  # bottom-right box
    assert inside[2].tolist() == [0, 0, size, size]  # context inside the image


def test_warp_rejects_bad_boxes() -> None:
    image = _random_image(20, 20)
    with pytest.raises(ValueError, match="x2 < x1"):
        warp_windows(image, np.array([[10, 1, 5, 5]], np.float32), 16, padding=2)
    with pytest.raises(ValueError, match="outside the image"):
        warp_windows(image, np.array([[30, 30, 40, 40]], np.float32), 16, padding=2)
    with pytest.raises(ValueError, match="padding"):
        warp_windows(image, np.array([[1, 1, 5, 5]], np.float32), 16)


@pytest.mark.parametrize(
    "kwargs",
    [{"name": "zf5", "input_size": 64}, {"name": "alexnet", "head": "nospp"}],
    ids=["zf5-spp", "alexnet-nospp"],
)
def test_rcnn_features_match_manual_forward(kwargs: dict) -> None:
    torch.manual_seed(0)
    model = build_model(width=0.125, **kwargs)
    images = [_random_image(90, 120, seed=3)]
    boxes = np.array(
        [[1, 1, 60, 40], [30, 20, 119, 90], [50, 50, 70, 80], [5, 60, 40, 90], [2, 2, 120, 90]], np.float32
    )
    roidb = [SimpleNamespace(boxes=boxes)]
    feats = RCNNFeatures(model, images.__getitem__, roidb, model.input_size, padding=16, batch_size=2)
    out = feats.rows(0)
    dim = model.pool.output_dim(model.out_channels)
    assert out.shape == (5, dim) and feats.dim == dim and out.dtype == torch.float32
    if model.head == "nospp":
        assert dim == model.out_channels * 36
    with torch.no_grad():
        warped = warp_windows(images[0], boxes, model.input_size, padding=16)
        ref = model.pool(model.features(warped)).flatten(1)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(feats.rows(0, np.array([3, 1])), ref[[3, 1]], atol=1e-4, rtol=1e-4)


def _scene(seed: int, size: int = 96) -> tuple[torch.Tensor, SimpleNamespace, np.ndarray]:
    """Grey noisy image with one coloured square per class present; proposals near the GT and elsewhere."""
    rng = np.random.default_rng(seed)
    image = torch.from_numpy(rng.integers(100, 140, (3, size, size)).astype(np.uint8))
    classes = [1 + seed % 2] if seed % 3 else [1, 2]
    boxes, labels = [], []
    for j, c in enumerate(classes):
        side = int(rng.integers(28, 36))
        x1 = 1 + j * 48 + int(rng.integers(0, 48 - side))
        y1 = 1 + int(rng.integers(0, size - side))
        image[:, y1 - 1 : y1 - 1 + side, x1 - 1 : x1 - 1 + side] = torch.tensor(COLOURS[c], dtype=torch.uint8)[
            :, None, None
        ]
        boxes.append([x1, y1, x1 + side - 1, y1 + side - 1])
        labels.append(c - 1)
    gt = np.array(boxes, np.float32)
    jitter = np.concatenate([g + rng.integers(-4, 5, (6, 4)) for g in gt])
    xy = rng.integers(1, size - 20, (30, 2))
    wh = rng.integers(12, 40, (30, 2))
    random = np.concatenate([xy, np.minimum(xy + wh, size)], axis=1)
    proposals = np.clip(np.concatenate([jitter, random]), 1, size).astype(np.float32)
    record = SimpleNamespace(
        image_id=f"s{seed}",
        width=size,
        height=size,
        boxes=gt,
        labels=np.array(labels),
        difficult=np.zeros(len(gt), bool),
    )
    return image, record, proposals


@pytest.fixture(scope="module")
def scenes() -> tuple[list, list]:
    images, roidb = [], []
    for seed in range(8):
        image, record, proposals = _scene(seed)
        images.append(image)
        roidb.append(build_windows(record, proposals, num_classes=2))
    return images, roidb


def test_batch_composition_and_labels(scenes) -> None:
    images, roidb = scenes
    ds = WarpedWindowDataset(roidb, images.__getitem__, size=32, padding=4, batch_size=128, images_per_batch=3, seed=5)
    rng = np.random.default_rng(0)
    for _ in range(5):
        owner, window, label = ds.draw(rng)
        assert len(label) == 128 and (label > 0).sum() == 32 and (label == 0).sum() == 96
        assert len(np.unique(owner)) <= 3
        for i, k, c in zip(owner, window, label, strict=True):
            ov = roidb[i].max_overlaps[k]
            if c > 0:
                assert ov >= 0.5 and roidb[i].max_classes[k] == c
            else:
                assert ov < 0.5
    batch, labels = _warped(ds)
    assert batch.shape == (128, 3, 32, 32) and labels.dtype == torch.int64 and (labels > 0).sum() == 32


def _warped(ds: WarpedWindowDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The first batch of ``ds``, warped as the fine-tuning module does after the device transfer."""
    return warp_batch(next(iter(ds)), ds.size, ds.padding, ds.geometry)


def test_flip_mirrors_windows(scenes) -> None:
    images, roidb = scenes
    kw = dict(size=32, padding=4, batch_size=16, images_per_batch=2, seed=1)
    plain, _ = _warped(WarpedWindowDataset(roidb, images.__getitem__, flip=False, **kw))
    flipped, _ = _warped(WarpedWindowDataset(roidb, images.__getitem__, flip=True, **kw))
    same = (plain == flipped).flatten(1).all(1)
    mirrored = (plain.flip(-1) == flipped).flatten(1).all(1)
    assert (same | mirrored).all() and mirrored.any() and same.any()


def test_dataset_rejects_roidb_without_foreground(scenes) -> None:
    images, _ = scenes
    empty = SimpleNamespace(
        image_id="e", width=96, height=96, boxes=np.zeros((0, 4)), labels=np.zeros(0), difficult=np.zeros(0, bool)
    )
    roidb = [build_windows(empty, np.array([[1, 1, 30, 30], [20, 20, 60, 60]], np.float32), num_classes=2)]
    with pytest.raises(ValueError, match="no foreground"):
        WarpedWindowDataset(roidb, images.__getitem__, size=32, padding=4)


def test_finetuner_head_and_lr_multipliers() -> None:
    model = build_model("zf5", width=0.125, input_size=64, num_classes=10)
    tuner = RCNNFineTuner(model, num_classes=3, lr=1e-3)
    fc8 = tuner.model.classifier
    assert fc8.out_features == 4 and abs(fc8.weight.std().item() - 0.01) < 0.002 and (fc8.bias == 0).all()
    groups = {(g["lr"], g["weight_decay"]): len(g["params"]) for g in tuner.param_groups()}
    assert set(groups) == {(1e-3, 5e-4), (2e-3, 0.0), (1e-2, 5e-4), (2e-2, 0.0)}
    assert groups[(1e-2, 5e-4)] == 1 and groups[(2e-2, 0.0)] == 1


def _eval_loss(model, batch) -> float:
    model.eval()
    with torch.no_grad():
        return F.cross_entropy(model(batch[0]), batch[1]).item()


def test_finetune_reduces_loss(scenes) -> None:
    images, roidb = scenes
    torch.manual_seed(0)
    model = build_model("zf5", width=0.125, input_size=64)
    held = _warped(WarpedWindowDataset(roidb, images.__getitem__, size=64, batch_size=64, seed=99, flip=False))
    before = _eval_loss(RCNNFineTuner(copy.deepcopy(model), num_classes=2, seed=0).model, held)
    cfg = {"max_steps": 20, "batch_size": 32, "images_per_batch": 4, "lr": 0.01, "seed": 0}
    tuned = finetune_rcnn(model, roidb, images.__getitem__, num_classes=2, cfg=cfg)
    after = _eval_loss(tuned, held)
    assert tuned.classifier.out_features == 3
    # Predicting only the 75/12.5/12.5 class prior would give ~0.74: the windows' colours must have been learned.
    assert after < 0.5 * before < 0.6, (before, after)


def test_finetune_nospp_runs_and_checks_cfg(scenes) -> None:
    images, roidb = scenes
    model = build_model("alexnet", head="nospp", width=0.125)
    with pytest.raises(ValueError, match="max_steps"):
        finetune_rcnn(model, roidb, images.__getitem__, num_classes=2, cfg={})
    with pytest.raises(ValueError, match="unknown cfg keys"):
        finetune_rcnn(model, roidb, images.__getitem__, num_classes=2, cfg={"max_steps": 1, "lr_policy": "step"})
    with pytest.raises(ValueError, match="steps=3 and max_steps=2"):
        finetune_rcnn(model, roidb, images.__getitem__, num_classes=2, cfg={"max_steps": 2, "steps": 3})
    tuned = finetune_rcnn(model, roidb, images.__getitem__, 2, cfg={"steps": 2, "batch_size": 8, "padding": 16})
    assert tuned.classifier.out_features == 3 and not tuned.training


def test_finetune_keeps_the_pretrained_bn_statistics(scenes) -> None:
    """The embedded recipe's trunks have BN: R-CNN fine-tuning tunes its scale/shift, never its statistics."""
    images, roidb = scenes
    torch.manual_seed(0)
    model = build_model("zf5", width=0.125, input_size=64, batch_norm=True)
    bn = model.features.bn1
    bn.running_mean.fill_(0.25)
    stats, weight = (bn.running_mean.clone(), bn.running_var.clone()), bn.weight.detach().clone()
    tuner = RCNNFineTuner(model, num_classes=2)
    tuner.train()
    assert tuner.training and tuner.model.fc.training and not bn.training
    tuned = finetune_rcnn(model, roidb, images.__getitem__, 2, cfg={"steps": 3, "batch_size": 8, "lr": 0.01})
    bn = tuned.features.bn1
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
    assert int(bn.num_batches_tracked) == 0 and not torch.equal(bn.weight.detach(), weight)
