"""The test protocol of each method, applied image by image as the test pass streams (one state per row).

* SPP-net (``spp_test.m``, :func:`~.inference.detect_image`): per image and class, scores above the floor (−1.5),
  NMS 0.3, the top 100; a ``_bb`` row moves the kept boxes by the box regressor and runs NMS again.
* R-CNN (``rcnn_test.m``, ``imdb_eval_voc.m``): no floor; per image and class the top ``max_per_image`` (100)
  windows by score *before* NMS, among those above the class's running threshold; the threshold is the score of
  the ``max_per_set``-th best kept window of the class so far (``ceil(100000 / 2500) = 40`` per test image), and
  once every image is seen, windows below the final threshold are dropped; a ``_bb`` row regresses the kept
  windows (``rcnn_test_bbox_regressor.m``); then NMS 0.3 per image and class, as the evaluation applies it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sppnet_exp.detection.evaluation.inference import detect_image
from sppnet_exp.detection.settings import PROTOCOLS, TestProtocol  # defined once there (re-exported)
from sppnet_exp.detection.structures.boxes import clip_boxes, nms
from sppnet_exp.detection.structures.detections import ImageDetections
from sppnet_exp.detection.structures.roidb import ImageWindows

__all__ = ["PROTOCOLS", "RCNNState", "SPPState", "TestProtocol", "protocol_state"]

Regress = Callable[[np.ndarray, int], np.ndarray]


class SPPState:
    """SPP-net's protocol: every image is final when it is added."""

    def __init__(self, protocol: TestProtocol, num_images: int) -> None:
        self.p, self.out = protocol, []

    def add(self, win: ImageWindows, scores: np.ndarray, regress: Regress | None = None) -> None:
        p = self.p
        self.out.append(
            detect_image(
                win.image_id, win.width, win.height, win.boxes, scores, p.score_thresh, p.nms, p.max_per_image,
                regress, p.eval_nms,
            )
        )  # fmt: skip

    def finish(self) -> list[ImageDetections]:
        return self.out


class RCNNState:
    """R-CNN's protocol: per-image top-k before NMS, a per-class threshold over the set, NMS at the end."""

    def __init__(self, protocol: TestProtocol, num_images: int) -> None:
        self.p = protocol
        self.max_per_set = int(protocol.max_per_set) * int(num_images)
        self.images: list[tuple[str, dict[int, np.ndarray], dict[int, np.ndarray]]] = []
        self.thresh: dict[int, float] = {}
        self.top: dict[int, np.ndarray] = {}
        self.counts: dict[int, int] = {}

    def add(self, win: ImageWindows, scores: np.ndarray, regress: Regress | None = None) -> None:
        scores = np.asarray(scores, dtype=np.float32)
        boxes_c: dict[int, np.ndarray] = {}
        scores_c: dict[int, np.ndarray] = {}
        for c in range(scores.shape[1]):
            z = scores[:, c]
            idx = np.flatnonzero(z > self.thresh.get(c, -np.inf))
            order = idx[np.argsort(-z[idx], kind="stable")][: self.p.max_per_image]  # MATLAB sort 'descend'
            if not len(order):
                continue
            b = win.boxes[order].astype(np.float32)
            if regress is not None:
                b = clip_boxes(regress(order, c), win.width, win.height)
            boxes_c[c], scores_c[c] = b, z[order]
            self.counts[c] = self.counts.get(c, 0) + len(order)
            top = np.sort(np.concatenate([self.top.get(c, np.zeros(0, np.float32)), z[order]]))[::-1]
            if self.counts[c] > self.max_per_set:
                top = top[: self.max_per_set]
                self.thresh[c] = float(top[-1])
            self.top[c] = top
        self.images.append((win.image_id, boxes_c, scores_c))

    def finish(self) -> list[ImageDetections]:
        out = []
        for image_id, boxes_c, scores_c in self.images:
            ob, os_ = {}, {}
            for c, b in boxes_c.items():
                s = scores_c[c]
                keep = s >= self.thresh.get(c, -np.inf)  # rcnn_test.m drops scores < thresh
                b, s = b[keep], s[keep]
                if len(b):
                    k = nms(b, s, self.p.nms)
                    ob[c], os_[c] = b[k], s[k]
            out.append(ImageDetections(image_id, ob, os_))
        return out


def protocol_state(protocol: TestProtocol, num_images: int) -> SPPState | RCNNState:
    """A fresh per-row state of ``protocol`` for a test set of ``num_images``."""
    return (SPPState if protocol.protocol == "spp" else RCNNState)(protocol, num_images)
