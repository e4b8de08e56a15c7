"""Shared fixtures: composed configs at a tiny scale, a tiny generated dataset, and the real shared data."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import sppnet_exp  # noqa: F401  (registers the OmegaConf resolvers)
from sppnet_exp.config import config_dir

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SPPNET_SHARED_DATA", REPO.parent / "shared" / "data"))

# A scale small enough for one-batch runs on a CPU: 64 px crops, width 1/8, 5 classes.
TINY = [
    "scale.resize=72",
    "scale.crop=64",
    "scale.multi_size=52",
    "scale.full_resize=72",
    "scale.width=0.125",
    "scale.batch_size=8",
    "scale.eval_batch_size=4",
    "scale.max_epochs=1",
    "data.num_workers=0",
    "++data.gen_classes=5",
    "++data.gen_train_per_class=8",
    "++data.gen_val_per_class=3",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def tiny_overrides(tmp: Path, data_dir: Path) -> list[str]:
    """TINY plus paths under ``tmp`` (runs) and ``data_dir`` (the generated data, shared per session)."""
    return [
        *TINY,
        f"paths.output_dir={tmp}/outputs",
        f"paths.data_dir={data_dir}",
        f"paths.experiments_dir={tmp}/exp",
    ]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One generated tiny dataset for the whole session."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def make_cfg(tmp_path: Path, data_dir: Path) -> Callable[..., DictConfig]:
    """Compose `train` (or `eval`) with the tiny scale and the given overrides."""

    def _make(*overrides: str, config_name: str = "train", logger: str = "none") -> DictConfig:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return compose(config_name, overrides=[f"logger={logger}", *tiny_overrides(tmp_path, data_dir), *overrides])

    return _make


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real test data beside the repo (skips when absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (set SPPNET_SHARED_DATA)")
    return SHARED_DATA


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
