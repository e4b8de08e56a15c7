"""Model combination (paper Table 12): pool the scored boxes of two detectors and run NMS on the union.

The paper scores all candidate windows with both models (two SPP-nets pre-trained differently, each with its own
SVMs), puts both sets of scored windows together and applies non-maximum suppression. NMS compares raw scores
across the models, so they must be on a comparable scale: here both are linear-SVM scores trained with the same
recipe (the same feature-norm scaling, C and positive weight), as in the paper. Mixing e.g. SVM scores with softmax
probabilities would let one model win every overlap.
"""

from __future__ import annotations

import numpy as np

from sppnet_exp.detection.structures.boxes import nms
from sppnet_exp.detection.structures.detections import Detections

__all__ = ["combine_detections"]


def combine_detections(
    a: Detections, b: Detections, nms_thresh: float = 0.3, max_per_image: int | None = 100
) -> Detections:
    """Per class and image: NMS (VOC +1 IoU, suppress IoU > ``nms_thresh``) over the union of ``a``'s and ``b``'s
    boxes, then keep the ``max_per_image`` highest-scoring survivors (per class per image; ``None``: no cap).

    Equal scores are resolved in favour of ``a`` (its rows come first in the union). The output lists classes in
    order of first appearance, then images in order of first appearance, each group by decreasing score.
    """
    if max_per_image is not None and max_per_image < 1:
        raise ValueError(f"max_per_image must be >= 1 or None, got {max_per_image}")
    union = Detections.concat([a, b])
    if len(union) == 0:
        return union
    keep_rows: list[np.ndarray] = []
    for name in union.classes:
        in_cls = np.flatnonzero(union.labels == name)
        ids = union.image_ids[in_cls]
        for image_id in dict.fromkeys(ids.tolist()):
            rows = in_cls[ids == image_id]
            kept = rows[nms(union.boxes[rows], union.scores[rows], nms_thresh)]
            keep_rows.append(kept if max_per_image is None else kept[:max_per_image])
    return union.select(np.concatenate(keep_rows))
