"""Build the Lightning objects of a run from its Hydra config (the only place that reads cfg groups)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from sppnet_exp.config import REPO_DIR, wandb_disabled

log = logging.getLogger(__name__)


def _instantiate_group(group: DictConfig | dict[str, Any] | None, what: str, prepare: Any = None) -> list[Any]:
    """Instantiate every `_target_` entry of a dict-of-configs group (callbacks, loggers), each passed through
    ``prepare`` first when given."""
    objects: list[Any] = []
    for key, node in (group or {}).items():
        if isinstance(node, DictConfig) and "_target_" in node:
            node = prepare(node) if prepare is not None else node
            log.info(f"Instantiating {what} <{node._target_}> ({key})")
            objects.append(instantiate(node, _convert_="all"))
    return objects


def resolve_device(cfg: DictConfig) -> torch.device:
    """CUDA when the trainer asks for a GPU (or auto and one is present), else CPU."""
    acc = str(cfg.trainer.get("accelerator", "auto"))
    if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    """The DataModule of ``cfg.data`` (the `name` key is metadata, not a constructor argument)."""
    kwargs = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(kwargs, dict)
    kwargs.pop("name", None)
    log.info(f"Instantiating datamodule <{kwargs['_target_']}>")
    return instantiate(kwargs, _convert_="all")


def build_callbacks(cfg: DictConfig, with_loggers: bool = True) -> list[Callback]:
    """Checkpointing, LR monitor and the rest of ``cfg.callbacks`` (the LR monitor only when something logs)."""
    callbacks = _instantiate_group(cfg.get("callbacks"), "callback")
    return [c for c in callbacks if with_loggers or not isinstance(c, LearningRateMonitor)]


def _is_wandb(node: Any) -> bool:
    return isinstance(node, DictConfig) and str(node.get("_target_", "")).rsplit(".", 1)[-1] == "WandbLogger"


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """CSV / W&B loggers of ``cfg.logger`` (none when the group is empty); ``WANDB_MODE=disabled`` drops the W&B
    logger (no ``wandb`` folder is written). A CSV log dir that already holds a ``metrics.csv`` (a resumed,
    re-tested or retrained run) is kept: this run logs to the next ``version_N``."""
    group = cfg.get("logger")
    if group and wandb_disabled():
        wandb_keys = [key for key, node in group.items() if _is_wandb(node)]
        if wandb_keys:
            log.info(f"W&B is disabled by WANDB_MODE=disabled: no WandbLogger ({', '.join(map(str, wandb_keys))})")
            group = {key: node for key, node in group.items() if key not in wandb_keys}
    return _instantiate_group(group, "logger", prepare=keep_csv_log)


def keep_csv_log(node: Any) -> Any:
    """``node`` (a logger config), with ``version: null`` when it is a CSVLogger whose log dir has a metrics.csv:
    Lightning deletes the metrics.csv of the dir it logs to, so the earlier log stays and this one is the next
    ``<save_dir>/<name>/version_N``."""
    if not isinstance(node, DictConfig) or not str(node.get("_target_", "")).endswith("CSVLogger"):
        return node
    plain = OmegaConf.to_container(node, resolve=True)
    assert isinstance(plain, dict)
    version = plain.get("version")
    if version is None:
        return node  # Lightning numbers the versions itself
    log_dir = Path(str(plain.get("save_dir", "."))) / str(plain.get("name", "lightning_logs"))
    if not isinstance(version, str) or version:
        log_dir = log_dir / (version if isinstance(version, str) else f"version_{version}")
    if not (log_dir / "metrics.csv").is_file():
        return node
    log.info(f"keeping the earlier CSV log {log_dir / 'metrics.csv'}: this run logs to the next version_N")
    plain["version"] = None
    return OmegaConf.create(plain)


# Keys of the trainer group that configure the run around the Trainer, not Trainer arguments.
NOT_TRAINER_ARGS = ("channels_last",)


def channels_last(cfg: DictConfig) -> bool:
    """Whether the network and its inputs use channels-last memory (``trainer.channels_last``)."""
    return bool(cfg.trainer.get("channels_last", False))


def build_trainer(
    cfg: DictConfig, callbacks: list[Callback], loggers: list[Logger], resume_from: str | None = None
) -> L.Trainer:
    """The Trainer of ``cfg.trainer``; a Hydra-aware DDP strategy gets the checkpoint to resume from."""
    node = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert isinstance(node, dict)
    for key in NOT_TRAINER_ARGS:
        node.pop(key, None)
    strategy = node.get("strategy")
    if isinstance(strategy, dict) and "_target_" in strategy:
        if strategy["_target_"].endswith("HydraJobDDPStrategy"):
            strategy["resume_from"] = resume_from
        node["strategy"] = instantiate(strategy, _convert_="all")
    log.info(f"Instantiating trainer <{node['_target_']}>")
    return instantiate(node, callbacks=callbacks, logger=loggers or False, _convert_="all")


def finish_wandb() -> None:
    """Close the W&B run of this job (if any), so multirun jobs never merge into one run."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def run_metadata(cfg: DictConfig, trainer: L.Trainer) -> dict[str, Any]:
    """Identity and provenance of a run, stored in its results.json (the shared payload of every task)."""
    from sppnet_exp.engine.results import make_payload

    payload = make_payload(
        cell=str(cfg.cell),
        model=str(cfg.model.name),
        mode=str(cfg.mode.name),
        levels=list(cfg.mode.levels),
        data=str(cfg.data.name),
        data_root=cfg.data.get("root"),
        scale=str(cfg.scale.name),
        seed=int(cfg.seed),
        fingerprint=str(cfg.fingerprint),
        config=OmegaConf.to_container(cfg, resolve=True),
        world_size=int(trainer.world_size),
        repo_dir=REPO_DIR,
    )
    payload["host"]["accelerator"] = type(trainer.accelerator).__name__
    for key in ("status", "metrics", "train", "tables", "updated"):  # the task sets these
        payload.pop(key)
    return {**payload, "task": str(cfg.task_name), "run_dir": str(cfg.run_dir)}


def model_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """`build_model` kwargs from the model, mode and scale groups."""
    return {
        "name": cfg.model.name,
        "head": cfg.mode.head,
        "levels": list(cfg.mode.levels),
        "width": float(cfg.scale.width),
        "input_size": int(cfg.scale.crop),
        "dropout": float(cfg.model.dropout),
        "batch_norm": bool(cfg.model.batch_norm),
        "lrn": bool(cfg.model.lrn),
        "pool": cfg.mode.get("pool", "max"),  # +mode.pool=avg: an optional key, no mode file sets it
        "init": cfg.model.init,
    }
