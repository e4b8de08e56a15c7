"""What every detection cell reads from its Hydra config: the data and proposals, the device, Trainer settings,
the cache identities. Cells are the only detection modules that read the config; the stages take typed values.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from sppnet_exp.config import fingerprint
from sppnet_exp.detection.settings import ProposalSettings
from sppnet_exp.detection.structures.roidb import ImageWindows, build_windows, proposal_windows

log = logging.getLogger(__name__)

__all__ = [
    "CellData",
    "data_tag",
    "load_proposals",
    "setup_cell_data",
    "setup_data",
    "trainer_kwargs",
]


def trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """Lightning Trainer arguments for fine-tuning (single device; the cfg's accelerator, ``finetune_precision``)."""
    t = cfg.trainer
    return {
        "accelerator": t.get("accelerator", "auto"),
        "devices": 1,
        "precision": cfg.get("finetune_precision") or t.get("precision", "32-true"),
        "enable_progress_bar": bool(t.get("enable_progress_bar", True)) and bool(cfg.progress),
        "default_root_dir": str(cfg.run_dir),
    }


def conv_trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """Trainer arguments of the conv5 extraction: the cfg's devices and strategy (DDP shards the images)."""
    t = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert isinstance(t, dict)
    keep = {k: t[k] for k in ("accelerator", "devices", "num_nodes", "precision") if k in t}
    strategy = t.get("strategy")
    if isinstance(strategy, dict) and "_target_" in strategy:
        from hydra.utils import instantiate

        keep["strategy"] = instantiate(strategy, _convert_="all")
    elif strategy is not None:
        keep["strategy"] = strategy
    keep["enable_progress_bar"] = bool(cfg.progress)
    return keep


def setup_data(cfg: DictConfig) -> Any:
    """The detection DataModule of ``cfg.data``, set up (splits loaded)."""
    from sppnet_exp.engine.wiring import build_datamodule

    dm = build_datamodule(cfg)
    dm.setup()
    return dm


def data_tag(cfg: DictConfig) -> str:
    """Identity of the dataset (for caches keyed by image id)."""
    d = cfg.data
    return f"{d.name}-" + fingerprint(d.get("root"), d.get("gen"), d.get("classes"), d.get("max_images"))


def conv5_tag(cfg: DictConfig) -> str:
    """Key of the conv5 cache: the pretrained net's identity and the dataset's (scales and orientation are its
    sub-folders), and the extraction's precision when it is not the default float32 (a bf16 map is another map)."""
    from sppnet_exp.engine.pretrained import pretrained_identity
    from sppnet_exp.utils.identity import detect_recipe_overrides

    precision = detect_recipe_overrides(cfg.trainer.get("precision", "32-true"))
    return fingerprint(pretrained_identity(cfg), data_tag(cfg), *([precision] if precision else []))


def window_tag(cfg: DictConfig, which: str, size: int, geometry: str) -> str:
    """Key of R-CNN's per-window feature cache of the ``which`` net ("pre", or "ft": the run's own fine-tuned
    net): the net, the dataset, the windows (proposal settings) and the warp (size, context, geometry)."""
    from sppnet_exp.engine.pretrained import pretrained_identity

    run = str(cfg.fingerprint) if which == "ft" else None
    props = OmegaConf.to_container(cfg.proposals, resolve=True)
    return "rcnn-" + fingerprint(
        pretrained_identity(cfg), data_tag(cfg), run, size, int(cfg.detector.padding), geometry, props
    )


def proposal_provenance(cfg: DictConfig) -> tuple[dict[str, Any], str]:
    """Which proposals a cell uses, for results.json and the report, and whether they are the paper's: at VOC07
    and the paper's scale the paper used the selective-search boxes R-CNN published (``proposals.source=
    rcnn_mat``); OpenCV's "fast" mode gives other and fewer boxes, so it is logged as not comparable."""
    p = cfg.proposals
    paper_setting = str(cfg.data.name) == "voc07" and str(cfg.scale.name) == "paper"
    if str(p.source) == "selective_search":
        what = f"OpenCV selective search ({p.mode} mode, longer side <= {p.max_side or 'as given'})"
    elif str(p.source) == "rcnn_mat":
        what = f"R-CNN's published selective-search boxes ({p.path})"
    else:
        what = f"precomputed per-image boxes ({p.path})"
    comparable = not paper_setting or str(p.source) == "rcnn_mat"
    note = f"proposals: {what}"
    if paper_setting and not comparable:
        note += " — not the boxes the paper used (R-CNN's published VOC07 selective search): not comparable"
        log.warning(
            "VOC07 at the paper's scale with %s: the paper used R-CNN's published boxes; these numbers are not "
            "comparable with the paper's (proposals.source=rcnn_mat proposals.path={trainval: ..., test: ...})",
            what,
        )
    info = {"source": str(p.source), "mode": str(p.mode), "path": OmegaConf.to_container(p, resolve=True)["path"]}
    return {**info, "description": what, "paper_proposals": str(p.source) == "rcnn_mat", "comparable": comparable}, note


def load_proposals(cfg: DictConfig, split: Any) -> dict[str, np.ndarray]:
    """The proposals of every image of ``split`` as ``cfg.proposals`` says (computed once and cached, or loaded)."""
    from sppnet_exp.detection.proposals.sources import get_proposals

    p: ProposalSettings = OmegaConf.to_object(cfg.proposals)  # type: ignore[assignment]
    return get_proposals(
        split,
        source=p.source,
        path=p.path_for(split.name),
        cache_root=Path(cfg.cache_dir) / "proposals" / data_tag(cfg),
        mode=p.mode,
        max_side=p.max_side,
        min_size=p.min_size,
        max_proposals=p.max_proposals,
        workers=int(cfg.workers),
        progress=bool(cfg.progress),
        layout=p.layout,
    )


@dataclass
class CellData:
    """A cell's data: the DataModule's splits, class names and the roidbs (GT + proposals; test: proposals)."""

    dm: Any
    train: Any
    test: Any
    classes: list[str]
    roidb_train: list[ImageWindows]
    roidb_test: list[ImageWindows]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def setup_cell_data(cfg: DictConfig) -> CellData:
    """Data, proposals (computed or loaded) and roidbs of a cell."""
    dm = setup_data(cfg)
    train, test = dm.train, dm.test
    classes = list(dm.classes)
    t = time.time()
    props_train, props_test = load_proposals(cfg, train), load_proposals(cfg, test)
    roidb_train = [build_windows(r, props_train[r.image_id], len(classes)) for r in train.records]
    roidb_test = [proposal_windows(r, props_test[r.image_id], len(classes)) for r in test.records]
    info = {
        "data": {
            "classes": classes,
            "train_images": len(train),
            "test_images": len(test),
            "train_stats": dict(getattr(train, "stats", {})),
            "test_stats": dict(getattr(test, "stats", {})),
        },
        "windows": {
            "train_per_image": float(np.mean([len(w) for w in roidb_train])) if roidb_train else 0.0,
            "test_per_image": float(np.mean([len(w) for w in roidb_test])) if roidb_test else 0.0,
        },
        "stages": {"proposals_s": round(time.time() - t, 1)},
    }
    return CellData(dm, train, test, classes, roidb_train, roidb_test, info)
