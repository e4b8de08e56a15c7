"""Detection benchmarks: SPP 1-scale / 5-scale against R-CNN per image in paired rounds, and selective search.

One backbone (ZF-5 at full width, random weights: timing does not depend on them), one 500x375-like generated
scene with ``windows`` windows (VOC-like sizes, seeded), the same per-image code the timing cells run
(``time_spp_image`` and ``time_rcnn_image`` of :mod:`sppnet_exp.detection.evaluation.timing`).

Pairs (:func:`~sppnet_exp.detection.evaluation.timing_pairs.paired_timing`, the timing cells' own code): each pair
times SPP 1-scale and SPP 5-scale on all ``windows`` windows and R-CNN on a fixed subset of ``rcnn_windows`` of them,
in alternating order (:mod:`sppnet_exp.utils.paired`); the figures are computed per pair and reported as medians
with their 95% intervals. R-CNN's cost is scaled from the subset to ``windows`` by the window count. That is right
only where its cost is linear in the count, which is measured first (``rcnn_linearity``: seconds per window at 128,
256 and 512 windows, interleaved) and reported with the figures. R-CNN runs its windows in
batches of 128, so the counts start at one full batch (a lone smaller batch can cost less per window; the 2,000
windows are 15 full batches and one of 80).

Targets (issue 3, CPU): conv-time speed-up over R-CNN >= 120x at 1 scale and >= 20x at 5 scales (set by pixel
counts: 2000 warped 224^2 windows against one or five whole images); window SPP of all windows <= 10% of the
1-scale conv time; everything outside conv and fc <= 10% of each method's total.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from sppnet_exp.detection.evaluation.timing_pairs import (
    PaperGeometry,
    paired_timing,
    paper_items,
    paper_specs,
    scene,
)
from sppnet_exp.models import build_model
from sppnet_exp.utils.paired import median_interval

TARGETS = {"conv_speedup_1scale": 120.0, "conv_speedup_5scale": 20.0, "window_spp_frac": 0.10, "other_frac": 0.10}


def bench_detection(
    windows: int = 2000,
    short: int = 375,
    scales_1: tuple[int, ...] = (688,),
    scales_5: tuple[int, ...] = (480, 576, 688, 864, 1200),
    width: float = 1.0,
    rcnn_windows: int = 128,
    linearity_counts: tuple[int, ...] = (128, 256, 512),
    min_pairs: int = 8,
    max_pairs: int = 16,
    budget_s: float = 240.0,
) -> dict[str, Any]:
    """Paired per-image conv / fc / other seconds of SPP 1-scale, SPP 5-scale and R-CNN, with the targets."""
    torch.manual_seed(0)
    net = build_model("zf5", width=width).eval()
    geom = PaperGeometry(short=short, windows=windows, scales_1=scales_1, scales_5=scales_5, images=1)
    items = paper_items(geom)
    h, w = items[0][0].shape[-2:]
    t0 = time.perf_counter()
    res = paired_timing(
        net,
        net,
        items,
        *paper_specs(net, geom),
        warp_size=net.input_size,
        padding=geom.padding,
        rcnn_windows=rcnn_windows,
        min_pairs=min_pairs,
        max_pairs=max_pairs,
        warmup=1,
        budget_s=budget_s,
        targets=TARGETS,
        linearity_counts=linearity_counts,
    )
    subset = res["rcnn_windows_timed"] or windows
    return {
        **res,
        "backbone": f"zf5 (width {width}, random weights)",
        "image": [int(h), int(w)],
        "windows": int(windows),
        "rcnn_windows_timed": int(subset),
        "rcnn_scale": windows / subset,
        "bench_seconds": time.perf_counter() - t0,
    }


def bench_proposals(short: int = 375, rounds: int = 5) -> dict[str, Any]:
    """Selective search ("fast", OpenCV) on one scene in this process, one thread: seconds per image over
    ``rounds`` rounds after a warm-up, with the median's interval; images/s per core."""
    import cv2

    from sppnet_exp.detection.proposals.selective_search import selective_search

    cv2.setNumThreads(1)
    img = scene(short).permute(1, 2, 0).numpy()
    selective_search(img, "fast")
    times, counts = [], []
    for i in range(rounds):
        t0 = time.perf_counter()
        counts.append(len(selective_search(img, "fast", seed=i)))
        times.append(time.perf_counter() - t0)
    sec = median_interval(times)
    per_core = median_interval([1.0 / t for t in times])
    return {
        "image": list(img.shape[:2]),
        "mode": "fast",
        "rounds": [{"seconds": t, "proposals": c} for t, c in zip(times, counts, strict=True)],
        "seconds": sec,
        "images_per_s_per_core": per_core,
        "proposals": float(np.mean(counts)),
    }
