"""The detection methods are objects (``detection/cells/methods.py``), not names compared in many places: every
detector config names one, each runner resolves, the traits the task and the pre-flight read are the paper's,
and the module stays light enough for the pre-flight (no torch)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from sppnet_exp.config import REPO_DIR, compose_config, config_dir
from sppnet_exp.detection.cells.methods import METHODS, method_of


def test_every_detection_experiment_names_a_method_whose_runner_resolves() -> None:
    names = set()
    for path in sorted(Path(config_dir(), "experiment").glob("table*/*.yaml")):
        if path.parent.name in ("table9", "table10", "table12"):
            cfg = compose_config("detect", [f"experiment={path.parent.name}/{path.stem}"])
            names.add(method_of(cfg).name)
    assert names == set(METHODS)
    for m in METHODS.values():
        module, _, name = m.runner.partition(":")
        assert callable(getattr(importlib.import_module(module), name)), m.runner


def test_traits() -> None:
    assert [n for n, m in METHODS.items() if m.windows] == ["spp", "rcnn"]
    assert [n for n, m in METHODS.items() if m.pooled] == ["spp"]  # conv5 once per image; its ranks shard it
    assert [n for n, m in METHODS.items() if m.combines] == ["combine"]
    timing = METHODS["timing"]
    paper = OmegaConf.create({"scale": {"timing": {"geometry": "paper"}}})
    data = OmegaConf.create({"scale": {"timing": {"geometry": "data"}}})
    assert not timing.reads_data(paper) and not timing.reads_proposals_and_net(paper)
    assert timing.reads_data(data) and timing.reads_proposals_and_net(data)
    assert METHODS["combine"].reads_data(paper) and not METHODS["combine"].reads_proposals_and_net(paper)


def test_an_unknown_method_is_named() -> None:
    with pytest.raises(ValueError, match=r"detector.method must be one of \('spp', 'rcnn', 'combine', 'timing'\)"):
        method_of(OmegaConf.create({"detector": {"method": "dpm"}}))


def test_the_methods_module_imports_no_torch() -> None:
    code = "import sys, sppnet_exp.detection.cells.methods; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_DIR, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
