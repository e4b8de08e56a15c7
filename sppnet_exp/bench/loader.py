"""Loader benchmark: the float32 worker path against the uint8 path, on real-size JPEGs, in paired rounds.

The bench writes its own ImageNet-layout folder of ``500 x 375`` JPEGs at quality 90 (procedurally drawn
scenes with sensor-like noise, ~90 KB each, about the size of an ILSVRC2012 training image) and loads it with
the project's ``ImageNetDataModule`` at the paper's geometry (short side 256, 224 crops, flip, PCA lighting),
once with ``worker_output=float32`` (the workers normalise: the original path) and once with ``uint8`` (the
workers ship uint8 crops; the device normalises). Both loaders run with the same workers, batch and images
and stay alive (persistent workers); each **side** of a pair is one round of ``batches`` batches from its
loader (:mod:`sppnet_exp.utils.paired`: rounds interleaved A B, B A, ...; ratios per pair).

**Images/s per core** = images of the round / CPU seconds the loader spent on them: the user + system time
of its worker processes (``/proc/<pid>/stat``) plus that of the main process (``time.process_time``), from
the start of the round to its last batch. Between rounds a loader holds no work, so the other side's idle
workers cost nothing, and a descheduled process costs no CPU time: the figure does not depend on how busy a
shared machine is. ``cores_for_6000 = 6000 / (uint8 images/s per core)``. Wall images/s (steady state: from
the batch by which every worker has delivered one to the last) are recorded too.

**Bytes per batch** is what the workers put through their queues (every tensor of the batch), measured once
per side (deterministic). The device-side finish of the uint8 path (normalisation and lighting in the batch
hook) is timed separately on the CPU, where a CPU-only run pays it in the main process.

With a CUDA device the bench adds the ``data.decode=gpu`` path (workers read bytes; nvJPEG decodes, the GPU
resizes and crops) in images/s, and one ZF-5 training step at 224 (paper width, SPP, bf16 autocast,
channels-last, batch 128) in images/s. Without one these are recorded as not measured.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Sampler

from sppnet_exp.data.batches import batch_nbytes, finish_batch
from sppnet_exp.data.device_decode import EncodedBatch
from sppnet_exp.data.generated import SHAPE_NAMES, render_image
from sppnet_exp.data.imagenet import ImageNetDataModule
from sppnet_exp.utils.paired import Derived, median_interval, run_pairs

__all__ = ["SPEEDUP_TARGET", "BYTES_TARGET", "bench_loader", "make_jpegs"]

SPEEDUP_TARGET = 1.3  # uint8 images/s per core over float32's
BYTES_TARGET = 3.0  # float32 bytes per batch over uint8's
FEED_TARGET = 6000.0  # images/s a multi-GPU ZF-5 run consumes (issue 10)
PAPER_GEOMETRY = {"resize": 256, "crop": 224, "full_resize": 256, "train_crop": "five", "flip": True, "color": 0.1}


def make_jpegs(folder: str | Path, n: int, classes: int = 10, size: tuple[int, int] = (375, 500)) -> dict[str, Any]:
    """``n`` JPEGs of ``size`` (h, w) at quality 90 in ``folder/train/<class>/`` (+ one per class in ``val/``)."""
    folder = Path(folder)
    rng = np.random.default_rng(0)
    h, w = size
    sizes = []
    for i in range(n + classes):
        split, cls = ("train", i % classes) if i < n else ("val", i - n)
        img = render_image(rng, SHAPE_NAMES[cls % len(SHAPE_NAMES)], min(h, w), min(h, w)).resize((w, h))
        arr = np.asarray(img, dtype=np.float32) + rng.normal(0.0, 14.0, (h, w, 3))  # sensor-like noise
        buf = io.BytesIO()
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
        path = folder / split / f"c{cls:02d}" / f"{split}_{i:05d}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buf.getvalue())
        sizes.append(len(buf.getvalue()))
    return {"images": n, "size_hw": [h, w], "quality": 90, "mean_kb": round(float(np.mean(sizes)) / 1e3, 1)}


class RoundSampler(Sampler[list[int]]):
    """``batches`` batches of ``batch_size`` indices per iteration, walking one seeded permutation cyclically.

    Two samplers with the same arguments yield the same batches round after round, so both sides of a pair
    load the same images.
    """

    def __init__(self, n: int, batch_size: int, batches: int, seed: int = 0) -> None:
        self.order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        self.batch_size, self.batches, self.pos = batch_size, batches, 0

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.batches):
            idx = [self.order[(self.pos + i) % len(self.order)] for i in range(self.batch_size)]
            self.pos = (self.pos + self.batch_size) % len(self.order)
            yield idx

    def __len__(self) -> int:
        return self.batches


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process from ``/proc/<pid>/stat`` (None where unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return None


def _cpu_s(pids: list[int]) -> tuple[float, float | None]:
    """(main process CPU s, workers' CPU s or None)."""
    per = [_proc_cpu_s(p) for p in pids]
    return time.process_time(), (sum(per) if per and all(x is not None for x in per) else None)


class _Side:
    """One persistent loader; each call is one round of its batches (see the module docstring)."""

    def __init__(self, loader: DataLoader, workers: int, device: str | None = None) -> None:
        self.loader, self.workers, self.device = loader, workers, device

    def __call__(self) -> dict[str, float]:
        it = iter(self.loader)
        pids = [w.pid for w in getattr(it, "_workers", [])]
        main0, work0 = _cpu_s(pids)
        arrivals, images = [], []
        for batch in it:
            if isinstance(batch, EncodedBatch):  # the device-decode path finishes here, as in the batch hook
                batch = batch.decode(self.device or "cpu")
                if self.device == "cuda":
                    torch.cuda.synchronize()
            arrivals.append(time.perf_counter())
            images.append(int(batch[0].shape[0]))
        main1, work1 = _cpu_s(pids)
        skip = min(self.workers, len(arrivals) - 1)  # by then every worker has delivered a batch
        wall = arrivals[-1] - arrivals[max(skip - 1, 0)]
        steady = sum(images[skip:]) if skip > 0 else sum(images)
        out = {"images": float(sum(images)), "seconds": wall, "images_per_s": steady / wall}
        if work0 is not None and work1 is not None:
            cpu = (main1 - main0) + (work1 - work0)
            out |= {"cpu_seconds": cpu, "main_cpu_seconds": main1 - main0}
        else:  # no /proc: assume every worker and the main process were busy all along
            cpu = (arrivals[-1] - arrivals[0]) * (self.workers + 1)
            out |= {"cpu_seconds": cpu, "main_cpu_seconds": float("nan")}
        out["images_per_s_per_core"] = sum(images) / cpu
        return out


def _datamodule(root: Path, **kw: Any) -> ImageNetDataModule:
    dm = ImageNetDataModule(root=str(root), eval_views=["center"], **PAPER_GEOMETRY, **kw)
    dm.setup()
    return dm


def _loader(dm: ImageNetDataModule, batch: int, batches: int, workers: int) -> DataLoader:
    return DataLoader(
        dm.train_dataset(),
        batch_sampler=RoundSampler(len(dm.train_samples), batch, batches),
        collate_fn=dm.train_collate(),
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
    )


def _finish_cost(batch: tuple[Any, ...], reps: int = 9) -> dict[str, Any]:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        finish_batch(batch)
        times.append(time.perf_counter() - t0)
    return {"ms_per_batch": median_interval([1e3 * t for t in times]), "threads": torch.get_num_threads()}


def _paired(sides: dict[str, _Side], min_pairs: int, max_pairs: int, budget_s: float) -> dict[str, Any]:
    per_core = lambda p, k: p[k]["images_per_s_per_core"]  # noqa: E731
    return run_pairs(
        sides,
        {
            "speedup_per_core": Derived(
                lambda p: per_core(p, "uint8") / per_core(p, "float32"),
                SPEEDUP_TARGET,
                ">=",
                doc="uint8 / float32 images per CPU-second of the loader, per pair",
            ),
            "speedup_wall": Derived(
                lambda p: p["uint8"]["images_per_s"] / p["float32"]["images_per_s"],
                doc="uint8 / float32 wall images/s (steady state), per pair",
            ),
            "cores_for_6000_uint8": Derived(lambda p: FEED_TARGET / per_core(p, "uint8"), unit="cores"),
            "cores_for_6000_float32": Derived(lambda p: FEED_TARGET / per_core(p, "float32"), unit="cores"),
        },
        min_pairs=min_pairs,
        max_pairs=max_pairs,
        warmup=1,
        budget_s=budget_s,
    )


def gpu_figures(
    root: Path,
    device: str,
    batch: int,
    batches: int,
    workers: int,
    rounds: int,
    step_batch: int,
    step_size: int = 224,
    width: float = 1.0,
) -> dict[str, Any]:
    """The device-decode loader's images/s and a bf16 ZF-5 training step's images/s on ``device``.

    Runs on a CPU ``device`` too (the same code; the tests use it), but only CUDA figures are published.
    """
    dm = _datamodule(root, decode="gpu", num_workers=workers)
    side = _Side(_loader(dm, batch, batches, workers), workers, device)
    side()  # warm-up: workers, decoder handles, CUDA kernels
    decode_rounds = [side() for _ in range(rounds)]
    from sppnet_exp.models import build_model

    net = build_model("zf5", head="spp", num_classes=1000, width=width, input_size=step_size).to(device)
    net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(step_batch, 3, step_size, step_size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (step_batch,), device=device)
    rates = []
    for i in range(rounds + 2):  # two warm-up steps (cuDNN autotuning) are dropped
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        if i >= 2:
            rates.append(step_batch / (time.perf_counter() - t0))
    return {
        "device": torch.cuda.get_device_name() if device == "cuda" else device,
        "decode_gpu": {
            "workers": workers,
            "batch_size": batch,
            "batches_per_round": batches,
            "images_per_s": median_interval([r["images_per_s"] for r in decode_rounds]),
            "images_per_s_per_core": median_interval([r["images_per_s_per_core"] for r in decode_rounds]),
        },
        "train_step_bf16": {
            "model": "zf5 spp (6,3,2,1)",
            "input": step_size,
            "width": width,
            "batch_size": step_batch,
            "channels_last": True,
            "images_per_s": median_interval(rates),
        },
    }


def bench_loader(
    images: int = 256,
    batch: int = 32,
    batches: int = 16,
    workers: int = 2,
    min_pairs: int = 10,
    max_pairs: int = 30,
    budget_s: float = 180.0,
    size: tuple[int, int] = (375, 500),
    gpu_rounds: int = 5,
    work_dir: str | Path | None = None,
) -> dict[str, Any]:
    """float32 vs uint8 loader on generated real-size JPEGs (see the module docstring); ``loader.json``."""
    tmp = Path(tempfile.mkdtemp(prefix="sppnet-loader-bench-", dir=work_dir))
    try:
        jpegs = make_jpegs(tmp, images, size=size)
        dms = {name: _datamodule(tmp, worker_output=name, num_workers=workers) for name in ("float32", "uint8")}
        loaders = {name: _loader(dm, batch, batches, workers) for name, dm in dms.items()}
        torch.manual_seed(0)
        first = {name: next(iter(_loader(dm, batch, 1, 0))) for name, dm in dms.items()}
        nbytes = {name: batch_nbytes(b) for name, b in first.items()}
        res = _paired({k: _Side(v, workers) for k, v in loaders.items()}, min_pairs, max_pairs, budget_s)
        per_core = {k: res["sides"][k]["images_per_s_per_core"]["median"] for k in loaders}
        ratio = nbytes["float32"] / nbytes["uint8"]
        out = {
            "images_per_s_per_core": per_core,
            "bytes_per_batch": nbytes,
            "cores_for_6000": FEED_TARGET / per_core["uint8"],
            "cores_for_6000_float32": FEED_TARGET / per_core["float32"],
            "bytes_ratio": {"value": ratio, "target": BYTES_TARGET, "op": ">=", "verdict": _bytes_verdict(ratio)},
            **res,
            "jpegs": jpegs,
            "batch_size": batch,
            "batches_per_round": batches,
            "workers": workers,
            "per_core_definition": "images / (CPU s of the worker processes + the main process) over the round",
            "geometry": PAPER_GEOMETRY,
            "device_finish_cpu": _finish_cost(first["uint8"]),
        }
        if torch.cuda.is_available():
            out["gpu"] = gpu_figures(tmp, "cuda", 128, batches, workers, gpu_rounds, step_batch=128)
        else:
            out["gpu"] = {"measured": False, "reason": "no CUDA device on this machine"}
        loaders.clear()  # the persistent workers stop with their loaders
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bytes_verdict(ratio: float) -> str:
    return "meets" if ratio >= BYTES_TARGET else "misses"
