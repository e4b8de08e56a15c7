"""A short training and evaluation on the real Caltech-101 subset through the Caltech101 DataModule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from sppnet_exp.classification.task import train

pytestmark = pytest.mark.data


def test_short_training_on_real_caltech101(shared_data: Path, make_cfg: Callable[..., DictConfig]) -> None:
    root = shared_data / "caltech101_subset24"
    if not (root / "101_ObjectCategories").is_dir():
        pytest.skip(f"{root}/101_ObjectCategories not found")
    cfg = make_cfg(
        "data=caltech101",
        f"data.root={root}",
        "model=zf5",
        "mode=spp_multi",
        "scale.max_epochs=2",
        "scale.batch_size=32",
        "scale.eval_batch_size=16",
        "+trainer.limit_train_batches=8",
        "eval.views=[center,full]",
    )
    results = train(cfg)
    assert results["status"] == "finished" and results["data"] == "caltech101"
    # The paper's protocol: 24 classes here, up to 50 test images per class, every one evaluated once.
    cfg_data = results["config"]["data"]
    assert cfg_data["root"] == str(root)
    classes = [d for d in (root / "101_ObjectCategories").iterdir() if d.is_dir() and d.name != "BACKGROUND_Google"]
    expected_test = sum(min(50, len(list(d.iterdir())) - 30) for d in classes)
    for view in ("center", "full"):
        m = results["metrics"][view]
        assert 0.0 <= m["top5_err"] <= m["top1_err"] <= 100.0
        assert m["n"] == expected_test  # every test image of the split, once
    assert results["train"]["global_step"] == 16
    assert results["train"]["skipped_images"] == 0
