"""Testing every row in one pass over the test images (``spp_test.m`` per row, features computed once per image).

Per test image, each pool5 source (SPP-net: one; R-CNN: the pretrained and the fine-tuned net) computes its
windows' features once on the device; every row applies its layer, scales, scores with its SVMs and runs the
method's test protocol (:mod:`.protocols`: SPP-net's or R-CNN's, box regression for the ``_bb`` rows from the
regressor's pool5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor
from tqdm import tqdm

from sppnet_exp.detection.evaluation.inference import scores_for
from sppnet_exp.detection.evaluation.protocols import TestProtocol, protocol_state
from sppnet_exp.detection.features.windows import WindowFeatures
from sppnet_exp.detection.linear.bbox_reg import BoxRegressor
from sppnet_exp.detection.linear.svm import LinearDetector, _to_numpy
from sppnet_exp.detection.structures.detections import ImageDetections
from sppnet_exp.detection.structures.roidb import ImageWindows

__all__ = ["TestProtocol", "TestRow", "detect_rows"]


@dataclass
class TestRow:
    """One row at test time: its pool5 source and layer, its SVMs, and for ``_bb`` rows the box regressor with
    the pool5 source it reads."""

    name: str
    features: WindowFeatures
    layer: Callable[[Tensor], Tensor]
    detector: LinearDetector
    regressor: BoxRegressor | None = None
    bbox_features: WindowFeatures | None = None


def detect_rows(
    roidb: Sequence[ImageWindows], rows: Sequence[TestRow], protocol: TestProtocol, progress: bool = False
) -> dict[str, list[ImageDetections]]:
    """Detections of every row on every image of ``roidb`` (proposals only), in one pass."""
    sources: list[WindowFeatures] = []
    for r in rows:
        for src in (r.features, r.bbox_features):
            if src is not None and not any(src is s for s in sources):
                sources.append(src)
    states = {r.name: protocol_state(protocol, len(roidb)) for r in rows}
    streams = [src.stream(range(len(roidb))) for src in sources]
    for items in tqdm(zip(*streams, strict=True), total=len(roidb), desc="test", disable=not progress):
        i = items[0][0]
        pooled = {id(src): x for src, (_, x) in zip(sources, items, strict=True)}
        win = roidb[i]
        for r in rows:
            x = r.layer(pooled[id(r.features)]) * r.detector.scale
            scores = scores_for(x, r.detector.W, r.detector.b)
            regress = None
            if r.regressor is not None:
                reg = r.regressor
                p5 = _to_numpy(pooled[id(r.bbox_features or r.features)]) * np.float32(reg.scale)

                def regress(keep: np.ndarray, c: int, p5=p5, win=win, reg=reg) -> np.ndarray:  # noqa: ANN001
                    return reg.predict(p5[keep], win.boxes[keep], c + 1)

            states[r.name].add(win, scores, regress)
    return {name: state.finish() for name, state in states.items()}
