"""The two methods' test protocols on a hand-built case: R-CNN's (no floor, top-k before NMS, a per-class cap over
the set) against SPP-net's (floor, NMS, top-k)."""

from __future__ import annotations

import numpy as np

from sppnet_exp.detection.evaluation.inference import detect_image
from sppnet_exp.detection.evaluation.protocols import RCNNState, SPPState, TestProtocol
from sppnet_exp.detection.structures.roidb import ImageWindows

# Boxes 0 and 2 of every image overlap (IoU ~0.8); box 1 is apart.
BOXES = np.array([[10, 10, 50, 50], [100, 100, 140, 140], [12, 12, 52, 52]], dtype=np.float32)
SCORES = {"A": [0.9, -2.0, 0.5], "B": [-0.5, -3.0, 0.1], "C": [0.2, 0.05, 1.0]}


def _win(image_id: str) -> ImageWindows:
    n = len(BOXES)
    return ImageWindows(
        image_id, 200, 200, BOXES, np.zeros(n, np.int64), np.zeros(n, bool), np.zeros((n, 1), np.float32)
    )


def _kept(dets) -> dict[str, list[float]]:  # noqa: ANN001
    return {d.image_id: sorted(np.float64(d.scores.get(0, np.zeros(0))).round(3).tolist(), reverse=True) for d in dets}


def test_rcnn_protocol_hand_case() -> None:
    """max_per_image 2, max_per_set 1 per image (3 in all):
    A: top 2 of (0.9, -2.0, 0.5) -> 0.9, 0.5 (no floor: -2.0 only loses on rank); 2 kept, under the cap.
    B: top 2 -> 0.1, -0.5; 4 kept > 3: the class's best three are 0.9, 0.5, 0.1 -> threshold 0.1.
    C: above 0.1 -> 1.0, 0.2; best three 1.0, 0.9, 0.5 -> threshold 0.5.
    Then scores < 0.5 go (all of B, 0.2 of C), and NMS 0.3 removes A's 0.5 (it overlaps 0.9)."""
    state = RCNNState(TestProtocol(protocol="rcnn", score_thresh=None, max_per_image=2, max_per_set=1), num_images=3)
    for image_id, s in SCORES.items():
        state.add(_win(image_id), np.array(s, np.float32)[:, None])
    assert state.thresh[0] == 0.5
    assert _kept(state.finish()) == {"A": [0.9], "B": [], "C": [1.0]}


def test_rcnn_protocol_keeps_negative_scores_without_a_cap() -> None:
    state = RCNNState(TestProtocol(protocol="rcnn", score_thresh=None, max_per_image=3, max_per_set=40), num_images=3)
    for image_id, s in SCORES.items():
        state.add(_win(image_id), np.array(s, np.float32)[:, None])
    assert _kept(state.finish()) == {"A": [0.9, -2.0], "B": [0.1, -3.0], "C": [1.0, 0.05]}


def test_spp_protocol_is_the_per_image_floor_nms_topk() -> None:
    """SPP-net: the floor -1.5 removes -2.0 and -3.0, NMS removes the overlapping lower score, no set cap."""
    p = TestProtocol(protocol="spp", score_thresh=-1.5, max_per_image=2)
    state = SPPState(p, num_images=3)
    for image_id, s in SCORES.items():
        state.add(_win(image_id), np.array(s, np.float32)[:, None])
    got = _kept(state.finish())
    assert got == {"A": [0.9], "B": [0.1], "C": [1.0, 0.05]}
    ref = detect_image("C", 200, 200, BOXES, np.array(SCORES["C"], np.float32)[:, None], -1.5, 0.3, 2)
    assert _kept([ref]) == {"C": got["C"]}


def test_rcnn_protocol_regresses_before_nms() -> None:
    """A _bb row moves the kept windows first (here box 2 onto box 1), then NMS runs on the moved boxes."""
    state = RCNNState(TestProtocol(protocol="rcnn", score_thresh=None, max_per_image=3, max_per_set=40), num_images=1)

    def regress(keep: np.ndarray, c: int) -> np.ndarray:
        moved = BOXES[keep].copy()
        moved[keep == 2] = BOXES[1]
        return moved

    state.add(_win("A"), np.array([[0.9], [0.8], [0.7]], np.float32), regress)
    dets = state.finish()
    assert _kept(dets) == {"A": [0.9, 0.8]}  # 0.7 now overlaps 0.8
