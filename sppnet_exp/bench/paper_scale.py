"""Paper-scale resources of detection: seconds, disk and memory per image at VOC 2007's geometry, extrapolated.

Nothing here can run VOC07 itself on a laptop, so each stage is measured per image at the real geometry — ZF-5
(SPP-net) and AlexNet (R-CNN) at full width with random weights (time, bytes and memory do not depend on the
weights), a 500x375 VOC-like scene, 2,000 windows, s = 688 and the five scales, the paper configuration's
settings (``scale=detect_paper``: fine-tuning chunks and workers, SVM cache bound and dtype, box-regression store) —
through the same code the cells run. Each stage runs in a fresh process (spawn), so its peak RSS is its own.

VOC07 totals are the per-image figures times the image counts (5,011 trainval, 4,952 test) plus the state a
stage accumulates at VOC07 size, from the configuration's bounds; every formula is written into the JSON beside
its figure (``formulas``). Assumed counts (GT boxes and box-regression examples per image) are named as such.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

VOC07 = {"trainval": 5011, "test": 4952}
ASSUMED = {
    "gt_per_trainval_image": 3.1,  # objects per VOC07 trainval image, difficult included (assumed, ~15.6k objects)
    "bbox_examples_per_image": 90,  # windows with IoU > 0.5 per image (assumed: the 450k upper figure)
}
TARGETS = {"voc07_disk_gb.table9": 130.0, "voc07_disk_gb.table12": 260.0, "peak_rss_gb": 32.0}


def _rss_gb() -> float:
    """Peak resident memory of this process's address space so far: ``VmHWM`` (Linux; it starts afresh at the
    exec of a spawned process, where ``ru_maxrss`` keeps the parent's peak), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _scene(short: int, windows: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    from sppnet_exp.detection.evaluation.timing_pairs import random_windows, scene

    img = scene(short)
    h, w = img.shape[-2:]
    boxes = random_windows(windows, w, h)
    gt = boxes[np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[[0, 7, 19]]]
    return img, boxes, gt


def _roidb(img: torch.Tensor, boxes: np.ndarray, gt: np.ndarray, n: int, num_classes: int = 20) -> list:
    from types import SimpleNamespace

    from sppnet_exp.detection.structures.roidb import build_windows

    h, w = img.shape[-2:]
    out = []
    for k in range(n):
        rec = SimpleNamespace(
            image_id=f"im{k}", width=w, height=h, boxes=gt, labels=np.arange(len(gt)) % num_classes,
            difficult=np.zeros(len(gt), bool),
        )  # fmt: skip
        out.append(build_windows(rec, boxes, num_classes))
    return out


def _write_maps(root: Path, net: torch.nn.Module, img: torch.Tensor, scales: tuple[int, ...], ids: list[str]) -> Any:
    """conv5 of ``img`` (and its mirror) at ``scales`` computed once, stored under every id; the cache."""
    from sppnet_exp.data.transforms import normalize
    from sppnet_exp.detection.features.conv_cache import ConvCache, write_maps

    cache = ConvCache(root, scales, "bench")
    with torch.no_grad():
        for flip in (False, True):
            x = normalize(img.flip(-1) if flip else img)[None]
            write_maps(net.features, cache, ids[0], x, scales, flip)
            for other in ids[1:]:
                for s in scales:
                    cache.put(other, s, cache.get(ids[0], s, flip), flip)
    return cache


def stage_proposals(short: int, windows: int, images: int) -> dict[str, Any]:
    """Selective search ("fast") per image, and the bytes of its cached boxes."""
    import cv2

    from sppnet_exp.detection.proposals.selective_search import selective_search

    cv2.setNumThreads(1)
    img = _scene(short, windows)[0].permute(1, 2, 0).numpy()
    selective_search(img, "fast")
    t0 = time.perf_counter()
    for i in range(images):
        boxes = selective_search(img, "fast", seed=i)
    return {
        "s_per_image": (time.perf_counter() - t0) / images,
        "disk_bytes_per_image": int(windows * 4 * 4 + 128),  # the cache keeps float32 (K, 4) .npy per image
        "boxes": int(len(boxes)),
        "rss_gb": _rss_gb(),
    }


def stage_conv5(short: int, windows: int, images: int, scales: tuple[int, ...]) -> dict[str, Any]:
    """conv5 of one image at ``scales`` (ZF-5, full width): seconds per image and the bytes the cache stores."""
    from sppnet_exp.data.transforms import normalize
    from sppnet_exp.detection.features.conv_cache import ConvCache, write_maps
    from sppnet_exp.models import build_model

    torch.manual_seed(0)
    net = build_model("zf5").eval()
    img = _scene(short, windows)[0]
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        cache = ConvCache(tmp, scales, "bench")
        x = normalize(img)[None]
        write_maps(net.features, cache, "warm", x, scales, False)
        t0 = time.perf_counter()
        conv = sum(write_maps(net.features, cache, f"im{i}", x, scales, False) for i in range(images))
        total = time.perf_counter() - t0
        nbytes = cache.bytes(["im0"])
    return {
        "s_per_image": total / images,
        "conv_s_per_image": conv / images,
        "disk_bytes_per_image": int(nbytes),
        "image": f"{img.shape[-1]}x{img.shape[-2]}",
        "rss_gb": _rss_gb(),
    }


def stage_prepare_maps(root: str, short: int, windows: int, scales: tuple[int, ...], images: int) -> dict[str, Any]:
    """conv5 maps (and the mirrored image's) of ``images`` copies of the scene under ``root`` (for the next stage)."""
    from sppnet_exp.models import build_model

    torch.manual_seed(0)
    net = build_model("zf5").eval()
    img = _scene(short, windows)[0]
    cache = _write_maps(Path(root), net, img, scales, [f"im{k}" for k in range(images)])
    ids = [f"im{k}" for k in range(images)]
    return {"chunk_bytes_per_image": int((cache.bytes(ids) + cache.bytes(ids, flip=True)) / images)}


def stage_finetune_worker(
    root: str, short: int, windows: int, steps: int, scales: tuple[int, ...], chunk_images: int, batch: int
) -> dict[str, Any]:
    """What one fine-tuning loader worker does: load a chunk of ``chunk_images`` images' maps (5 scales, both
    orientations) and pool batches on the fly (random scale, flips). Seconds per batch; RSS before and after."""
    from sppnet_exp.detection.features.conv_cache import ConvCache
    from sppnet_exp.detection.features.pooling import PoolingSpec
    from sppnet_exp.detection.finetune.batches import PooledWindows
    from sppnet_exp.models import build_model
    from sppnet_exp.models.geometry import receptive_field

    torch.set_num_threads(1)  # as in a loader worker
    geom = receptive_field(build_model("zf5").features)
    img, boxes, gt = _scene(short, windows)
    roidb = _roidb(img, boxes, gt, chunk_images)
    spec = PoolingSpec(geom, (6, 3, 2, 1), scales)
    base = _rss_gb()
    source = PooledWindows(ConvCache(root, scales, "bench"), spec, True, True, chunk_images, steps_per_chunk=steps + 1)
    kw = {"batch_size": batch, "fg_fraction": 0.25, "fg_thresh": 0.5, "bg_thresh": (0.1, 0.5)}
    it = iter(source.batches(roidb, np.arange(len(roidb)), kw, steps + 1, seed=0))
    next(it)  # loads the chunk's maps
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    return {"s_per_batch": (time.perf_counter() - t0) / steps, "rss_base_gb": base, "rss_gb": _rss_gb()}


def stage_finetune_step(batch: int, steps: int) -> dict[str, Any]:
    """The training process of SPP fine-tuning: fc6, fc7, fc8 (21-way) forward + backward + SGD on 12,800-d
    batches (the step the workers feed). Seconds per step and RSS."""
    from sppnet_exp.detection.finetune.fc import FCFineTuner

    torch.manual_seed(0)
    tuner = FCFineTuner(12800, 4096, 20)
    opt = torch.optim.SGD(tuner.parameters(), lr=1e-4, momentum=0.9, weight_decay=5e-4)
    x, y = torch.randn(batch, 12800), torch.randint(0, 21, (batch,))
    for k in range(steps + 1):
        if k == 1:
            t0 = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(tuner(x), y).backward()
        opt.step()
    return {"s_per_step": (time.perf_counter() - t0) / steps, "rss_gb": _rss_gb()}


def stage_spp_image(short: int, windows: int, images: int, scales: tuple[int, ...]) -> dict[str, Any]:
    """One image of the SVM-mining and test passes: pool every window from cached conv5 (the one pooling path),
    apply the four rows' layers (pretrained and fine-tuned fc6/fc7), score 20 classes and run NMS."""
    from sppnet_exp.detection.evaluation.inference import detect_image, scores_for
    from sppnet_exp.detection.features.heads import FCHead
    from sppnet_exp.detection.features.pooling import PoolingSpec, WindowPooler
    from sppnet_exp.detection.features.windows import SPPFeatures
    from sppnet_exp.models import build_model
    from sppnet_exp.models.geometry import receptive_field

    torch.manual_seed(0)
    net = build_model("zf5").eval()
    img, boxes, gt = _scene(short, windows)
    roidb = _roidb(img, boxes, gt, 1)
    spec = PoolingSpec(receptive_field(net.features), tuple(net.levels), scales)
    pre, ft = FCHead.from_fc(net.fc).eval(), FCHead.from_fc(net.fc).eval()
    rng = np.random.default_rng(0)
    spec_dim = int(net.pool.output_dim(256))
    w = {d: rng.normal(size=(d, 20)).astype(np.float32) for d in (spec_dim, 4096)}
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        cache = _write_maps(Path(tmp), net, img, scales, ["im0"])
        src = SPPFeatures(cache, roidb, WindowPooler(spec))
        times = []
        for _ in range(images + 1):
            t0 = time.perf_counter()
            p5 = src.rows(0)
            t_pool = time.perf_counter() - t0
            feats = [p5, pre.layer_features(p5, "fc6"), ft.layer_features(p5, "fc6"), ft.layer_features(p5, "fc7")]
            for f in feats:
                s = scores_for(f, w[f.shape[1]], np.zeros(20, np.float32))
                detect_image("im0", img.shape[-1], img.shape[-2], roidb[0].boxes, s)
            times.append((time.perf_counter() - t0, t_pool))
    total, pool = np.mean(times[1:], axis=0)
    return {"s_per_image": float(total), "pool_s_per_image": float(pool), "dim": int(spec_dim), "rss_gb": _rss_gb()}


def stage_rcnn_image(short: int, windows: int, subset: int) -> dict[str, Any]:
    """R-CNN (AlexNet) on one image: ``subset`` windows warped on the device and sent through the net, scaled to
    all windows by the count (linear in it: :func:`sppnet_exp.detection.evaluation.timing_pairs.rcnn_linearity`)."""
    from sppnet_exp.detection.features.windows import RCNNFeatures
    from sppnet_exp.models import build_model

    torch.manual_seed(0)
    net = build_model("alexnet", head="nospp").eval()
    img, boxes, gt = _scene(short, windows)
    roidb = _roidb(img, boxes[:subset], gt, 1)
    src = RCNNFeatures(net, lambda i: img, roidb, size=int(net.input_size), padding=16)
    src.rows(0, np.arange(8))
    t0 = time.perf_counter()
    src.rows(0)
    s = (time.perf_counter() - t0) * windows / len(roidb[0])
    return {"s_per_image": s, "windows_timed": int(len(roidb[0])), "disk_bytes_per_image": 0, "rss_gb": _rss_gb()}


def _in_process(fn: str, kwargs: dict[str, Any], out: Any) -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out.put(globals()[fn](**kwargs))


def run_stage(fn: str, **kwargs: Any) -> dict[str, Any]:
    """Run ``fn(**kwargs)`` in a fresh spawned process (its own peak RSS) and return its figures."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_in_process, args=(fn, kwargs, q))
    p.start()
    res = q.get(timeout=1800)
    p.join()
    if p.exitcode != 0:
        raise RuntimeError(f"paper-scale stage {fn} failed (exit code {p.exitcode})")
    return res


def _finetune_stage(
    short: int, windows: int, steps: int, scales: tuple[int, ...], chunk_images: int, batch: int
) -> dict[str, Any]:
    """The worker side (maps prepared, then pooled batches) and the training step, each in its own process."""
    with tempfile.TemporaryDirectory() as tmp:
        maps = run_stage(
            "stage_prepare_maps", root=tmp, short=short, windows=windows, scales=scales, images=chunk_images
        )
        worker = run_stage(
            "stage_finetune_worker", root=tmp, short=short, windows=windows, steps=steps, scales=scales,
            chunk_images=chunk_images, batch=batch,
        )  # fmt: skip
    step = run_stage("stage_finetune_step", batch=batch, steps=max(2, steps // 2))
    return {
        "s_per_batch": worker["s_per_batch"],
        "s_per_step": step["s_per_step"],
        "chunk_bytes_per_image": maps["chunk_bytes_per_image"],
        "rss_gb": worker["rss_gb"],
        "worker_rss_base_gb": worker["rss_base_gb"],
        "step_rss_gb": step["rss_gb"],
    }


def _paper_settings() -> dict[str, Any]:
    """The paper configuration's settings the estimates depend on (``scale=detect_paper``)."""
    from omegaconf import OmegaConf

    from sppnet_exp.config import compose_config

    cfg = compose_config("detect", ["scale=detect_paper", "logger=none"])
    ft = cfg.scale.finetune
    return {
        "scales_1": [int(s) for s in cfg.scale.scales_1],
        "scales_5": [int(s) for s in cfg.scale.scales_5],
        "images_per_chunk": int(ft.images_per_chunk),
        "finetune_workers": int(ft.num_workers),
        "finetune_batch": int(ft.batch_size),
        "max_negatives": cfg.svm.max_negatives,
        "cache_dtype": str(cfg.svm.cache_dtype),
        "bbox_store_dtype": str(cfg.detector.bbox_reg.get("store_dtype", "float32")),
        "svm": OmegaConf.to_container(cfg.svm, resolve=True),
    }


def bench_paper_scale(
    short: int = 375, windows: int = 2000, images: int = 2, finetune_steps: int = 10, chunk_images: int = 6
) -> dict[str, Any]:
    """Every stage's per-image figures and the VOC07 totals (see the module docstring)."""
    t_start = time.perf_counter()
    st = _paper_settings()
    s1, s5 = tuple(st["scales_1"]), tuple(st["scales_5"])
    stages = {
        "proposals": run_stage("stage_proposals", short=short, windows=windows, images=images),
        "conv5_1scale": run_stage("stage_conv5", short=short, windows=windows, images=images, scales=s1),
        "conv5_5scale": run_stage("stage_conv5", short=short, windows=windows, images=images, scales=s5),
        "finetune_spp": _finetune_stage(short, windows, finetune_steps, s5, chunk_images, st["finetune_batch"]),
        "svm_test_spp_5scale": run_stage("stage_spp_image", short=short, windows=windows, images=images, scales=s5),
        "rcnn_alexnet": run_stage("stage_rcnn_image", short=short, windows=windows, subset=128),
    }  # fmt: skip
    n_tv, n_te = VOC07["trainval"], VOC07["test"]
    n_all = n_tv + n_te
    c5 = stages["conv5_5scale"]["disk_bytes_per_image"]
    props = stages["proposals"]["disk_bytes_per_image"]
    dim, fc = stages["svm_test_spp_5scale"]["dim"], 4096
    row_dims = [dim, fc, fc, fc]  # pool5, fc6, ftfc6, ftfc7
    svm_files = 4 * 20 * (dim + 1) * 4  # W and b of four rows, float32
    table9 = n_all * c5 + n_tv * c5 + n_all * props + 2 * svm_files  # conv5 + flipped trainval + proposals
    disk = {"table9": table9 / 1e9, "table10": table9 / 1e9, "table12": (2 * (n_all + n_tv) * c5 + n_all * props) / 1e9}
    # state accumulated at VOC07 size
    gt = ASSUMED["gt_per_trainval_image"] * n_tv
    neg_bytes = 2 if st["cache_dtype"] == "float16" else 4
    max_neg = st["max_negatives"]
    pos_gb = gt * sum(row_dims) * 4 / 1e9
    cache_gb = (20 * max_neg * sum(row_dims) * neg_bytes / 1e9) if max_neg else float("inf")
    fit_gb = ((max_neg or 0) + gt / 20) * dim * 8 / 1e9  # one class's liblinear input in float64
    store = 2 if st["bbox_store_dtype"] == "float16" else 4
    bbox_gb = (ASSUMED["bbox_examples_per_image"] * n_tv * dim * store + (dim + 1) ** 2 * 8) / 1e9
    ft = stages["finetune_spp"]
    chunk_gb = st["images_per_chunk"] * ft["chunk_bytes_per_image"] / 1e9
    voc_rss = {
        "proposals": stages["proposals"]["rss_gb"],
        "conv5_1scale": stages["conv5_1scale"]["rss_gb"],
        "conv5_5scale": stages["conv5_5scale"]["rss_gb"],
        "finetune_spp": ft["step_rss_gb"] + st["finetune_workers"] * (ft["worker_rss_base_gb"] + chunk_gb),
        "svm_spp": stages["svm_test_spp_5scale"]["rss_gb"] + pos_gb + cache_gb + fit_gb,
        "bbox_reg_spp": stages["svm_test_spp_5scale"]["rss_gb"] + bbox_gb,
        "test_spp": stages["svm_test_spp_5scale"]["rss_gb"],
        "rcnn_alexnet": stages["rcnn_alexnet"]["rss_gb"],
    }
    for name, s in stages.items():
        s["voc07_rss_gb"] = voc_rss.get(name, s["rss_gb"])
    peak = max(voc_rss.values())
    hours_cpu = {
        "conv5_5scale": stages["conv5_5scale"]["s_per_image"] * (n_all + n_tv) / 3600,
        "finetune_spp_300k_steps": max(ft["s_per_batch"] / st["finetune_workers"], ft["s_per_step"]) * 300_000 / 3600,
        "svm_mining_pass": stages["svm_test_spp_5scale"]["s_per_image"] * n_tv / 3600,
        "test_pass": stages["svm_test_spp_5scale"]["s_per_image"] * n_te / 3600,
        "rcnn_test_pass": stages["rcnn_alexnet"]["s_per_image"] * n_te / 3600,
    }
    checks = {"voc07_disk_gb.table9": disk["table9"], "voc07_disk_gb.table12": disk["table12"], "peak_rss_gb": peak}
    return {
        "voc07_disk_gb": disk,
        "peak_rss_gb": peak,
        "stages": stages,
        "voc07_rss_gb": voc_rss,
        "voc07_hours_on_this_cpu": hours_cpu,
        "settings": {k: v for k, v in st.items() if k != "svm"},
        "assumed": ASSUMED,
        "voc07": VOC07,
        "formulas": {
            "table9_disk": "(trainval + test) x conv5_5scale + trainval x conv5_5scale (flipped, fine-tuning) + "
            "(trainval + test) x proposals + SVM files; SPP 1-scale reads the 688 maps of the same cache, R-CNN "
            "caches nothing per window at this scale",
            "table10_disk": "as table9 (the same ZF-5's conv5 cache; R-CNN ZF-5 caches nothing)",
            "table12_disk": "two nets' conv5 caches (net 2 has its own pretrained weights) + proposals",
            "finetune_rss": "training process (measured step) + workers x (a worker's measured base + images_per_chunk "
            "x chunk bytes per image (5 scales, both orientations))",
            "svm_rss": "measured per-image pass + positives (GT x sum of row dims x 4 B) + negative caches (20 "
            "classes x max_negatives x sum of row dims x cache bytes) + one class's float64 liblinear input",
            "bbox_rss": "measured per-image pass + examples x pool5 dim x store bytes + the (D+1)^2 float64 Gram",
        },
        "targets": TARGETS,
        "meets": {k: bool(v <= TARGETS[k]) for k, v in checks.items()},
        "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(0),
        "threads": torch.get_num_threads(),
        "bench_seconds": time.perf_counter() - t_start,
    }


if __name__ == "__main__":  # python -m sppnet_exp.bench.paper_scale: print the figures
    import json

    json.dump(bench_paper_scale(), sys.stdout, indent=2, default=float)
