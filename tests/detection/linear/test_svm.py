"""SVM learner: liblinear conventions, feature scaling, 70% pruning and hard-negative mining on synthetic scenes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.svm import LinearSVC

from sppnet_exp.detection.linear.hard_negatives import HardNegativeMiner, train_svms
from sppnet_exp.detection.linear.svm import LinearDetector, SVMConfig, _fit, feature_scale, prune_overlapping
from sppnet_exp.detection.structures.boxes import box_iou
from sppnet_exp.detection.structures.roidb import build_windows

DIM = 16


def make_scene(
    n_img: int, num_classes: int, seed: int = 0, n_props: int = 60, dup_props: bool = False, used: int | None = None
):
    """Images with 1-2 GT boxes and proposals (jittered around the GT and random). A window's feature is noise plus
    ``6 * IoU`` along its best class's direction, so GT boxes are clean positives."""
    rng = np.random.default_rng(seed)
    roidb, feats = [], []
    for i in range(n_img):
        n_gt = int(rng.integers(1, 3))
        xy = rng.uniform(1, 100, (n_gt, 2))
        wh = rng.uniform(30, 90, (n_gt, 2))
        gt = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
        labels = rng.integers(0, used or num_classes, n_gt)
        jit = gt[rng.integers(0, n_gt, n_props // 2)] + rng.normal(0, 12, (n_props // 2, 4))
        rxy = rng.uniform(1, 150, (n_props - n_props // 2, 2))
        rnd = np.concatenate([rxy, rxy + rng.uniform(10, 50, rxy.shape)], axis=1)
        props = np.concatenate([jit, rnd]).astype(np.float32)
        props[:, 2:] = np.maximum(props[:, 2:], props[:, :2] + 2)
        if dup_props:
            props = np.repeat(props, 2, axis=0)
        rec = SimpleNamespace(
            image_id=f"im{i}", width=200, height=200, boxes=gt, labels=labels, difficult=np.arange(n_gt) == 1
        )
        w = build_windows(rec, props, num_classes)
        f = rng.normal(0, 1, (len(w), DIM)).astype(np.float32)
        cls = w.max_classes
        f[cls > 0, cls[cls > 0] - 1] += 6 * w.max_overlaps[cls > 0]
        roidb.append(w)
        feats.append(torch.from_numpy(f))
    return roidb, feats


class CountingFeatures:
    def __init__(self, feats):
        self.feats, self.calls = feats, []

    def __call__(self, i: int) -> torch.Tensor:
        self.calls.append(i)
        return self.feats[i]


def test_fit_matches_liblinear_bias_and_decision_function() -> None:
    rng = np.random.default_rng(1)
    xp = rng.normal(1.0, 1.0, (40, 5)).astype(np.float32)
    xn = rng.normal(-1.0, 1.0, (200, 5)).astype(np.float32)
    cfg = SVMConfig(C=0.1, tol=1e-6, max_iter=100000)
    w, b, ok = _fit(xp, xn, cfg)
    assert ok
    x = np.concatenate([xp, xn]).astype(np.float64)
    y = np.r_[np.ones(40), -np.ones(200)]
    svc = LinearSVC(
        C=0.1,
        class_weight={1: 2, -1: 1},
        loss="hinge",
        dual=True,
        intercept_scaling=10,
        tol=1e-6,
        max_iter=100000,
        random_state=3,
    ).fit(x, y)
    np.testing.assert_allclose(x @ w + b, svc.decision_function(x), rtol=1e-5, atol=1e-5)
    # liblinear -B 10: a constant feature of value 10, regularised like the weights; b = 10 * its weight.
    xb = np.concatenate([x, np.full((len(x), 1), 10.0)], axis=1)
    raw = LinearSVC(
        C=0.1,
        class_weight={1: 2, -1: 1},
        loss="hinge",
        dual=True,
        fit_intercept=False,
        tol=1e-6,
        max_iter=100000,
        random_state=3,
    ).fit(xb, y)
    np.testing.assert_allclose(w, raw.coef_[0, :5], rtol=1e-3, atol=1e-4)
    assert b == pytest.approx(10 * raw.coef_[0, 5], rel=1e-3, abs=1e-4)


def test_feature_scale_gives_target_norm() -> None:
    roidb, feats = make_scene(6, 3)
    f = CountingFeatures(feats)
    scale = feature_scale(roidb, f, n_images=200, n_boxes=10_000)
    all_rows = torch.cat(feats)
    assert (scale * all_rows.norm(dim=1)).mean().item() == pytest.approx(20.0, rel=1e-5)
    assert sorted(f.calls) == list(range(6))
    # Subsampled, with a layer function: rows of constant norm 5 (x2 by the layer) give exactly 20 / 10.
    const = [torch.nn.functional.normalize(x, dim=1) * 5 for x in feats]
    s2 = feature_scale(roidb, lambda i: const[i], layer_fn=lambda x: 2 * x, n_images=3, n_boxes=7, seed=5)
    assert s2 == pytest.approx(2.0, rel=1e-5)
    assert feature_scale(roidb, f, n_images=3, n_boxes=7) == feature_scale(roidb, f, n_images=3, n_boxes=7)


def test_prune_overlapping_hand_built() -> None:
    boxes = np.array(
        [
            [1, 1, 100, 100],  # A
            [1, 1, 100, 90],  # B: IoU(A) 0.90
            [1, 1, 100, 75],  # C: IoU(A) 0.75, IoU(B) 0.83
            [1, 1, 100, 60],  # D: IoU(A) 0.60, IoU(B) 0.67
            [150, 150, 200, 200],  # E: far
            [1, 1, 100, 71],  # F: IoU(A) 0.71, IoU(D) 0.845
        ],
        dtype=np.float32,
    )
    assert box_iou(boxes[:1], boxes[5:6])[0, 0] > 0.7
    keep = prune_overlapping(boxes, np.ones(6, bool), 0.7)
    assert keep.tolist() == [True, False, False, True, True, False]
    # Without A among the candidates, B is walked first and keeps D (0.67) but drops C (0.83).
    cand = np.array([False, True, True, True, True, False])
    assert prune_overlapping(boxes, cand, 0.7).tolist() == [False, True, False, True, True, False]
    assert prune_overlapping(boxes, np.zeros(6, bool), 0.7).sum() == 0


def _cached_rows(miner: HardNegativeMiner, c: int) -> tuple[np.ndarray, np.ndarray]:
    keys = miner.caches[c].keys
    return keys >> 32, keys & 0xFFFFFFFF


def test_mining_trains_separable_classes() -> None:
    roidb, feats = make_scene(12, 3)
    f = CountingFeatures(feats)
    scale = feature_scale(roidb, f)
    f.calls.clear()
    det = train_svms(roidb, f, 3, SVMConfig(), scale=scale, progress=False)
    assert det.W.shape == (DIM, 3) and det.b.shape == (3,)
    # positives: every GT box (difficult included) of the class; one positive pass + one mining pass
    for c in range(3):
        n_gt = sum(int((w.gt_classes == c + 1).sum()) for w in roidb)
        assert det.stats["classes"][c]["pos"] == n_gt
        assert det.stats["classes"][c]["retrains"] >= 2
    assert f.calls.count(0) == 2 and len(f.calls) == 2 * len(roidb)
    assert det.stats["untrained"] == []
    # ranking: GT of the class above that class's negatives
    for c in range(3):
        pos, neg = [], []
        for w, x in zip(roidb, feats):
            s = det.scores(x, scaled=False)[:, c]
            pos.append(s[w.gt_classes == c + 1])
            neg.append(s[w.overlaps[:, c] < 0.3])
        pos, neg = np.concatenate(pos), np.concatenate(neg)
        assert (pos[:, None] > neg[None, :]).mean() > 0.97


def test_scores_apply_the_stored_scale() -> None:
    roidb, feats = make_scene(8, 2, seed=3)
    miner = HardNegativeMiner(roidb, lambda i: feats[i], 2, SVMConfig(tol=1e-6), scale=3.0, progress=False)
    det = miner.run()
    xp = torch.cat([feats[i][: w.num_gt] for i, w in enumerate(roidb)]).numpy() * 3.0
    np.testing.assert_allclose(det.scores(xp), xp @ det.W + det.b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(det.scores(xp / 3.0, scaled=False), det.scores(xp), rtol=1e-5, atol=1e-5)


def test_retrain_limit_eviction_and_unique_keys() -> None:
    roidb, feats = make_scene(15, 3, seed=2)
    scale = feature_scale(roidb, lambda i: feats[i])
    never = HardNegativeMiner(roidb, lambda i: feats[i], 3, SVMConfig(retrain_limit=10**9), scale=scale, progress=False)
    never.run()
    assert all(s["retrains"] == 2 for s in never.cls_stats)  # first image and last image only

    cfg = SVMConfig(retrain_limit=5, evict_thresh=-1.2)
    miner = HardNegativeMiner(roidb, lambda i: feats[i], 3, cfg, scale=scale, progress=False)
    det = miner.run()
    for c in range(3):
        s = miner.cls_stats[c]
        assert s["retrains"] > 2
        assert s["evicted"] > 0
        keys = miner.caches[c].keys
        assert len(np.unique(keys)) == len(keys)
        img, row = _cached_rows(miner, c)
        # every cached row is a negative of the class, and carries its image's features
        for i, r, x in zip(img, row, miner.caches[c].x):
            assert roidb[i].overlaps[r, c] < 0.3
            np.testing.assert_allclose(x, feats[i][r].numpy() * scale, rtol=1e-6)
        # the final retrain evicted everything scoring below the threshold under the final model
        z = miner.caches[c].x @ det.W[:, c] + det.b[c]
        assert z.min() >= cfg.evict_thresh
        assert s["neg"] == len(keys)


def test_second_epoch_adds_no_duplicates() -> None:
    roidb, feats = make_scene(6, 2, seed=4)
    cfg = SVMConfig(hard_epochs=2, evict_thresh=-1e9)  # nothing evicted: the second pass re-finds cached rows
    miner = HardNegativeMiner(roidb, lambda i: feats[i], 2, cfg, scale=2.0, progress=False)
    miner.run()
    for c in range(2):
        keys = miner.caches[c].keys
        assert len(keys) > 0 and len(np.unique(keys)) == len(keys)


def test_pruning_and_neg_keep_limit_negatives() -> None:
    roidb, feats = make_scene(6, 2, seed=5, dup_props=True)
    cfg = SVMConfig(retrain_limit=10**9, evict_thresh=-1e9)
    miner = HardNegativeMiner(roidb, lambda i: feats[i], 2, cfg, scale=2.0, progress=False)
    miner.run()
    assert miner.totals["neg_pruned"] > 0
    for c in range(2):
        img, row = _cached_rows(miner, c)
        for i in np.unique(img):
            rows = row[img == i]
            iou = box_iou(roidb[i].boxes[rows], roidb[i].boxes[rows])
            np.fill_diagonal(iou, 0)
            assert iou.max(initial=0) <= 0.7  # no two cached negatives of an image overlap > 70%

    # The caller's mask alone (authors' dedup): odd rows excluded, duplicates allowed otherwise.
    masks = [np.arange(len(w)) % 2 == 0 for w in roidb]
    cfg2 = SVMConfig(neg_prune="none", retrain_limit=10**9, evict_thresh=-1e9)
    m2 = HardNegativeMiner(roidb, lambda i: feats[i], 2, cfg2, scale=2.0, neg_keep=lambda i: masks[i], progress=False)
    m2.run()
    for c in range(2):
        _, row = _cached_rows(m2, c)
        assert len(row) and (row % 2 == 0).all()
    assert m2.totals["neg_pruned"] == 0
    with pytest.raises(ValueError, match="neg_keep"):
        train_svms(roidb, lambda i: feats[i], 2, cfg2, neg_keep=lambda i: np.ones(3, bool), progress=False)


def test_class_without_positives_never_fires(tmp_path) -> None:
    roidb, feats = make_scene(5, 3, seed=6, used=2)
    det = train_svms(roidb, lambda i: feats[i], 3, SVMConfig(), scale=2.0, progress=False)
    assert det.stats["untrained"] == [3]
    assert np.isneginf(det.b[2]) and np.isfinite(det.b[:2]).all()
    path = det.save(tmp_path / "svm" / "det.npz")
    back = LinearDetector.load(path)
    np.testing.assert_array_equal(back.W, det.W)
    np.testing.assert_array_equal(back.b, det.b)
    assert back.scale == det.scale and back.stats["untrained"] == [3]
    assert [p.name for p in path.parent.iterdir()] == ["det.npz"]  # no temp files left
    with pytest.raises(ValueError, match="features"):
        det.scores(np.zeros((2, DIM + 1)))


def test_feature_row_mismatch_is_reported() -> None:
    roidb, feats = make_scene(2, 2, seed=7)
    with pytest.raises(ValueError, match="im0"):
        train_svms(roidb, lambda i: feats[i][:-1], 2, progress=False)
    with pytest.raises(ValueError, match="3 classes"):
        train_svms(roidb, lambda i: feats[i], 3, progress=False)
