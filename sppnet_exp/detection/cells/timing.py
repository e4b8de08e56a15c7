"""The timing cell of Tables 9/10: SPP 1-scale, SPP 5-scale and R-CNN timed in paired rounds on one device.

``scale.timing.geometry`` picks what is timed (:mod:`sppnet_exp.detection.evaluation.timing_pairs`):

- ``paper`` (the embedded default): the paper's geometry — full-width nets of the table's architectures with random
  weights (speed does not depend on trained weights; no pretrained net is trained or loaded), generated 500x375
  scenes with 2,000 windows, s = 688 and the five scales, 224 crops, R-CNN warps to 227 (AlexNet) or 224 (ZF-5);
- ``data``: the cell's own pretrained nets on the first test images and their proposals, at the scale's sizes
  (the paper scale on real VOC 2007).

The results record which weights and which geometry were timed (``detect.timed``) and the report says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from sppnet_exp.detection.cells.common import load_proposals, setup_data
from sppnet_exp.detection.cells.features import net_spec
from sppnet_exp.detection.cells.methods import MethodRun
from sppnet_exp.detection.evaluation.timing_pairs import PaperGeometry, paired_timing, paper_items, timing_rows
from sppnet_exp.detection.features.pooling import PoolingSpec
from sppnet_exp.detection.settings import PoolingRules
from sppnet_exp.engine.pretrained import load_pretrained, pretrained_train_config
from sppnet_exp.engine.wiring import model_kwargs, resolve_device
from sppnet_exp.models import build_model
from sppnet_exp.models.net import SPPNet

log = logging.getLogger(__name__)

GEOMETRIES = ("paper", "data")


def _specs(
    net: SPPNet, scales: tuple[Sequence[int], Sequence[int]], rules: PoolingRules
) -> tuple[PoolingSpec, PoolingSpec]:
    """SPP-net's 1- and 5-scale pooling specs of ``net`` under the cell's ``detector.pooling`` rules (the SPP
    cells' own, from the same schema)."""
    return net_spec(net, scales[0], rules), net_spec(net, scales[1], rules)


def _random_net(cfg: DictConfig, pre: DictConfig) -> SPPNet:
    """The pretrained net's architecture (its `train` config: model, head, pyramid) at full width, at its network's
    own input size, with random weights: what the paper geometry times."""
    kw = model_kwargs(pretrained_train_config(cfg, pre))
    return build_model(kw["name"], head=kw["head"], levels=kw["levels"], width=1.0, pool=kw["pool"]).eval()


def run_timing(cfg: DictConfig) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Time every method in paired rounds; returns the table's metrics per method and the run's details."""
    t = cfg.scale.timing
    geometry = str(t.geometry)
    if geometry not in GEOMETRIES:
        raise ValueError(f"scale.timing.geometry must be one of {GEOMETRIES}, got {geometry!r}")
    device = resolve_device(cfg)
    rcnn_pre = cfg.detector.rcnn_pretrained  # a pretrained group, composed by Hydra (detector/timing.yaml)
    rules: PoolingRules = OmegaConf.to_object(cfg.detector.pooling)  # type: ignore[assignment]
    warmup = int(t.warmup)
    targets = {k: float(v) for k, v in (cfg.detector.targets or {}).items()}
    if geometry == "paper":
        torch.manual_seed(int(cfg.seed))
        geom = PaperGeometry(images=int(t.images), seed=int(cfg.seed))
        spp_net, rcnn_net = _random_net(cfg, cfg.pretrained), _random_net(cfg, rcnn_pre)
        items = paper_items(geom)
        spec_1, spec_5 = _specs(spp_net, (geom.scales_1, geom.scales_5), replace(rules, target_size=geom.target_size))
        warp_size, padding = int(rcnn_net.input_size), geom.padding
        pairs = {"min_pairs": int(t.min_pairs), "max_pairs": int(t.max_pairs), "budget_s": t.budget_s}
        weights = f"random weights, full width: {spp_net.name} (SPP) and {rcnn_net.name} (R-CNN)"
        where = f"the paper's geometry: {geom.describe()}"
    else:
        spp_net, spp_info = load_pretrained(cfg)
        rcnn_net, rcnn_info = load_pretrained(cfg, rcnn_pre)
        dm = setup_data(cfg)
        split = dm.test
        count = min(len(split), int(t.images) + warmup)
        if count <= warmup:
            raise ValueError(f"timing needs more than {warmup} test images, the split has {len(split)}")
        props = load_proposals(cfg, split)
        items = [
            (split.load_image(i), np.asarray(props[split.records[i].image_id], dtype=np.float32)) for i in range(count)
        ]
        scales_1, scales_5 = list(cfg.scale.scales_1), list(cfg.scale.scales_5)
        spec_1, spec_5 = _specs(spp_net, (scales_1, scales_5), rules)
        warp_size = int(rcnn_pre.warp_size or rcnn_net.input_size)
        padding = int(cfg.scale.rcnn_padding)
        pairs = {"min_pairs": count - warmup, "max_pairs": count - warmup, "budget_s": None}
        weights = f"the cells' pretrained nets: {spp_info} (SPP), {rcnn_info} (R-CNN)"
        where = f"{count - warmup} test images of {cfg.data.name} with their proposals, s = {scales_1} / {scales_5}"
    rcnn_key = f"rcnn_{rcnn_net.name}"
    res = paired_timing(
        spp_net,
        rcnn_net,
        items,
        spec_1,
        spec_5,
        warp_size=warp_size,
        padding=padding,
        rcnn_key=rcnn_key,
        rcnn_windows=t.rcnn_windows,
        warmup=warmup,
        targets=targets,
        linearity_counts=tuple(int(k) for k in t.linearity_counts),
        linearity_rounds=1,
        device=device,
        **pairs,
    )
    table = timing_rows(res, rcnn_key)
    for k, v in table.items():
        log.info(f"timing {k}: " + ", ".join(f"{m}={x:.4f}" for m, x in v.items()))
    timed = {"geometry": geometry, "weights": weights, "what": where, "device": str(device)}
    if res["rcnn_linearity"] is not None:
        lin = res["rcnn_linearity"]
        timed["rcnn_scaling"] = (
            f"R-CNN timed on {res['rcnn_windows_timed']} windows per image and scaled by the window count; its conv "
            f"cost per window varies {lin['max_deviation']:.1%} over {lin['counts']} windows "
            f"({'linear' if lin['linear'] else 'NOT linear'} within {lin['tolerance']:.0%})"
        )
    info = {
        "device": str(device),
        "timed": timed,
        "timing": {k: res[k] for k in ("derived", "pairs", "stopped", "warmup", "seconds", "rcnn_linearity")},
        "images": len(items),
    }
    return table, info


def run_timing_cell(cfg: DictConfig, on_row: Any, done_rows: set[str]) -> MethodRun:
    """The runner of ``timing`` (:mod:`.methods`): the timing rows, returned whole (one measurement), and the
    report's note on what was timed; the data's notes only at the data geometry (the paper's reads no data)."""
    metrics, info = run_timing(cfg)
    notes = [timing_note(info["timed"])]
    return MethodRun(metrics=metrics, info=info, notes=notes, data_notes=info["timed"]["geometry"] == "data")


def timing_note(timed: dict[str, Any]) -> str:
    """The report's line on what the timing rows measured."""
    note = f"Timing rows: {timed['weights']}; {timed['what']}; device {timed['device']}; paired rounds, medians."
    if timed.get("rcnn_scaling"):
        note += f" {timed['rcnn_scaling']}."
    return note
