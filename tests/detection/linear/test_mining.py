"""SVM training and box regression that stream over the images, against their in-memory versions on the same
features; the bounded negative cache; the chunked ridge solve."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sppnet_exp.detection.features.heads import FCHead
from sppnet_exp.detection.features.pooling import WindowPooler
from sppnet_exp.detection.features.windows import SPPFeatures
from sppnet_exp.detection.linear.bbox_reg import (
    ridge_fit,
    ridge_solve,
    train_bbox_regressors,
    train_bbox_regressors_streaming,
)
from sppnet_exp.detection.linear.hard_negatives import train_svms
from sppnet_exp.detection.linear.mining import SVMRow, mine_svms, row_scales
from sppnet_exp.detection.linear.svm import SVMConfig, feature_scale


def _head(dim: int) -> FCHead:
    torch.manual_seed(1)
    return FCHead(torch.nn.Linear(dim, 48), torch.nn.Linear(48, 40)).eval()


@pytest.fixture(scope="module")
def source(scene: SimpleNamespace) -> SPPFeatures:
    return SPPFeatures(scene.cache, scene.roidb, WindowPooler(scene.spec))


def test_streaming_rows_equal_the_in_memory_svms(scene: SimpleNamespace, source: SPPFeatures) -> None:
    """pool5, fc6 and fc7 rows mined in one streamed pass give the weights train_svms gives on precomputed rows."""
    head = _head(source.dim)
    layers = {"pool5": lambda x: x, "fc6": head.layer_fn("fc6"), "fc7": head.layer_fn("fc7")}
    cfg = SVMConfig(retrain_limit=30, norm_images=3, norm_boxes=20)
    rows = [SVMRow(name, source, fn) for name, fn in layers.items()]
    streamed = mine_svms(scene.roidb, rows, 2, cfg, progress=False)
    full = [source.rows(i) for i in range(len(scene.roidb))]  # every window's pool5, in memory
    for name, fn in layers.items():
        scale = feature_scale(scene.roidb, full.__getitem__, fn, cfg.norm_images, cfg.norm_boxes, cfg.seed)
        assert row_scales(scene.roidb, [SVMRow(name, source, fn)], cfg)[name] == pytest.approx(scale, rel=1e-6)
        ref = train_svms(scene.roidb, full.__getitem__, 2, cfg, layer_fn=fn, scale=scale, progress=False)
        got = streamed[name]
        assert got.scale == pytest.approx(ref.scale, rel=1e-6)
        np.testing.assert_allclose(got.W, ref.W, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got.b, ref.b, rtol=1e-4, atol=1e-6)
        assert [c["neg"] for c in got.stats["classes"]] == [c["neg"] for c in ref.stats["classes"]]
        assert got.stats["neg_candidates"] == ref.stats["neg_candidates"] > 0


def test_negative_cache_is_bounded_and_keeps_the_hardest(scene: SimpleNamespace, source: SPPFeatures) -> None:
    unbounded = mine_svms(
        scene.roidb,
        [SVMRow("pool5", source, lambda x: x)],
        2,
        SVMConfig(retrain_limit=10**6, evict_thresh=-1e9),
        progress=False,
    )["pool5"]
    cfg = SVMConfig(retrain_limit=10**6, evict_thresh=-1e9, max_negatives=12, cache_dtype="float16")
    bounded = mine_svms(scene.roidb, [SVMRow("pool5", source, lambda x: x)], 2, cfg, progress=False)["pool5"]
    for u, b in zip(unbounded.stats["classes"], bounded.stats["classes"], strict=True):
        assert u["neg"] > 12, u  # the bound matters
        assert b["neg"] <= 12 and b["bound_evicted"] > 0, b
    assert bounded.stats["cache_bytes"] < unbounded.stats["cache_bytes"]


def test_streaming_box_regression_equals_the_in_memory_one(scene: SimpleNamespace, source: SPPFeatures) -> None:
    full = [source.rows(i) for i in range(len(scene.roidb))]
    ref = train_bbox_regressors(scene.roidb, full.__getitem__, 2, lam=10.0, min_overlap=0.5, scale=0.5)
    got = train_bbox_regressors_streaming(scene.roidb, source, 2, lam=10.0, min_overlap=0.5, scale=0.5)
    assert got.trained.tolist() == ref.trained.tolist() == [True, True]
    np.testing.assert_allclose(got.beta, ref.beta, rtol=1e-5, atol=1e-7)
    assert [c["examples"] for c in got.stats["classes"]] == [c["examples"] for c in ref.stats["classes"]]
    assert [c["collected"] for c in got.stats["classes"]] == [c["collected"] for c in ref.stats["classes"]]
    half = train_bbox_regressors_streaming(scene.roidb, source, 2, lam=10.0, scale=0.5, store_dtype="float16")
    assert half.stats["examples_bytes"] * 2 == got.stats["examples_bytes"]
    np.testing.assert_allclose(half.beta, ref.beta, rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize("n", [30, 500])
def test_chunked_ridge_equals_the_dense_solve(n: int) -> None:
    """Primal (n >= d, accumulated in chunks) and dual (n < d) both equal the dense Cholesky solve."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 60)).astype(np.float32)
    y = rng.normal(size=(n, 4))
    dense = ridge_solve(np.concatenate([x.astype(np.float64), np.ones((n, 1))], axis=1), y, 3.0)
    beta, loss = ridge_fit(x, y, 3.0, chunk=64)
    np.testing.assert_allclose(beta, dense, rtol=1e-9, atol=1e-10)
    a = np.concatenate([x.astype(np.float64), np.ones((n, 1))], axis=1)
    assert loss == pytest.approx(0.5 * ((a @ dense - y) ** 2).mean(), rel=1e-9)
