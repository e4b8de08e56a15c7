"""Box arithmetic (+1 convention), NMS, regression targets, and the windows of an image."""

from __future__ import annotations

import numpy as np
import pytest

from sppnet_exp.detection.structures.boxes import box_iou, clip_boxes, decode_boxes, encode_boxes, flip_boxes, nms
from sppnet_exp.detection.structures.roidb import build_windows


def test_iou_uses_the_plus_one_convention() -> None:
    a = np.array([[1, 1, 10, 10]])  # 10 x 10 pixels
    b = np.array([[6, 1, 15, 10], [11, 1, 20, 10], [1, 1, 1, 1]])
    iou = box_iou(a, b)[0]
    assert iou[0] == pytest.approx(50 / 150)  # 5 x 10 overlap
    assert iou[1] == 0.0  # touching edges do not overlap
    assert iou[2] == pytest.approx(1 / 100)  # a one-pixel box has area 1
    assert box_iou(np.zeros((0, 4)), a).shape == (0, 1)


def test_nms_suppresses_above_threshold_and_breaks_ties_by_index() -> None:
    boxes = np.array([[1, 1, 10, 10], [1, 1, 10, 10], [6, 1, 15, 10], [50, 50, 60, 60]], dtype=float)
    # IoU(0, 2) = 1/3: kept at 0.35, suppressed at 0.3.
    assert nms(boxes, np.array([0.9, 0.9, 0.8, 0.1]), 0.35).tolist() == [0, 2, 3]
    assert nms(boxes, np.array([0.9, 0.9, 0.8, 0.1]), 0.3).tolist() == [0, 3]
    assert nms(boxes, np.array([0.5, 0.9, 0.8, 0.1]), 0.3).tolist() == [1, 3]
    assert nms(np.zeros((0, 4)), np.zeros(0)).shape == (0,)
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        nms(boxes[:2], np.array([1.0]))


def test_regression_targets_round_trip_and_flip() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(1, 100, (20, 2))
    props = np.concatenate([p, p + rng.uniform(5, 80, (20, 2))], 1)
    gt = props + rng.uniform(-4, 4, props.shape)
    np.testing.assert_allclose(decode_boxes(props, encode_boxes(props, gt)), gt, atol=1e-4)
    assert np.abs(encode_boxes(props, props)).max() < 1e-9
    f = flip_boxes(np.array([[1, 5, 10, 20]]), 100)
    assert f.tolist() == [[91, 5, 100, 20]] and flip_boxes(f, 100).tolist() == [[1, 5, 10, 20]]
    assert clip_boxes(np.array([[-5, 0, 120, 50]]), 100, 40).tolist() == [[1, 1, 100, 40]]


class _Rec:
    image_id, width, height = "img", 100, 80
    boxes = np.array([[1, 1, 40, 40], [50, 20, 90, 70]], dtype=np.float32)
    labels = np.array([0, 2])
    difficult = np.array([False, True])


def test_windows_put_gt_first_with_per_class_overlaps() -> None:
    w = build_windows(_Rec(), np.array([[1, 1, 40, 40], [60, 60, 70, 70]], dtype=np.float32), num_classes=3)
    assert w.gt_classes.tolist() == [1, 3, 0, 0] and w.num_gt == 2
    assert w.difficult.tolist() == [False, True, False, False]
    assert w.overlaps.shape == (4, 3) and w.overlaps[2, 0] == pytest.approx(1.0) and w.overlaps[2, 2] == 0.0
    assert w.max_classes.tolist()[:3] == [1, 3, 1]
    with pytest.raises(ValueError, match="label out of range"):
        build_windows(_Rec(), np.zeros((0, 4)), num_classes=2)
