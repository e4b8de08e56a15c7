"""Detection benchmarks: SPP 1-scale / 5-scale against R-CNN per image, and selective search throughput.

Side by side in one run, one backbone (ZF-5 at full width, random weights: timing does not depend on them), one
500x375-like generated scene with ``windows`` windows (VOC-like sizes, seeded). Targets (issue 3, CPU): conv-time
speed-up over R-CNN >= 120x at 1 scale and >= 20x at 5 scales (set by pixel counts: 2000 warped 224^2 windows
against one or five whole images); window SPP of all windows <= 10% of the 1-scale conv time; everything outside
conv and fc <= 10% of the total.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from sppnet_exp.data.transforms import normalize
from sppnet_exp.detection.heads import FCHead
from sppnet_exp.detection.mapping import map_windows, receptive_field, resized_hw, scale_boxes
from sppnet_exp.detection.rcnn import warp_windows
from sppnet_exp.detection.timing import time_rcnn, time_spp, timing_table
from sppnet_exp.detection.window_spp import WindowSPP
from sppnet_exp.models import build_model

TARGETS = {"conv_speedup_1scale": 120.0, "conv_speedup_5scale": 20.0, "window_spp_frac": 0.10, "other_frac": 0.10}


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


def bench_detection(
    windows: int = 2000,
    short: int = 375,
    scales_1: tuple[int, ...] = (688,),
    scales_5: tuple[int, ...] = (480, 576, 688, 864, 1200),
    width: float = 1.0,
) -> dict[str, Any]:
    """Per-image conv / fc / other / total seconds of SPP 1-scale, SPP 5-scale and R-CNN, and the targets."""
    torch.manual_seed(0)
    net = build_model("zf5", width=width).eval()
    img = scene(short)
    h, w = img.shape[-2:]
    boxes = random_windows(windows, w, h)
    geom = receptive_field(net.features)
    head = FCHead.from_fc(net.fc)
    size = net.input_size
    res = {}
    with torch.no_grad():
        for name, scales in (("spp_1scale", scales_1), ("spp_5scale", scales_5)):
            res[name] = time_spp(net.features, head, [img, img], [boxes, boxes], scales, net.levels, geom, size)

        def warp(im: torch.Tensor, bx: np.ndarray) -> torch.Tensor:
            return warp_windows(im, bx, size, 16)

        res["rcnn"] = time_rcnn(net, [img, img], [boxes[:32], boxes], warp)
        # Window SPP alone (as the feature cache runs it: one reused output buffer), at the 1-scale map.
        rh, rw = resized_hw(h, w, scales_1[0])
        x = torch.nn.functional.interpolate(normalize(img)[None], size=(rh, rw), mode="bilinear", align_corners=False)
        fmap = net.features(x)[0]
        cells = torch.from_numpy(
            map_windows(scale_boxes(boxes, min(h, w), scales_1[0]), "paper", geom, *fmap.shape[1:])
        )
        pool = WindowSPP(net.levels)
        out = torch.empty(len(boxes), fmap.shape[0] * sum(n * n for n in net.levels))
        pool(fmap, cells, out=out)
        t0 = time.perf_counter()
        reps = 3
        for _ in range(reps):
            pool(fmap, cells, out=out)
        spp_s = (time.perf_counter() - t0) / reps
    table = timing_table(res, baseline="rcnn")
    s1, s5 = table["spp_1scale"], table["spp_5scale"]
    checks = {
        "conv_speedup_1scale": s1["conv_speedup"],
        "conv_speedup_5scale": s5["conv_speedup"],
        "window_spp_frac": spp_s / s1["conv_s"],
        "other_frac": max(t["other_s"] / t["total_s"] for t in table.values()),
    }
    meets = {k: (v >= TARGETS[k]) if k.startswith("conv_speedup") else (v <= TARGETS[k]) for k, v in checks.items()}
    return {
        "backbone": f"zf5 (width {width}, random weights)",
        "image": [int(h), int(w)],
        "windows": int(windows),
        "scales_1": list(scales_1),
        "scales_5": list(scales_5),
        "threads": torch.get_num_threads(),
        "methods": table,
        "window_spp_s": spp_s,
        "checks": checks,
        "targets": TARGETS,
        "meets": meets,
    }


def bench_proposals(short: int = 375, repeats: int = 3) -> dict[str, Any]:
    """Selective search ("fast", OpenCV) on one scene in this process, one thread: images/s per core."""
    import cv2

    from sppnet_exp.detection.proposals import selective_search

    cv2.setNumThreads(1)
    img = scene(short).permute(1, 2, 0).numpy()
    selective_search(img, "fast")
    times, counts = [], []
    for i in range(repeats):
        t0 = time.perf_counter()
        counts.append(len(selective_search(img, "fast", seed=i)))
        times.append(time.perf_counter() - t0)
    sec = float(np.median(times))
    return {
        "image": list(img.shape[:2]),
        "mode": "fast",
        "seconds": sec,
        "images_per_s_per_core": 1.0 / sec,
        "proposals": float(np.mean(counts)),
    }


def summary_lines(det: dict[str, Any] | None, props: dict[str, Any] | None) -> list[str]:
    """Markdown for the summary."""
    lines: list[str] = []
    if det:
        lines += [
            "## Detection: SPP-net vs R-CNN per image (same backbone, same windows, one run)",
            "",
            f"{det['backbone']}, image {det['image'][1]}x{det['image'][0]} (w x h), {det['windows']} windows, "
            f"{det['threads']} threads.",
            "",
            "| method | conv s | fc s | other s | total s | speed-up | conv speed-up |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, t in det["methods"].items():
            lines.append(
                f"| {name} | {t['conv_s']:.3f} | {t['fc_s']:.3f} | {t['other_s']:.3f} | {t['total_s']:.3f} | "
                f"{t.get('speedup', float('nan')):.1f} | {t.get('conv_speedup', float('nan')):.1f} |"
            )
        lines += ["", "| check | value | target | |", "|---|---|---|---|"]
        for k, v in det["checks"].items():
            op = ">=" if k.startswith("conv_speedup") else "<="
            lines.append(f"| {k} | {v:.3f} | {op} {det['targets'][k]} | {'meets' if det['meets'][k] else 'MISSES'} |")
        lines.append("")
    if props:
        lines += [
            "## Proposals (selective search fast, OpenCV, 1 thread)",
            "",
            f"image {props['image'][0]}x{props['image'][1]}: {props['seconds']:.2f} s/image, "
            f"{props['images_per_s_per_core']:.2f} images/s per core, {props['proposals']:.0f} proposals.",
            "",
        ]
    return lines
