"""Benchmarks: ``make bench`` → ``outputs/bench/<name>.json`` and ``outputs/bench/summary.md``.

Every comparison runs its sides interleaved in paired rounds and reports per-pair ratios as medians with their
95% intervals (:mod:`sppnet_exp.utils.paired`); a target is judged on the interval. Benchmarks:

- ``startup`` (:mod:`.startup`): wall time of ``sppnet-train --help`` and of config errors (a missing
  ``data.root``, a wrong detection root) in a fresh process, and that nothing heavy is imported before the exit;
- ``data``, ``train_overhead``, ``spp_head`` (:mod:`.training`): loader images/s, Lightning vs a bare loop,
  the SPP head vs the fixed pool5 head;
- ``detection``, ``proposals`` (:mod:`.detection`): SPP-net 1-scale and 5-scale against R-CNN per image, and
  selective search images/s per core;
- ``paper_scale`` (:mod:`.paper_scale`): seconds, disk and memory per image of every detection stage at the
  paper's geometry, extrapolated to VOC 2007 (``outputs/bench/paper_scale.json``).
- ``loader`` (:mod:`.loader`): the float32 and uint8 worker paths on real-size JPEGs, images/s per core, bytes
  per batch, cores for 6,000 images/s (and, with a GPU, device decoding and a bf16 ZF-5 step).

Each JSON holds the raw pairs, the machine (CPU model, cores, load average before and after), the pinned thread
counts and the versions. ``--quick`` is a smoke run (few pairs, small images). Publishing a run into the READMEs:
``python -m sppnet_exp.bench.summary publish outputs/bench`` (``make bench-publish``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import sppnet_exp  # noqa: F401  (resolvers)
from sppnet_exp.bench.machine import load_average, machine_info, pin_threads
from sppnet_exp.bench.summary import summary_markdown
from sppnet_exp.config import config_dir
from sppnet_exp.utils.io import atomic_write_json, atomic_write_text

ALL = ("startup", "data", "train_overhead", "spp_head", "loader", "detection", "proposals", "paper_scale")

# (full, quick) settings of each benchmark
SETTINGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "startup": ({"runs": 5}, {"runs": 2}),
    "data": ({"batches": 10, "rounds": 5}, {"batches": 3, "rounds": 2}),
    "train_overhead": (
        {"steps": 12, "min_pairs": 10, "max_pairs": 30, "budget_s": 150.0},
        {"steps": 6, "min_pairs": 2, "max_pairs": 2, "budget_s": 30.0},
    ),
    "spp_head": ({"min_pairs": 10}, {"min_pairs": 2}),
    "detection": (
        {},
        {
            "windows": 100,
            "short": 188,
            "scales_1": (344,),
            "scales_5": (240, 288, 344, 432, 600),
            "rcnn_windows": 32,
            "linearity_counts": (32, 64),
            "min_pairs": 2,
            "max_pairs": 2,
        },
    ),
    "proposals": ({"short": 375, "rounds": 5}, {"short": 188, "rounds": 2}),
    "paper_scale": ({}, {"short": 120, "windows": 100, "images": 1, "finetune_steps": 2, "chunk_images": 2}),
    "loader": (
        {},
        {"images": 24, "batch": 4, "batches": 4, "min_pairs": 2, "max_pairs": 2, "gpu_rounds": 2},
    ),
}


def _cfg(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("train", overrides=overrides)


def run_benchmarks(only: set[str], quick: bool, overrides: list[str]) -> dict[str, Any]:
    """Run the named benchmarks; return ``{"meta": .., name: result}``."""
    from sppnet_exp.bench import detection, loader, training

    threads = pin_threads()
    meta: dict[str, Any] = {
        "machine": machine_info(),
        "threads": threads,
        "argv": sys.argv[1:],
        "quick": quick,
        "date": time.strftime("%Y-%m-%d"),
    }
    results: dict[str, Any] = {"meta": meta}
    kw = {name: SETTINGS[name][1 if quick else 0] for name in ALL}
    t0 = time.perf_counter()
    if "startup" in only:  # first, on the machine as idle as this run finds it
        from sppnet_exp.bench.startup import bench_startup

        results["startup"] = bench_startup(**kw["startup"])
    # These two time float32 batches (the bare loop has no batch hook); `loader` compares the worker paths.
    f32 = ["logger=none", "data.worker_output=float32"]
    if "data" in only:
        results["data"] = training.bench_data(_cfg([*f32, *overrides]), **kw["data"])
    if "train_overhead" in only:
        results["train_overhead"] = training.bench_train_overhead(_cfg([*f32, *overrides]), **kw["train_overhead"])
    if "spp_head" in only:
        results["spp_head"] = training.bench_spp_head(**kw["spp_head"])
    if "detection" in only:
        results["detection"] = detection.bench_detection(**kw["detection"])
    if "proposals" in only:
        results["proposals"] = detection.bench_proposals(**kw["proposals"])
    if "paper_scale" in only:
        from sppnet_exp.bench.paper_scale import bench_paper_scale

        results["paper_scale"] = bench_paper_scale(**kw["paper_scale"])
    if "loader" in only:
        results["loader"] = loader.bench_loader(**kw["loader"])
    meta["machine"]["load_after"] = load_average()
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    return results


def main(argv: list[str] | None = None) -> None:
    """``sppnet-bench [--only data,train_overhead,...] [--out outputs/bench] [--quick] [hydra overrides...]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/bench")
    parser.add_argument("--only", default=",".join(ALL))
    parser.add_argument("--quick", action="store_true", help="a smoke run: few pairs, small images")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for the data/model config")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    unknown = only - set(ALL)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; known: {', '.join(ALL)}")
    results = run_benchmarks(only, args.quick, list(args.overrides))
    out = Path(args.out)
    for name, value in results.items():
        if name != "meta":
            atomic_write_json(out / f"{name}.json", {**value, "meta": results["meta"]})
    text = summary_markdown(results)
    atomic_write_text(out / "summary.md", text)
    print(text)


if __name__ == "__main__":
    main()
