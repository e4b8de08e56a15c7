"""Bounding-box regression: recovery of a known linear map, whitening, strict overlap, untrained classes, I/O."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sppnet_exp.detection.linear.bbox_reg import (
    BoxRegressor,
    collect_examples,
    ridge_solve,
    train_bbox_regressors,
    whitening,
)
from sppnet_exp.detection.structures.boxes import encode_boxes
from sppnet_exp.detection.structures.roidb import build_windows


def _record(i: int, gt: np.ndarray, labels: np.ndarray) -> SimpleNamespace:
    return SimpleNamespace(
        image_id=f"im{i}", width=300, height=300, boxes=gt, labels=labels, difficult=np.zeros(len(gt), bool)
    )


def linear_scene(n_img: int, mix: np.ndarray, seed: int = 0, num_classes: int = 2):
    """One GT per image and proposals jittered around it; each window's feature is ``t @ mix`` where t are its
    true (dx, dy, dw, dh) to the GT (zero for the GT row), so deltas are a linear function of the features."""
    rng = np.random.default_rng(seed)
    roidb, feats = [], []
    for i in range(n_img):
        xy = rng.uniform(20, 120, 2)
        gt = np.concatenate([xy, xy + rng.uniform(60, 120, 2)])[None].astype(np.float32)
        w, h = gt[0, 2] - gt[0, 0], gt[0, 3] - gt[0, 1]
        props = gt + rng.normal(0, 1, (30, 4)) * np.array([w, h, w, h]) * 0.06
        win = build_windows(_record(i, gt, np.array([i % num_classes])), props.astype(np.float32), num_classes)
        t = encode_boxes(win.boxes, np.repeat(gt, len(win), axis=0))
        feats.append(torch.from_numpy((t @ mix).astype(np.float32)))
        roidb.append(win)
    return roidb, feats


def test_whitening_round_trip() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(0, 1, (500, 4)) @ rng.normal(0, 0.3, (4, 4)) + np.array([0.1, -0.2, 0.05, 0.3])
    mu, T, T_inv = whitening(y)
    z = (y - mu) @ T
    cov = z.T @ z / len(z)
    d = np.linalg.eigvalsh(np.cov(y.T, bias=True))
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(cov)), np.sort(d / (d + 0.001)), rtol=1e-6)
    np.testing.assert_allclose(z @ T_inv + mu, y, atol=1e-10)
    np.testing.assert_allclose(T @ T_inv, np.eye(4), atol=1e-10)


@pytest.mark.parametrize("n", [5, 50])
def test_ridge_primal_and_dual_agree(n: int) -> None:
    rng = np.random.default_rng(n)
    a, y, lam = rng.normal(size=(n, 12)), rng.normal(size=(n, 4)), 3.0
    expected = np.linalg.solve(a.T @ a + lam * np.eye(12), a.T @ y)
    np.testing.assert_allclose(ridge_solve(a, y, lam), expected, rtol=1e-8, atol=1e-10)


def test_recovers_known_linear_map() -> None:
    rng = np.random.default_rng(1)
    mix = rng.normal(0, 1, (4, 10))
    roidb, feats = linear_scene(40, mix)
    reg = train_bbox_regressors(roidb, lambda i: feats[i], 2, lam=1e-6, scale=1.0)
    assert reg.trained.all() and reg.stats["untrained"] == []
    for c in (1, 2):
        assert reg.stats["classes"][c - 1]["examples"] > 100
    # unseen windows: the regressed boxes land on the GT
    test_roidb, test_feats = linear_scene(6, mix, seed=9)
    for w, x in zip(test_roidb, test_feats):
        cls = w.gt_classes[0]
        sel = w.max_overlaps > 0.5
        out = reg.predict(x[sel], w.boxes[sel], int(cls))
        np.testing.assert_allclose(out, np.repeat(w.boxes[:1], sel.sum(), axis=0), atol=0.05)
        # per-row classes give the same answer
        np.testing.assert_allclose(reg.predict(x[sel], w.boxes[sel], np.full(sel.sum(), cls)), out)


def test_scale_and_regularisation() -> None:
    rng = np.random.default_rng(2)
    mix = rng.normal(0, 1, (4, 10))
    roidb, feats = linear_scene(20, mix)
    exact = train_bbox_regressors(roidb, lambda i: feats[i], 2, lam=1e-6, scale=4.0)
    w = roidb[0]
    x = feats[0].numpy()
    # inputs carry the stored scale; scaled=False applies it to raw features
    d_raw = exact.deltas(x, 1, scaled=False)
    np.testing.assert_allclose(exact.deltas(x * 4.0, 1), d_raw, rtol=1e-9, atol=1e-12)
    assert not np.allclose(exact.deltas(x, 1), d_raw)
    # a huge lambda shrinks the whitened prediction to zero: deltas -> the class mean of the targets
    shrunk = train_bbox_regressors(roidb, lambda i: feats[i], 2, lam=1e12, scale=4.0)
    np.testing.assert_allclose(shrunk.deltas(x, 1), np.repeat(shrunk.mu[:1], len(w), axis=0), atol=1e-5)
    # default scale: the mean pool5 norm becomes 20
    auto = train_bbox_regressors(roidb, lambda i: feats[i], 2)
    norms = torch.cat(feats).norm(dim=1)
    assert (auto.scale * norms).mean().item() == pytest.approx(20.0, rel=1e-5)


def test_strict_overlap_and_untrained_class(tmp_path) -> None:
    gt = np.array([[1, 1, 10, 10]], dtype=np.float32)
    props = np.array([[1, 1, 10, 5], [1, 1, 10, 6], [1, 1, 10, 3]], dtype=np.float32)  # IoU 0.5, 0.6, 0.3
    win = build_windows(_record(0, gt, np.array([0])), props, 3)
    np.testing.assert_array_equal(win.max_overlaps, np.array([1.0, 0.5, 0.6, 0.3], np.float32))
    feats = [torch.arange(8, dtype=torch.float32).reshape(4, 2) + 1]
    xs, ys, ov, cl = collect_examples([win], lambda i: feats[i], 0.5)
    np.testing.assert_array_equal(ov, np.array([1.0, 0.5, 0.6], np.float32))  # collected with >=
    np.testing.assert_array_equal(cl, [1, 1, 1])
    np.testing.assert_allclose(ys[0], 0, atol=1e-12)  # GT -> itself
    reg = train_bbox_regressors([win], lambda i: feats[i], 3, scale=1.0)
    assert reg.stats["classes"][0] == {"collected": 3, "examples": 2, "loss": reg.stats["classes"][0]["loss"]}
    assert reg.trained.tolist() == [True, False, False]
    assert reg.stats["untrained"] == [2, 3]
    boxes = np.array([[5, 5, 50, 60], [2, 3, 4, 5]], dtype=np.float32)
    np.testing.assert_array_equal(reg.predict(np.ones((2, 2)), boxes, 3), boxes)
    mixed = reg.predict(np.ones((2, 2)), boxes, np.array([1, 2]))
    np.testing.assert_array_equal(mixed[1], boxes[1])
    assert not np.array_equal(mixed[0], boxes[0])
    with pytest.raises(ValueError, match="class 4"):
        reg.predict(np.ones((2, 2)), boxes, 4)

    path = reg.save(tmp_path / "reg.npz")
    back = BoxRegressor.load(path)
    np.testing.assert_array_equal(back.predict(np.ones((2, 2)), boxes, np.array([1, 2])), mixed)
    assert back.scale == reg.scale and back.stats == reg.stats
    assert [p.name for p in tmp_path.iterdir()] == ["reg.npz"]
