"""The loader benchmark: paired float32/uint8 rounds on generated real-size JPEGs, the required JSON keys, the
summary section, and the GPU figures' code path run on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sppnet_exp.bench.loader import RoundSampler, gpu_figures, make_jpegs
from sppnet_exp.bench.run import main
from sppnet_exp.bench.summary import readme_blocks


def test_loader_bench_writes_the_required_figures(tmp_path: Path) -> None:
    main(["--quick", "--only", "loader", "--out", str(tmp_path)])
    out = json.loads((tmp_path / "loader.json").read_text())
    per_core, nbytes = out["images_per_s_per_core"], out["bytes_per_batch"]
    assert set(per_core) == set(nbytes) == {"float32", "uint8"} and min(per_core.values()) > 0
    assert out["cores_for_6000"] == pytest.approx(6000 / per_core["uint8"])
    assert per_core["uint8"] == out["sides"]["uint8"]["images_per_s_per_core"]["median"]
    # bytes are deterministic: 4x for the pixels minus the few bytes of each image's decisions
    assert 3.9 < nbytes["float32"] / nbytes["uint8"] < 4.0 and out["bytes_ratio"]["verdict"] == "meets"
    # batch of 4: uint8 pixels, long targets, decisions (long crop (top, left), bool flip, float lighting RGB)
    assert nbytes["uint8"] == 4 * 3 * 224 * 224 + 4 * 8 + 4 * (2 * 8 + 1 + 3 * 4)
    assert nbytes["float32"] == 4 * 3 * 224 * 224 * 4 + 4 * 8
    assert len(out["pairs"]) == 2 and set(out["pairs"][0]) == {"float32", "uint8"}
    sp = out["derived"]["speedup_per_core"]
    assert sp["target"] == 1.3 and sp["lo"] <= sp["median"] <= sp["hi"] and "verdict" in sp
    assert out["jpegs"]["size_hw"] == [375, 500] and out["jpegs"]["quality"] == 90
    assert out["gpu"]["measured"] is False or "decode_gpu" in out["gpu"]
    text = (tmp_path / "summary.md").read_text()
    assert "Input pipeline: float32 workers vs uint8 workers" in text and "cores for 6,000" in text
    run = {"meta": out.pop("meta"), "loader": out}
    assert "Input pipeline" in readme_blocks(run)["bench"]


def test_round_sampler_repeats_for_both_sides() -> None:
    a, b = RoundSampler(10, 4, 3, seed=1), RoundSampler(10, 4, 3, seed=1)
    first = list(a)
    assert first == list(b) and len(first) == 3 and all(len(x) == 4 for x in first)
    assert list(a) == list(b) and list(a) != first  # rounds walk on through the same permutation


def test_gpu_figures_code_path_runs_on_cpu(tmp_path: Path) -> None:
    make_jpegs(tmp_path, 8, classes=2, size=(120, 160))
    g = gpu_figures(tmp_path, "cpu", batch=4, batches=2, workers=0, rounds=1, step_batch=2, step_size=64, width=0.125)
    assert g["decode_gpu"]["images_per_s"]["median"] > 0 and g["train_step_bf16"]["images_per_s"]["median"] > 0
