"""``sppnet-evaldet DATA_ROOT DETECTIONS``: VOC07 AP / mAP of a detections file (JSON Lines) on a dataset.

The dataset is read by ``sppnet_exp.data.detection.load_split`` (VOC devkit or LabelImg layout); the evaluator
is ``sppnet_exp.detection.evaluation.voc_eval`` (VOCevaldet semantics). Prints a per-class table (AP in percent)
and the mAP;
``--json OUT`` writes ``{"mAP": ..., "AP": {class: ...}}`` (fractions; ``null`` for a class without GT).
User errors (missing files, unknown image ids or labels, malformed lines) exit with code 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Sequence

import numpy as np

from sppnet_exp.detection.evaluation.voc_eval import VOCResult, evaluate_detections
from sppnet_exp.detection.structures.detections import read_detections
from sppnet_exp.utils.io import atomic_write_json

PROG = "sppnet-evaldet"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("data_root", help="dataset root (VOC devkit layout or LabelImg image+xml folders)")
    p.add_argument("detections", help="detections file: JSON Lines {image_id, label, score, box}")
    p.add_argument("--split", default="test", help="image set to evaluate on (default: test)")
    p.add_argument("--layout", default="auto", choices=["auto", "voc", "labelimg"], help="dataset layout")
    p.add_argument("--classes", default=None, help="comma-separated classes to evaluate (others are ignored)")
    p.add_argument("--min-overlap", type=float, default=0.5, help="IoU needed for a match (>=; default 0.5)")
    p.add_argument("--all-point", action="store_true", help="all-point AP (VOC2010+) instead of VOC07 11-point")
    p.add_argument("--json", default=None, metavar="OUT", help="write {mAP, AP} (fractions) to this JSON file")
    return p


def format_table(result: VOCResult) -> str:
    """Per-class AP (percent, 2 decimals), GT count and detection count, then the mAP."""
    width = max([len("class"), len("mAP"), *(len(c) for c in result.ap)])
    lines = [f"{'class':<{width}}  {'AP(%)':>7}  {'npos':>6}  {'dets':>8}"]
    for c, ap in result.ap.items():
        shown = "n/a" if math.isnan(ap) else f"{100 * ap:.2f}"
        lines.append(f"{c:<{width}}  {shown:>7}  {result.npos[c]:>6}  {result.num_dets[c]:>8}")
    shown = "n/a" if math.isnan(result.map) else f"{100 * result.map:.2f}"
    lines.append(f"{'mAP':<{width}}  {shown:>7}")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from sppnet_exp.data.detection import load_split

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    if args.classes is not None and not classes:
        raise ValueError("--classes is empty")
    if not 0.0 <= args.min_overlap <= 1.0:
        raise ValueError(f"--min-overlap must be in [0, 1], got {args.min_overlap}")
    dets = read_detections(args.detections)  # first: a bad detections file fails before the dataset is read
    split = load_split(args.data_root, args.split, classes, layout=args.layout)
    if classes is not None:
        wanted = set(classes)
        dets = dets.select(np.asarray([lab in wanted for lab in dets.labels], dtype=bool))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = evaluate_detections(
            dets, split, classes, min_overlap=args.min_overlap, use_07_metric=not args.all_point
        )
    metric = "all-point AP" if args.all_point else "VOC07 11-point AP"
    print(
        f"{args.detections}: {len(dets)} detections on {len(split)} images of split {args.split!r} "
        f"({getattr(split, 'layout', args.layout)} layout); "
        f"{metric}, IoU >= {args.min_overlap:g}"
    )
    print(format_table(result))
    if result.no_gt_classes:
        print(f"note: no non-difficult ground truth for {result.no_gt_classes}: AP n/a, left out of the mAP")
    if args.json:
        atomic_write_json(args.json, result.to_json())
        print(f"wrote {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``sppnet-evaldet``); returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (OSError, ValueError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
