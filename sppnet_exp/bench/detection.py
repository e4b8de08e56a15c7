"""Detection benchmarks: SPP 1-scale / 5-scale against R-CNN per image in paired rounds, and selective search.

One backbone (ZF-5 at full width, random weights: timing does not depend on them), one 500x375-like generated
scene with ``windows`` windows (VOC-like sizes, seeded), the same per-image code the timing cells run
(``time_spp_image`` and ``time_rcnn_image`` of :mod:`sppnet_exp.detection.evaluation.timing`).

Pairs: each pair times SPP 1-scale and SPP 5-scale on all ``windows`` windows and R-CNN on a fixed subset of
``rcnn_windows`` of them, in alternating order (:mod:`.paired`); the figures are computed per pair and reported
as medians with their 95% intervals. R-CNN's cost is scaled from the subset to ``windows`` by the window count.
That is right only where its cost is linear in the count, which is measured first (:func:`rcnn_linearity`:
seconds per window at 128, 256 and 512 windows, interleaved) and reported with the figures. R-CNN runs its windows in
batches of 128, so the counts start at one full batch (a lone smaller batch can cost less per window; the 2,000
windows are 15 full batches and one of 80).

Targets (issue 3, CPU): conv-time speed-up over R-CNN >= 120x at 1 scale and >= 20x at 5 scales (set by pixel
counts: 2000 warped 224^2 windows against one or five whole images); window SPP of all windows <= 10% of the
1-scale conv time; everything outside conv and fc <= 10% of each method's total.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from sppnet_exp.bench.paired import Derived, median_interval, run_pairs
from sppnet_exp.detection.evaluation.timing import time_rcnn_image, time_spp_image
from sppnet_exp.detection.features.heads import FCHead
from sppnet_exp.detection.features.mapping import receptive_field
from sppnet_exp.detection.features.pooling import PoolingSpec, WindowPooler
from sppnet_exp.detection.features.warping import warp_windows
from sppnet_exp.models import build_model

TARGETS = {"conv_speedup_1scale": 120.0, "conv_speedup_5scale": 20.0, "window_spp_frac": 0.10, "other_frac": 0.10}
LINEARITY_TOLERANCE = 0.10  # per-window cost within 10% of its median over the counts: linear enough to scale


def scene(short: int = 375, seed: int = 0) -> torch.Tensor:
    """A generated VOC-like scene (uint8 [3,H,W]) with the short side ``short`` and aspect 4:3."""
    from sppnet_exp.data.generated_det import render_scene

    img, _ = render_scene(np.random.default_rng(seed), 6, min_side=short, max_side=short)
    arr = np.asarray(img.convert("RGB"))
    long = round(short * 4 / 3)
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    size = (short, long)  # landscape, like most VOC images (500x375)
    return torch.nn.functional.interpolate(t[None].float(), size=size, mode="bilinear")[0].round().byte()


def random_windows(n: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """``n`` 1-based boxes with log-uniform sides from 20 px to the image size (like selective search's spread)."""
    rng = np.random.default_rng(seed)
    w = np.exp(rng.uniform(np.log(20), np.log(width), n))
    h = np.exp(rng.uniform(np.log(20), np.log(height), n))
    x1 = rng.uniform(1, width - w + 1)
    y1 = rng.uniform(1, height - h + 1)
    return np.stack([x1, y1, x1 + w - 1, y1 + h - 1], 1).astype(np.float32)


def _ratio(num: str, den: str, key: str, scale: float = 1.0) -> Callable[[dict], float]:
    return lambda p: scale * p[num][key] / p[den][key]


def rcnn_linearity(
    rcnn: Callable[[np.ndarray], dict[str, float]], boxes: np.ndarray, counts: Sequence[int], rounds: int = 2
) -> dict[str, Any]:
    """Seconds per window of R-CNN's conv, fc and warp at each window count (counts interleaved, ``rounds``
    rounds after one warm-up call); ``linear`` when every count's per-window conv cost is within
    :data:`LINEARITY_TOLERANCE` of the median over counts."""
    rcnn(boxes[: min(counts)])
    per: dict[int, list[dict[str, float]]] = {int(k): [] for k in counts}
    for r in range(rounds):
        for k in counts if r % 2 == 0 else list(counts)[::-1]:
            t = rcnn(boxes[:k])
            per[int(k)].append({m: t[m] / k for m in ("conv_s", "fc_s", "other_s")})
    rows = []
    for k, ts in per.items():
        rows.append({"windows": k, **{m: float(np.median([t[m] for t in ts])) for m in ("conv_s", "fc_s", "other_s")}})
    conv = np.array([r["conv_s"] for r in rows])
    deviation = float(np.max(np.abs(conv / np.median(conv) - 1.0)))
    return {
        "counts": [int(k) for k in counts],
        "rounds": rounds,
        "per_window_s": rows,
        "max_deviation": deviation,
        "tolerance": LINEARITY_TOLERANCE,
        "linear": deviation <= LINEARITY_TOLERANCE,
    }


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
    img = scene(short)
    h, w = img.shape[-2:]
    boxes = random_windows(windows, w, h)
    geom = receptive_field(net.features)
    head = FCHead.from_fc(net.fc).eval()
    size = net.input_size

    def spp(scales: tuple[int, ...]) -> Callable[[], dict[str, float]]:
        pooler = WindowPooler(PoolingSpec(geom, tuple(net.levels), scales, target=size))
        return lambda: time_spp_image(net.features, head, img, boxes, pooler)

    def rcnn_on(bx: np.ndarray) -> dict[str, float]:
        return time_rcnn_image(net, head, img, bx, lambda im, b: warp_windows(im, b, size, 16))

    subset = min(rcnn_windows, windows)
    scale = windows / subset
    t0 = time.perf_counter()
    with torch.no_grad():
        counts = tuple(k for k in linearity_counts if k <= windows) or (subset,)
        linearity = rcnn_linearity(rcnn_on, boxes, counts)
        derived = {
            "conv_speedup_1scale": Derived(
                _ratio("rcnn", "spp_1scale", "conv_s", scale), TARGETS["conv_speedup_1scale"]
            ),
            "conv_speedup_5scale": Derived(
                _ratio("rcnn", "spp_5scale", "conv_s", scale), TARGETS["conv_speedup_5scale"]
            ),
            "speedup_1scale": Derived(lambda p: scale * _total(p["rcnn"]) / _total(p["spp_1scale"])),
            "speedup_5scale": Derived(lambda p: scale * _total(p["rcnn"]) / _total(p["spp_5scale"])),
            "window_spp_frac": Derived(_pool_frac, TARGETS["window_spp_frac"], "<="),
            "other_frac": Derived(_other_frac, TARGETS["other_frac"], "<="),
        }
        res = run_pairs(
            {"spp_1scale": spp(scales_1), "spp_5scale": spp(scales_5), "rcnn": lambda: rcnn_on(boxes[:subset])},
            derived,
            min_pairs=min_pairs,
            max_pairs=max_pairs,
            warmup=1,
            budget_s=budget_s,
        )
    methods = {}
    for name, figures in res["sides"].items():
        k = scale if name == "rcnn" else 1.0
        methods[name] = {key: (v["median"] * k if key.endswith("_s") else v["median"]) for key, v in figures.items()}
        methods[name]["total_s"] = methods[name]["conv_s"] + methods[name]["fc_s"] + methods[name]["other_s"]
        if name == "rcnn":
            methods[name]["windows"] = float(windows)
    return {
        **res,
        "backbone": f"zf5 (width {width}, random weights)",
        "image": [int(h), int(w)],
        "windows": int(windows),
        "rcnn_windows_timed": int(subset),
        "rcnn_scale": scale,
        "rcnn_linearity": linearity,
        "scales_1": list(scales_1),
        "scales_5": list(scales_5),
        "threads": torch.get_num_threads(),
        "methods": methods,
        "targets": TARGETS,
        "bench_seconds": time.perf_counter() - t0,
    }


def _total(t: dict[str, float]) -> float:
    return t["conv_s"] + t["fc_s"] + t["other_s"]


def _pool_frac(p: dict[str, dict[str, float]]) -> float:
    return p["spp_1scale"]["pool_s"] / p["spp_1scale"]["conv_s"]


def _other_frac(p: dict[str, dict[str, float]]) -> float:
    return max(t["other_s"] / _total(t) for t in p.values())


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
