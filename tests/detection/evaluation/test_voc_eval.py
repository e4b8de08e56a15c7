"""VOC07 evaluator (VOCevaldet semantics): hand-computed cases, a literal loop reference on random cases, and the
two-model combination."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sppnet_exp.detection.evaluation.combine import combine_detections
from sppnet_exp.detection.evaluation.voc_eval import GroundTruth, VOCResult, evaluate_detections
from sppnet_exp.detection.structures.detections import Detections
from sppnet_exp.utils.average_precision import VOC07_THRESHOLDS, voc_ap

CLASSES = ["a", "b"]


def gt(boxes, labels, difficult=None) -> GroundTruth:
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    difficult = np.zeros(len(boxes), bool) if difficult is None else np.asarray(difficult, bool)
    return GroundTruth(boxes, np.asarray(labels, dtype=np.int64), difficult)


def dets(rows) -> Detections:
    """rows: (image_id, label, score, box)."""
    if not rows:
        return Detections.empty()
    ids, labels, scores, boxes = zip(*rows)
    return Detections.from_arrays(list(ids), list(labels), list(scores), list(boxes))


A = [1, 1, 10, 10]  # 10 x 10 pixels with the +1 convention
FAR = [100, 100, 120, 120]


def test_perfect_detector():
    g = {"1": gt([A, [20, 20, 40, 40]], [0, 1]), "2": gt([[5, 5, 50, 50]], [0])}
    d = dets([("1", "a", 0.9, A), ("1", "b", 0.3, [20, 20, 40, 40]), ("2", "a", 0.1, [5, 5, 50, 50])])
    for use07 in (True, False):
        r = evaluate_detections(d, g, CLASSES, use_07_metric=use07)
        assert r.ap == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
        assert r.map == pytest.approx(1.0)
        assert r.npos == {"a": 2, "b": 1} and r.num_dets == {"a": 2, "b": 1} and r.num_tp == {"a": 2, "b": 1}
    # The same detections as file-schema dicts, or as a list of containers.
    assert evaluate_detections(d.to_records(), g, CLASSES).map == pytest.approx(1.0)
    assert evaluate_detections([d.select([0]), d.select([1, 2])], g, CLASSES).map == pytest.approx(1.0)


def test_leading_detection_on_difficult_gt_is_neither_tp_nor_fp():
    # GT: A (non-difficult), FAR (difficult) -> npos = 1.
    # Sorted dets: on FAR (ignored: tp=fp=0 -> prec 0/0 = NaN), on A (TP).
    # tp = [0, 1], fp = [0, 0], rec = [0, 1], prec = [NaN, 1]; NaN ignored by the max -> AP = 1 (11-pt and area).
    # Were the difficult hit an FP: prec = [0, 0.5] -> AP 0.5; were NaN propagated: AP NaN.
    g = {"1": gt([A, FAR], [0, 0], [False, True])}
    d = dets([("1", "a", 0.9, FAR), ("1", "a", 0.8, A)])
    r = evaluate_detections(d, g, ["a"])
    assert r.npos["a"] == 1 and r.num_tp["a"] == 1
    assert r.ap["a"] == pytest.approx(1.0)
    assert math.isnan(r.precision["a"][0])
    assert evaluate_detections(d, g, ["a"], use_07_metric=False).ap["a"] == pytest.approx(1.0)


def test_only_difficult_hits_give_ap_zero_not_nan():
    # npos = 1 (A), the single det hits the difficult GT: every precision is 0/0 -> AP 0 (documented choice).
    g = {"1": gt([A, FAR], [0, 0], [False, True])}
    r = evaluate_detections(dets([("1", "a", 1.0, FAR)]), g, ["a"])
    assert r.ap["a"] == 0.0 and r.map == 0.0


def test_duplicate_is_fp_and_not_reassigned():
    # GT A = [1,1,10,10] and B = [2,1,11,10] (IoU(A, B) = 90/110 = 0.82), npos = 2.
    # Both dets equal A: the first is TP on A; the second's best GT is A again (IoU 1 > 0.82) -> duplicate FP,
    # even though B is free with IoU 0.82 (the devkit never re-assigns).
    # tp = [1, 1], fp = [0, 1], rec = [.5, .5], prec = [1, .5] -> 11-pt: t = 0..0.5 give 1, t = 0.6..1 give 0 -> 6/11.
    g = {"1": gt([A, [2, 1, 11, 10]], [0, 0])}
    r = evaluate_detections(dets([("1", "a", 0.9, A), ("1", "a", 0.8, A)]), g, ["a"])
    assert r.ap["a"] == pytest.approx(6 / 11)
    assert r.num_tp["a"] == 1


def test_duplicate_then_second_object():
    # GT A, C (far apart). Sorted: TP on A, duplicate on A (FP), TP on C.
    # tp = [1,1,2], fp = [0,1,1], rec = [.5,.5,1], prec = [1,.5,2/3].
    # 11-pt: t = 0..0.5 -> 1 (6 points), t = 0.6..1 -> 2/3 (5 points): (6 + 10/3) / 11 = 28/33.
    # all-point: envelope [1, 1, 2/3]: 0.5 * 1 + 0.5 * 2/3 = 5/6.
    g = {"1": gt([A, FAR], [0, 0])}
    d = dets([("1", "a", 0.9, A), ("1", "a", 0.8, [1, 1, 10, 9]), ("1", "a", 0.7, FAR)])
    assert evaluate_detections(d, g, ["a"]).ap["a"] == pytest.approx(28 / 33)
    assert evaluate_detections(d, g, ["a"], use_07_metric=False).ap["a"] == pytest.approx(5 / 6)


def test_tied_scores_keep_file_order():
    # One GT. Two dets with the same score: an FP and a TP.
    # [FP, TP]: prec = [0, .5], rec = [0, 1] -> AP 0.5.   [TP, FP]: prec = [1, .5], rec = [1, 1] -> AP 1.
    g = {"1": gt([A], [0])}
    fp_first = dets([("1", "a", 0.5, FAR), ("1", "a", 0.5, A)])
    tp_first = dets([("1", "a", 0.5, A), ("1", "a", 0.5, FAR)])
    assert evaluate_detections(fp_first, g, ["a"]).ap["a"] == pytest.approx(0.5)
    assert evaluate_detections(tp_first, g, ["a"]).ap["a"] == pytest.approx(1.0)


def test_many_ties_stable_against_reverse():
    # 40 tied dets: 20 FPs then 20 TPs vs the reverse; a non-stable sort would scramble them.
    n = 20
    boxes = [[1 + 20 * i, 1, 10 + 20 * i, 10] for i in range(n)]
    g = {"1": gt(boxes, [0] * n)}
    fps = [("1", "a", 1.0, [1 + 20 * i, 500, 10 + 20 * i, 510]) for i in range(n)]
    tps = [("1", "a", 1.0, b) for b in boxes]
    # FPs first: prec at recall k/20 = k/(20+k); max over rec >= t is at rec = 1 -> 0.5 for every t -> AP 0.5.
    assert evaluate_detections(dets(fps + tps), g, ["a"]).ap["a"] == pytest.approx(0.5)
    assert evaluate_detections(dets(tps + fps), g, ["a"]).ap["a"] == pytest.approx(1.0)


def test_no_detections_gives_zero():
    g = {"1": gt([A, FAR], [0, 1])}
    r = evaluate_detections(dets([("1", "a", 1.0, A)]), g, CLASSES)
    assert r.ap == {"a": pytest.approx(1.0), "b": 0.0}
    assert r.map == pytest.approx(0.5)
    r = evaluate_detections(Detections.empty(), g, CLASSES)
    assert r.ap == {"a": 0.0, "b": 0.0} and r.num_dets == {"a": 0, "b": 0}


def test_class_without_objects_is_nan_and_excluded():
    # "c" has no GT at all, "b" only a difficult one: npos = 0 for both -> AP NaN, left out of the mAP.
    g = {"1": gt([A, FAR], [0, 1], [False, True])}
    d = dets([("1", "a", 1.0, A), ("1", "c", 0.5, A), ("1", "b", 0.7, FAR)])
    with pytest.warns(RuntimeWarning, match="NaN"):
        r = evaluate_detections(d, g, ["a", "b", "c"])
    assert math.isnan(r.ap["b"]) and math.isnan(r.ap["c"])
    assert r.no_gt_classes == ["b", "c"]
    assert r.map == pytest.approx(1.0)
    assert r.to_json() == {"mAP": pytest.approx(1.0), "AP": {"a": pytest.approx(1.0), "b": None, "c": None}}


def test_iou_exactly_half_counts_with_plus_one():
    # GT [1,1,10,10]: 10 x 10 = 100 px. Det [1,1,10,5]: 10 x 5 = 50 px, inside -> IoU = 50 / 100 = 0.5 exactly -> TP
    # (>= 0.5). Without the +1 it would be 9*4 / (9*9) = 0.44 (FP); with a strict ">" it would be FP too.
    g = {"1": gt([A], [0])}
    half = dets([("1", "a", 1.0, [1, 1, 10, 5])])
    assert evaluate_detections(half, g, ["a"]).ap["a"] == pytest.approx(1.0)
    assert evaluate_detections(half, g, ["a"], min_overlap=0.5000001).ap["a"] == 0.0
    # [1,1,10,4]: 40 / 100 = 0.4 -> FP.
    assert evaluate_detections(dets([("1", "a", 1.0, [1, 1, 10, 4])]), g, ["a"]).ap["a"] == 0.0


def test_ties_in_overlap_go_to_first_gt():
    # Two identical GT boxes; three dets on them: first -> GT0 (TP), second -> GT0 again (tie, first GT wins) -> FP.
    # tp = [1, 1], fp = [0, 1] -> rec [.5, .5], prec [1, .5] -> 6/11 (re-assignment would give 1).
    g = {"1": gt([A, A], [0, 0])}
    r = evaluate_detections(dets([("1", "a", 0.9, A), ("1", "a", 0.8, A)]), g, ["a"])
    assert r.ap["a"] == pytest.approx(6 / 11)


def test_known_pr_curve_11_point_vs_all_point():
    # npos = 4 (one GT in each of 4 images; image 4's GT is never found). Sorted: TP, FP, TP, FP, FP, TP.
    # rec  = .25 .25 .5  .5 .5 .75;  prec = 1 .5 2/3 .5 .4 .5
    # 11-pt: t = 0, .1, .2 -> 1; t = .3, .4, .5 -> 2/3; t = .6, .7 -> .5; t >= .8 -> 0: (3 + 2 + 1) / 11 = 6/11.
    # all-point: envelope 1 | 2/3 | .5 over recall steps of .25: .25 + .25*2/3 + .25*.5 = 13/24.
    g = {str(i): gt([A], [0]) for i in range(1, 5)}
    rows = [
        ("1", "a", 0.9, A),
        ("1", "a", 0.8, FAR),
        ("2", "a", 0.7, A),
        ("2", "a", 0.6, FAR),
        ("3", "a", 0.5, FAR),
        ("3", "a", 0.4, A),
    ]
    r07 = evaluate_detections(dets(rows), g, ["a"])
    np.testing.assert_allclose(r07.recall["a"], [0.25, 0.25, 0.5, 0.5, 0.5, 0.75])
    np.testing.assert_allclose(r07.precision["a"], [1, 0.5, 2 / 3, 0.5, 0.4, 0.5])
    assert r07.ap["a"] == pytest.approx(6 / 11)
    assert evaluate_detections(dets(rows), g, ["a"], use_07_metric=False).ap["a"] == pytest.approx(13 / 24)


def test_recall_exactly_at_thresholds():
    # 10 GT, 3 TPs and nothing else: recall 3/10 does not reach MATLAB's t(4) = 0:0.1:1 (4) = 0.30000000000000004,
    # so 3 of the 11 points are 1 -> AP 3/11 (as VOCevaldet.m computes it); 0.6 and 0.7 do reach t(7) and t(8).
    g = {str(i): gt([A], [0]) for i in range(10)}
    r = evaluate_detections(dets([(str(i), "a", 1.0 - i / 10, A) for i in range(3)]), g, ["a"])
    assert r.ap["a"] == pytest.approx(3 / 11)
    assert voc_ap(np.array([0.6]), np.array([1.0])) == pytest.approx(7 / 11)
    assert voc_ap(np.array([0.7]), np.array([1.0])) == pytest.approx(8 / 11)


def test_unknown_image_or_label_raises():
    g = {"1": gt([A], [0]), "2": gt([A], [1])}
    with pytest.raises(ValueError, match="'nope'"):
        evaluate_detections(dets([("nope", "a", 1.0, A), ("1", "a", 1.0, A)]), g, CLASSES)
    with pytest.raises(ValueError, match="'zebra'"):
        evaluate_detections(dets([("1", "zebra", 1.0, A)]), g, CLASSES)


class _Split:
    """The shape of ``sppnet_exp.data.detection.DetectionSplit`` that the evaluator reads (records, classes)."""

    class _Rec:
        def __init__(self, image_id, boxes, labels, difficult):
            self.image_id, self.boxes, self.labels, self.difficult = image_id, boxes, labels, difficult

    def __init__(self, classes, gts):
        self.classes = classes
        self.records = [self._Rec(i, g.boxes, g.labels, g.difficult) for i, g in gts.items()]


def test_split_like_ground_truth_and_class_subset():
    # Labels index split.classes = [x, a, b]; evaluating only [b, a] remaps them by name.
    g = {"1": gt([A, FAR], [1, 2]), "2": gt([A], [0])}
    split = _Split(["x", "a", "b"], g)
    d = dets([("1", "a", 1.0, A), ("1", "b", 1.0, A), ("2", "x", 1.0, A)])
    r = evaluate_detections(d, split)
    assert r.ap == {"x": pytest.approx(1.0), "a": pytest.approx(1.0), "b": 0.0}
    r = evaluate_detections(d.select(d.labels != "x"), split, ["b", "a"])
    assert list(r.ap) == ["b", "a"] and r.ap == {"b": 0.0, "a": pytest.approx(1.0)} and r.npos == {"b": 1, "a": 1}


def test_result_json():
    r = VOCResult(ap={"a": 0.5, "b": 0.25}, map=0.375, npos={"a": 1, "b": 1}, num_dets={"a": 1, "b": 1})
    assert r.to_json() == {"mAP": 0.375, "AP": {"a": 0.5, "b": 0.25}}


# --- a literal transcription of VOCevaldet's loops, to compare on random cases -----------------------------------


def _reference_ap(d: Detections, g: dict[str, GroundTruth], classes: list[str], use07: bool) -> dict[str, float]:
    out = {}
    for c, name in enumerate(classes):
        gtc = {}
        npos = 0
        for i, rec in g.items():
            m = rec.labels == c
            gtc[i] = (rec.boxes[m].astype(float), rec.difficult[m], [False] * int(m.sum()))
            npos += int((~rec.difficult[m]).sum())
        rows = [k for k in range(len(d)) if d.labels[k] == name]
        rows.sort(key=lambda k: -d.scores[k])  # Python's sort is stable
        tp, fp = [], []
        for k in rows:
            bb = d.boxes[k]
            boxes, diff, det = gtc[d.image_ids[k]]
            ovmax, jmax = -math.inf, -1
            for j in range(len(boxes)):
                bi = [
                    max(bb[0], boxes[j][0]),
                    max(bb[1], boxes[j][1]),
                    min(bb[2], boxes[j][2]),
                    min(bb[3], boxes[j][3]),
                ]
                iw, ih = bi[2] - bi[0] + 1, bi[3] - bi[1] + 1
                if iw > 0 and ih > 0:
                    ua = (
                        (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
                        + (boxes[j][2] - boxes[j][0] + 1) * (boxes[j][3] - boxes[j][1] + 1)
                        - iw * ih
                    )
                    ov = iw * ih / ua
                    if ov > ovmax:
                        ovmax, jmax = ov, j
            if ovmax >= 0.5:
                if diff[jmax]:
                    tp.append(0)
                    fp.append(0)
                elif not det[jmax]:
                    det[jmax] = True
                    tp.append(1)
                    fp.append(0)
                else:
                    tp.append(0)
                    fp.append(1)
            else:
                tp.append(0)
                fp.append(1)
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        rec = tp / npos
        with np.errstate(invalid="ignore"):
            prec = tp / (tp + fp)
        if use07:
            ap = 0.0
            for t in VOC07_THRESHOLDS:  # MATLAB's 0:0.1:1
                p = [x for x, r in zip(prec, rec) if r >= t and not math.isnan(x)]
                ap += (max(p) if p else 0.0) / 11
        else:
            mrec = [0.0, *rec, 1.0]
            mpre = [0.0, *[0.0 if math.isnan(x) else x for x in prec], 0.0]
            for i in range(len(mpre) - 2, -1, -1):
                mpre[i] = max(mpre[i], mpre[i + 1])
            ap = sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])
        out[name] = ap
    return out


@pytest.mark.parametrize("seed", range(6))
def test_matches_loop_reference_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c"]
    g, rows = {}, []
    for i in range(12):
        n = int(rng.integers(0, 6))
        xy = rng.integers(1, 60, size=(n, 2))
        wh = rng.integers(3, 30, size=(n, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        labels = rng.integers(0, 3, n)
        g[f"im{i}"] = GroundTruth(boxes, labels, rng.random(n) < 0.2)
        for b, lab in zip(boxes, labels):
            for _ in range(int(rng.integers(0, 3))):  # jittered hits, some duplicates
                jb = b + rng.integers(-2, 3, 4)
                rows.append((f"im{i}", classes[lab], float(rng.integers(0, 5)), jb.tolist()))  # few score values: ties
        for _ in range(int(rng.integers(0, 4))):  # clutter, sometimes the wrong class
            xy = rng.integers(1, 60, 2)
            rows.append((f"im{i}", classes[rng.integers(0, 3)], float(rng.integers(0, 5)), [*xy, *(xy + 10)]))
    rows = [rows[k] for k in rng.permutation(len(rows))]
    d = dets(rows)
    for use07 in (True, False):
        got = evaluate_detections(d, g, classes, use_07_metric=use07)
        want = _reference_ap(d, g, classes, use07)
        for c in classes:
            if got.npos[c] == 0:
                assert math.isnan(got.ap[c])
            else:
                assert got.ap[c] == pytest.approx(want[c], abs=1e-12), (c, use07)


# --- model combination ------------------------------------------------------------------------------------------


def test_combination_removes_cross_model_duplicates_and_keeps_higher_score():
    a = dets([("1", "a", 2.0, A), ("1", "a", 1.0, FAR)])
    b = dets([("1", "a", 3.0, [2, 2, 11, 11]), ("1", "a", 0.5, [200, 200, 220, 220])])
    c = combine_detections(a, b, nms_thresh=0.3)
    # b's 3.0 box overlaps a's 2.0 box (IoU 81/119 = 0.68 > 0.3): only the 3.0 one survives.
    assert sorted(c.scores.tolist()) == [0.5, 1.0, 3.0]
    assert c.boxes[c.scores == 3.0].tolist() == [[2, 2, 11, 11]]
    # Reversed scores: a wins.
    c = combine_detections(dets([("1", "a", 5.0, A)]), dets([("1", "a", 4.0, [2, 2, 11, 11])]))
    assert c.scores.tolist() == [5.0]
    # Equal scores: the first model's box is kept.
    c = combine_detections(dets([("1", "a", 1.0, A)]), dets([("1", "a", 1.0, [2, 2, 11, 11])]))
    assert c.boxes.tolist() == [A]


def test_combination_is_per_class_and_per_image_and_capped():
    a = dets([("1", "a", 1.0, A), ("2", "a", 1.0, A)])
    b = dets([("1", "b", 1.0, A), ("2", "a", 0.9, [1, 1, 10, 9])])
    c = combine_detections(a, b)
    # Different class (image 1) and different image survive; the image-2 class-a overlap is suppressed.
    assert sorted(zip(c.image_ids, c.labels, c.scores)) == [("1", "a", 1.0), ("1", "b", 1.0), ("2", "a", 1.0)]
    # Cap: 5 disjoint boxes per model -> 10 candidates, keep the top 3 scores.
    many_a = dets([("1", "a", float(s), [1 + 30 * s, 1, 20 + 30 * s, 20]) for s in range(5)])
    many_b = dets([("1", "a", s + 0.5, [1 + 30 * s, 300, 20 + 30 * s, 320]) for s in range(5)])
    c = combine_detections(many_a, many_b, max_per_image=3)
    assert c.scores.tolist() == [4.5, 4.0, 3.5]
    assert len(combine_detections(many_a, many_b, max_per_image=None)) == 10
    assert len(combine_detections(Detections.empty(), Detections.empty())) == 0


def test_voc07_thresholds_are_matlabs_colon() -> None:
    """``0:0.1:1`` as MATLAB computes it: t(4) = 3 * 0.1 = 0.30000000000000004, t(8) = 1 - 3 * 0.1."""
    from sppnet_exp.utils.average_precision import VOC07_THRESHOLDS, matlab_colon

    t = VOC07_THRESHOLDS
    assert len(t) == 11 and t[0] == 0.0 and t[-1] == 1.0
    assert t[3] == 0.30000000000000004 == 3 * 0.1 and t[3] != 3 / 10
    assert t[7] == 1.0 - 3 * 0.1 and t[5] == 5 * 0.1
    assert matlab_colon(0.0, 0.25, 1.0).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_a_recall_of_exactly_three_tenths_misses_the_fourth_threshold() -> None:
    """10 GT, the first three detections correct, then only false positives: recall reaches exactly 3/10, which
    MATLAB's t(4) = 0.30000000000000004 excludes, so AP = 3/11 (t = 0, 0.1, 0.2), not 4/11."""
    from sppnet_exp.utils.average_precision import voc_ap

    tp = np.array([1, 1, 1, 0, 0, 0], dtype=np.float64)
    rec = np.cumsum(tp) / 10
    prec = np.cumsum(tp) / np.arange(1, len(tp) + 1)
    assert rec[2] == 0.3 == 3 / 10
    assert voc_ap(rec, prec) == pytest.approx(3 / 11, abs=1e-15)


def test_evaluate_and_write_saves_compact_pr_points(tmp_path):
    """The per-class PR points beside the detections (what the report's PR pictures read), by hand:
    class a (npos 2): TP, FP, TP -> (recall, precision) after each TP: (0.5, 1), (1, 2/3); class b (npos 1): one FP
    -> only the last point (0, 0)."""
    from sppnet_exp.detection.evaluation.voc_eval import evaluate_and_write, pr_points
    from sppnet_exp.formats.pr_curves import pr_path, read_pr

    g = {"1": gt([A, [20, 20, 40, 40]], [0, 0]), "2": gt([[5, 5, 50, 50]], [1])}
    d = dets([("1", "a", 0.9, A), ("1", "a", 0.8, FAR), ("1", "a", 0.7, [20, 20, 40, 40]), ("2", "b", 0.5, FAR)])
    metrics = evaluate_and_write(d, g, CLASSES, tmp_path / "detections_ftfc7.jsonl")
    assert pr_path(tmp_path / "detections_ftfc7.jsonl") == tmp_path / "pr_ftfc7.json"
    pr = read_pr(tmp_path / "pr_ftfc7.json")
    assert pr["metric"] == "VOC07 11-point" and pr["min_overlap"] == 0.5
    a, b = pr["classes"]["a"], pr["classes"]["b"]
    assert a["recall"] == [0.5, 1.0] and a["precision"] == [1.0, 0.6667] and a["npos"] == 2
    assert a["ap"] == pytest.approx(100 * (6 * 1.0 + 5 * 2 / 3) / 11, abs=1e-3) and a["ap"] == metrics["AP/a"]
    assert b == {"ap": 0.0, "npos": 1, "recall": [0.0], "precision": [0.0]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detections_ftfc7.jsonl", "pr_ftfc7.json"]
    # long curves are thinned evenly to at most max_points, the last point kept
    n = 300
    g = {str(i): gt([A], [0]) for i in range(n)}
    res = evaluate_detections(dets([(str(i), "a", 1.0 - i / n, A) for i in range(n)]), g, CLASSES)
    pts = pr_points(res, max_points=50)["classes"]["a"]
    assert len(pts["recall"]) == 50 and pts["recall"][0] == pytest.approx(1 / n, abs=1e-4) and pts["recall"][-1] == 1.0
    assert "b" not in pr_points(res)["classes"]  # no GT of b: no curve
