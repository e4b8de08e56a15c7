"""``sppnet-evaldet DATA_ROOT DETECTIONS``: VOC07 AP / mAP of a detections file (JSON Lines) on a dataset.

The dataset is read by ``sppnet_exp.data.detection.load_split`` (VOC devkit or LabelImg layout); the evaluator
is ``sppnet_exp.detection.evaluation.voc_eval`` (VOCevaldet semantics). Prints a per-class table (AP in percent)
and the mAP;
``--json OUT`` writes ``{"mAP": ..., "AP": {class: ...}}`` (fractions; ``null`` for a class without GT).
User errors (missing files, unknown image ids or labels, malformed lines, inverted boxes) exit with code 2 and a
one-line message. A file with no detections (of the evaluated classes) is a warning and scores AP 0; with
``--strict`` it is an error (code 2).
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


EPILOG = """\
detections file: JSON Lines, one detection per line (blank lines are skipped), e.g.
  {"image_id": "000001", "label": "dog", "score": 0.93, "box": [48, 240, 195, 371]}
box: [x1, y1, x2, y2] in the VOC convention: 1-based pixel coordinates of the original image, inclusive
  (the top-left pixel is (1, 1); width = x2 - x1 + 1; x1 <= x2 and y1 <= y2, so x2 == x1 is a box one pixel
  wide; x2 < x1 or y2 < y1 is an error). A 0-based [x, y, w, h] box is [x + 1, y + 1, x + w, y + h].
image_id: the image's id in the evaluated split: for the VOC layout the entry of ImageSets/Main/<split>.txt
  (e.g. 000001), for the LabelImg layout the annotation file's stem (cards/img_07.xml -> img_07, normally the
  image's stem too). Ids and labels are matched exactly (case-sensitive).
label: a class name of the dataset (an annotation <name>); score: higher is more confident, ties keep file order.
exit codes: 0 evaluated; 2 user error (missing file, malformed line, inverted box, image id or label not in the
  dataset, and with --strict a file without detections of the evaluated classes).
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``sppnet-evaldet`` (the box and image id conventions are in ``--help``)."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data_root", help="dataset root (VOC devkit layout or LabelImg image+xml folders)")
    p.add_argument("detections", help="detections file: JSON Lines {image_id, label, score, box} (see below)")
    p.add_argument("--split", default="test", help="image set to evaluate on (default: test)")
    p.add_argument("--layout", default="auto", choices=["auto", "voc", "labelimg"], help="dataset layout")
    p.add_argument("--classes", default=None, help="comma-separated classes to evaluate (others are ignored)")
    p.add_argument("--min-overlap", type=float, default=0.5, help="IoU needed for a match (>=; default 0.5)")
    p.add_argument("--all-point", action="store_true", help="all-point AP (VOC2010+) instead of VOC07 11-point")
    p.add_argument("--json", default=None, metavar="OUT", help="write {mAP, AP} (fractions) to this JSON file")
    p.add_argument(
        "--strict",
        action="store_true",
        help="a file without detections (of the evaluated classes) is an error (exit 2), not a warning",
    )
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


def _no_detections(args: argparse.Namespace, total: int) -> None:
    """An empty detections file (or none of the evaluated classes): a warning (AP 0 follows), with --strict an error."""
    what = "no detections" if total == 0 else f"none of its {total} detections is of the classes {args.classes!r}"
    if args.strict:
        raise ValueError(f"{args.detections}: {what} (--strict)")
    print(f"{PROG}: warning: {args.detections}: {what}; every class with ground truth scores AP 0", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from sppnet_exp.data.detection import load_split

    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    if args.classes is not None and not classes:
        raise ValueError("--classes is empty")
    if not 0.0 <= args.min_overlap <= 1.0:
        raise ValueError(f"--min-overlap must be in [0, 1], got {args.min_overlap}")
    dets = read_detections(args.detections)  # first: a bad detections file fails before the dataset is read
    total = len(dets)
    if total == 0:
        _no_detections(args, total)  # with --strict, before the dataset is read
    split = load_split(args.data_root, args.split, classes, layout=args.layout)
    if classes is not None:
        wanted = set(classes)
        dets = dets.select(np.asarray([lab in wanted for lab in dets.labels], dtype=bool))
        if total and len(dets) == 0:
            _no_detections(args, total)
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
