"""The classification net a detection or transfer run starts from: found in its Table 2 run dir, trained there
when missing.

The `train` config of the pretrained cell is composed with the same paths, so the run finds exactly the run dir
(and ``last.ckpt``) that ``make table2`` writes; an explicit checkpoint overrides the lookup. A missing net is a
run of the classification task that the engine runs (:func:`sppnet_exp.engine.tasks.run_cell`); its checkpoint is
read by the model package (:func:`sppnet_exp.models.checkpoint.load_net`): neither detection nor transfer imports
anything of classification. Where the nets were trained (a train scale and dataset) is the config's ``pretrain``
node (detection: its scale's ``pretrain``; transfer: the classification scale it runs at).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from sppnet_exp.config import compose_config

if TYPE_CHECKING:  # the net (torch) is imported where it is loaded: the pre-flight composes configs only
    from sppnet_exp.models.net import SPPNet

log = logging.getLogger(__name__)

__all__ = ["load_pretrained", "pretrained_train_config"]


def pretrained_train_config(cfg: DictConfig, pretrained: DictConfig | None = None) -> DictConfig:
    """The `train` config of the pretrained cell of a detection or transfer config (same paths and logger
    choice; trained at ``cfg.pretrain``'s scale and dataset)."""
    pre = pretrained if pretrained is not None else cfg.pretrained
    overrides = [f"experiment={pre.experiment}"] if pre.experiment else []
    # `net` defines the network (a group's own); `overrides` are the user's extras, so replacing them from the
    # command line (`"pretrained.overrides=['data.root=...']"`) never changes which network is trained or found
    overrides += list(pre.net or [])
    overrides += list(pre.overrides or [])
    overrides += [
        f"seed={pre.seed}",
        f"scale={cfg.pretrain.scale}",
        f"data={cfg.pretrain.data}",
        f"paths.root_dir={cfg.paths.root_dir}",
        f"paths.output_dir={cfg.paths.output_dir}",
        f"paths.runs_root={cfg.paths.runs_root}",
        f"paths.data_dir={cfg.paths.data_dir}",
        "logger=csv",
        f"trainer.enable_progress_bar={str(bool(cfg.progress)).lower()}",  # not in the run's identity
    ]
    return compose_config("train", overrides)


def _from_checkpoint(path: Path) -> SPPNet:
    from sppnet_exp.models.checkpoint import load_net

    net = load_net(path)
    log.info(f"pretrained net {net.name} ({net.head}, levels {net.levels}) from {path}")
    return net


def pretrained_identity(cfg: DictConfig, pretrained: DictConfig | None = None) -> dict[str, Any]:
    """What determines the pretrained net's weights — the Table 2 cell's run identity (its train config's
    fingerprint), or an explicit checkpoint file's path, size and mtime — without loading anything. It keys the
    caches computed with the net (conv5, R-CNN window features)."""
    pre = pretrained if pretrained is not None else cfg.pretrained
    if pre.checkpoint:
        path = Path(pre.checkpoint)
        st = path.stat() if path.is_file() else None
        return {
            "checkpoint": str(path.resolve()),
            "bytes": st.st_size if st else None,
            "mtime_ns": st.st_mtime_ns if st else None,
        }
    tcfg = pretrained_train_config(cfg, pre)
    return {
        "cell": str(tcfg.cell),
        "data": str(tcfg.data.name),
        "root": tcfg.data.get("root"),
        "fingerprint": str(tcfg.fingerprint),
    }


def load_pretrained(
    cfg: DictConfig, pretrained: DictConfig | None = None, wait_s: float | None = None
) -> tuple[SPPNet, dict[str, Any]]:
    """Return the pretrained net (eval mode, CPU) and where it came from (for results.json).

    ``wait_s``: instead of training a missing net, wait up to that long for another process (rank 0 of the
    same job) to finish it — what the extra ranks of a distributed detection cell do.
    """
    pre = pretrained if pretrained is not None else cfg.pretrained
    if pre.checkpoint:
        path = Path(pre.checkpoint)
        return _from_checkpoint(path), {"checkpoint": str(path), "model": pre.model, "seed": int(pre.seed)}
    tcfg = pretrained_train_config(cfg, pre)
    run_dir = Path(tcfg.run_dir)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    results = run_dir / "results.json"
    finished = False
    if results.is_file():
        from sppnet_exp.engine.results import read_results

        previous = read_results(run_dir)
        finished = previous.get("status") == "finished"
        if finished:
            from sppnet_exp.engine.lifecycle import check_settings

            check_settings(tcfg, previous, run_dir)  # a net trained with other settings is not this one
    if wait_s is not None and not (finished and ckpt.is_file()):
        finished = _wait_finished(run_dir, ckpt, wait_s)
    if not (finished and ckpt.is_file()):
        if not pre.train_if_missing or wait_s is not None:
            raise FileNotFoundError(
                f"pretrained cell {tcfg.cell} (seed {pre.seed}) has no finished run at {run_dir}; run "
                f"`python -m sppnet_exp.train {' '.join(_cli(tcfg))}` first or set pretrained.train_if_missing=true"
            )
        log.info(f"pretrained cell {tcfg.cell} (seed {pre.seed}) not found at {run_dir}: training it now")
        from sppnet_exp.engine.tasks import run_cell

        run_cell("train", tcfg)  # the classification task, asked for through the engine by its config
    info = {
        "cell": str(tcfg.cell),
        "run_dir": str(run_dir),
        "checkpoint": str(ckpt),
        "model": str(tcfg.model.name),
        "seed": int(pre.seed),
        "fingerprint": str(tcfg.fingerprint),
    }
    return _from_checkpoint(ckpt), info


def _wait_finished(run_dir: Path, ckpt: Path, wait_s: float, poll_s: float = 10.0) -> bool:
    """Poll until the run at ``run_dir`` is finished with its checkpoint, or ``wait_s`` has passed."""
    import time

    from sppnet_exp.engine.results import read_results

    start = time.monotonic()
    log.info(f"waiting up to {wait_s:.0f} s for the pretrained net at {run_dir} (trained by rank 0)")
    while time.monotonic() - start < wait_s:
        done = (run_dir / "results.json").is_file() and ckpt.is_file()
        if done and read_results(run_dir).get("status") == "finished":
            return True
        time.sleep(poll_s)
    return False


def _cli(tcfg: DictConfig) -> list[str]:
    """A hint of the train command for the error message."""
    return [f"model={tcfg.model.name}", f"mode={tcfg.mode.name}", f"seed={tcfg.seed}", f"scale={tcfg.scale.name}"]
