"""The detector of one table cell (SPP-net or R-CNN) as explicit stages run in sequence.

data + proposals -> chance row -> features (SPP: conv5 cache, sharded; R-CNN: warped windows) -> fine-tuning
(SPP: fc6/fc7/fc8 on windows pooled on the fly; R-CNN: the whole net) -> SVMs of every row in shared passes ->
box regression -> every row tested in one pass -> VOC07 mAP per row. Each stage's product is kept in the run dir
(fine-tuned weights, SVMs per row, regressor, detections per row), so a killed cell resumes at the stage it was in
and each finished row is reported at once.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from sppnet_exp.detection.cells.common import CellData, setup_cell_data, trainer_kwargs
from sppnet_exp.detection.cells.features import SPPStage, rcnn_features, spp_features
from sppnet_exp.detection.cells.methods import MethodRun, method_of
from sppnet_exp.detection.evaluation.protocols import TestProtocol, protocol_state
from sppnet_exp.detection.evaluation.testing import TestRow, detect_rows
from sppnet_exp.detection.evaluation.voc_eval import evaluate_and_write
from sppnet_exp.detection.features.heads import FCHead
from sppnet_exp.detection.features.windows import WindowFeatures
from sppnet_exp.detection.linear.bbox_reg import BoxRegressor, train_bbox_regressors_streaming
from sppnet_exp.detection.linear.mining import SVMRow, mine_svms, row_scales
from sppnet_exp.detection.linear.svm import LinearDetector, SVMConfig
from sppnet_exp.detection.structures.detections import Detections
from sppnet_exp.engine.pretrained import load_pretrained
from sppnet_exp.engine.results import update_results
from sppnet_exp.engine.wiring import resolve_device
from sppnet_exp.models.net import SPPNet
from sppnet_exp.utils.dist import is_primary
from sppnet_exp.utils.io import atomic_torch_save

log = logging.getLogger(__name__)

__all__ = ["ROWS", "RowDef", "run_detector", "run_windows"]


@dataclass(frozen=True)
class RowDef:
    """A row of Tables 9/10: which net's pool5 (``pre``-trained or fine-tuned), which layer, whose SVMs, box
    regression or not."""

    net: str
    layer: str
    svm: str
    bbox: bool = False


ROWS: dict[str, RowDef] = {
    "pool5": RowDef("pre", "pool5", "pool5"),
    "fc6": RowDef("pre", "fc6", "fc6"),
    "ftfc6": RowDef("ft", "fc6", "ftfc6"),
    "ftfc7": RowDef("ft", "fc7", "ftfc7"),
    "ftfc7_bb": RowDef("ft", "fc7", "ftfc7", bbox=True),
}

OnRow = Callable[[str, dict[str, float], dict[str, Any]], None]


def svm_config(cfg: DictConfig) -> SVMConfig:
    """``cfg.svm`` as its typed settings (the node's schema is :class:`SVMConfig`)."""
    return OmegaConf.to_object(cfg.svm)  # type: ignore[return-value]


def test_protocol(cfg: DictConfig) -> TestProtocol:
    """The method's test protocol (``cfg.test`` is ``detector.test``: SPP-net's or R-CNN's rules)."""
    return OmegaConf.to_object(cfg.test)  # type: ignore[return-value]


def _layer(head: FCHead | None, layer: str, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    if layer == "pool5":
        return lambda x: x
    assert head is not None
    head = head.to(device).eval()
    return lambda x: head.layer_features(x.to(device), layer)


def chance_row(cfg: DictConfig, data: CellData) -> dict[str, float]:
    """The chance level: the same test proposals with uniformly random scores in [0, 1), through the same test
    protocol (SPP-net's floor lies below every random score)."""
    rng = np.random.default_rng(int(cfg.seed))
    state = protocol_state(test_protocol(cfg), len(data.roidb_test))
    for w in data.roidb_test:
        state.add(w, rng.random((len(w), data.num_classes)))
    path = Path(cfg.run_dir) / "detections_chance.jsonl"
    return evaluate_and_write(Detections.from_images(state.finish(), data.classes), data.test, data.classes, path)


def _finetune_spp(cfg: DictConfig, data: CellData, stage: SPPStage, net: SPPNet, run_dir: Path) -> FCHead:
    """fc6/fc7/fc8 on windows pooled on the fly from conv5 (random scale, flips), cached in the run dir."""
    from sppnet_exp.detection.finetune.batches import PooledWindows
    from sppnet_exp.detection.finetune.fc import finetune_fc

    path = run_dir / "finetune" / "fc_head.pt"
    head = FCHead.from_fc(net.fc)
    if path.is_file():
        head.load_state_dict(torch.load(path, map_location="cpu"))
        log.info(f"fine-tuned fc6/fc7 reused from {path}")
        return head.eval()
    ft = dict(OmegaConf.to_container(cfg.scale.finetune, resolve=True))
    source = PooledWindows(
        stage.cache,
        stage.spec,
        random_scale=bool(ft.pop("random_scale")),
        flip=bool(ft.pop("flip")),
        images_per_chunk=int(ft.pop("images_per_chunk")),
        steps_per_chunk=int(ft.pop("steps_per_chunk")),
    )
    ft["seed"] = int(cfg.seed)
    ckpt = run_dir / "finetune" / "ckpt"
    head = finetune_fc(data.roidb_train, source, net.fc, data.num_classes, ft, trainer_kwargs(cfg), ckpt_dir=ckpt)
    atomic_torch_save(head.state_dict(), path)
    return head.eval()


def _finetune_rcnn(cfg: DictConfig, data: CellData, net: SPPNet, run_dir: Path) -> SPPNet:
    """The whole net fine-tuned on warped windows, cached in the run dir."""
    from sppnet_exp.detection.finetune.rcnn import finetune_rcnn

    path = run_dir / "finetune" / "rcnn_net.pt"
    tuned = copy.deepcopy(net)
    if path.is_file():
        tuned.load_state_dict(torch.load(path, map_location="cpu"), strict=False)
        log.info(f"fine-tuned R-CNN net reused from {path}")
        return tuned.eval()
    ft = dict(OmegaConf.to_container(cfg.scale.rcnn_finetune, resolve=True))
    ft["seed"] = int(cfg.seed)
    ft["padding"] = int(cfg.detector.padding)
    ft["geometry"] = str(cfg.detector.geometry)  # the same warp as feature extraction
    ft["size"] = cfg.detector.input_size  # R-CNN's crop size (AlexNet 227); None: the net's own
    tuned = finetune_rcnn(
        tuned,
        data.roidb_train,
        data.train.load_image,
        data.num_classes,
        ft,
        trainer_kwargs(cfg),
        ckpt_dir=run_dir / "finetune" / "ckpt",
    )
    atomic_torch_save({k: v for k, v in tuned.state_dict().items() if not k.startswith("classifier.")}, path)
    return tuned.eval()


def _svms(
    cfg: DictConfig,
    data: CellData,
    needed: list[str],
    sources: dict[str, tuple[WindowFeatures, WindowFeatures]],
    layers: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    neg_keep: Callable[[int], np.ndarray] | None,
    run_dir: Path,
) -> dict[str, LinearDetector]:
    """Each needed SVM row, loaded from the run dir or mined (all missing rows together in one pass)."""
    out: dict[str, LinearDetector] = {}
    for row in needed:
        path = run_dir / "svm" / f"{row}.npz"
        if path.is_file():
            out[row] = LinearDetector.load(path)
            log.info(f"SVMs of {row} reused from {path}")
    todo = [r for r in needed if r not in out]
    if todo:
        rows = [SVMRow(r, sources[ROWS[r].net][0], layers[r]) for r in todo]
        mined = mine_svms(
            data.roidb_train, rows, data.num_classes, svm_config(cfg), neg_keep, progress=bool(cfg.get("progress"))
        )
        for row, det in mined.items():
            det.save(run_dir / "svm" / f"{row}.npz")
        out.update(mined)
    return out


def _regressor(cfg: DictConfig, data: CellData, train: WindowFeatures, run_dir: Path) -> BoxRegressor:
    """Box regression on the (fine-tuned) net's pool5, loaded from the run dir or trained."""
    path = run_dir / "bbox_reg.npz"
    if path.is_file():
        return BoxRegressor.load(path)
    s, b = svm_config(cfg), cfg.detector.bbox_reg
    scale = row_scales(data.roidb_train, [SVMRow("pool5", train, lambda x: x)], s)["pool5"]
    reg = train_bbox_regressors_streaming(
        data.roidb_train,
        train,
        data.num_classes,
        lam=float(b.lam),
        min_overlap=float(b.min_overlap),
        scale=scale,
        store_dtype=str(b.store_dtype),
        device=resolve_device(cfg),
        progress=bool(cfg.get("progress")),
    )
    reg.save(path)
    return reg


def run_windows(cfg: DictConfig, on_row: OnRow, done_rows: set[str]) -> MethodRun:
    """The runner of the window methods (``spp``, ``rcnn``; :mod:`.methods`): the pretrained net, recorded in
    results.json before the first row (a killed cell's rows name their net too), then every row not done."""
    net, pre_info = load_pretrained(cfg)
    update_results(Path(cfg.run_dir), {"detect": {"pretrained": pre_info}})
    return MethodRun(info={"pretrained": pre_info, **run_detector(cfg, net, on_row=on_row, done_rows=done_rows)})


def run_detector(
    cfg: DictConfig, net: SPPNet, on_row: OnRow | None = None, done_rows: set[str] | None = None
) -> dict[str, Any]:
    """Run every configured row of the cell not in ``done_rows``; returns the run info (``stages``, data, ...).

    ``on_row(row, metrics, info)`` is called as each row (and the chance row) finishes. Ranks other than 0 take
    part in the sharded conv5 extraction only, then exit.
    """
    done_rows = done_rows or set()
    method = method_of(cfg)
    if not method.windows:
        raise ValueError(f"run_detector: detector.method {method.name!r} does not score windows (spp, rcnn do)")
    if not method.pooled and not is_primary():
        log.info("rank > 0: R-CNN cells do not shard; leaving the cell to rank 0")
        raise SystemExit(0)
    rows = [str(r) for r in cfg.rows if r not in done_rows]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        raise ValueError(f"rows {unknown} are not rows of Tables 9/10 ({list(ROWS)})")
    if not rows and "chance" in done_rows:
        return {}
    run_dir, device = Path(cfg.run_dir), resolve_device(cfg)
    data = setup_cell_data(cfg)
    info = dict(data.info)
    if "chance" not in done_rows and is_primary():  # the other ranks write nothing
        metrics = chance_row(cfg, data)
        if on_row is not None:
            on_row("chance", metrics, info)
    if not rows:
        return info
    needs_ft = any(ROWS[r].net == "ft" for r in rows)
    t = time.time()
    stage: SPPStage | None = None
    if method.pooled:
        flips = needs_ft and bool(cfg.scale.finetune.flip)
        stage = spp_features(cfg, data, net, flips, info)
        sources = {"pre": (stage.train, stage.test)}
    else:
        sources = {"pre": rcnn_features(cfg, data, net, info, "pre")}
    info["stages"]["features_s"] = round(time.time() - t, 1)
    heads: dict[str, FCHead] = {"pre": FCHead.from_fc(net.fc).eval()}
    if needs_ft:
        t = time.time()
        if stage is not None:
            heads["ft"] = _finetune_spp(cfg, data, stage, net, run_dir)
            sources["ft"] = sources["pre"]
        else:
            tuned = _finetune_rcnn(cfg, data, net, run_dir)
            heads["ft"] = FCHead.from_fc(tuned.fc).eval()
            sources["ft"] = rcnn_features(cfg, data, tuned, info, "ft")
        info["stages"]["finetune_s"] = round(time.time() - t, 1)
    layers = {r: _layer(heads[d.net], d.layer, device) for r, d in ROWS.items() if d.net in heads}
    neg_keep = None
    if str(cfg.svm.neg_prune) == "conv5_box":
        if stage is None:
            raise ValueError("svm.neg_prune=conv5_box needs the SPP method (it dedups on conv5 windows)")
        neg_keep = _conv5_dedup(stage)
    t = time.time()
    svm_rows = sorted({ROWS[r].svm for r in rows}, key=list(ROWS).index)
    detectors = _svms(cfg, data, svm_rows, sources, layers, neg_keep, run_dir)
    info["stages"]["svm_s"] = round(time.time() - t, 1)
    regressor = None
    if any(ROWS[r].bbox for r in rows):
        t = time.time()
        regressor = _regressor(cfg, data, sources["ft"][0], run_dir)
        info["stages"]["bbox_reg_s"] = round(time.time() - t, 1)
    t = time.time()
    test_rows = [
        TestRow(
            r,
            sources[ROWS[r].net][1],
            layers[ROWS[r].svm],
            detectors[ROWS[r].svm],
            regressor if ROWS[r].bbox else None,
            sources["ft"][1] if ROWS[r].bbox else None,
        )
        for r in rows
    ]
    dets = detect_rows(data.roidb_test, test_rows, test_protocol(cfg), progress=bool(cfg.get("progress")))
    info["stages"]["test_s"] = round(time.time() - t, 1)
    for r in rows:
        found = Detections.from_images(dets[r], data.classes)
        metrics = evaluate_and_write(found, data.test, data.classes, run_dir / f"detections_{r}.jsonl")
        if on_row is not None:
            on_row(r, metrics, info)
        log.info(f"<{cfg.cell}> {r}: mAP {metrics['mAP']:.2f}")
    return info


def _conv5_dedup(stage: SPPStage) -> Callable[[int], np.ndarray]:
    """The authors' negative dedup: one window per identical (conv5 cells, scale) key."""

    def keep(i: int) -> np.ndarray:
        keys = stage.train.keys(i)
        _, first = np.unique(keys, axis=0, return_index=True)
        mask = np.zeros(len(keys), dtype=bool)
        mask[first] = True
        return mask

    return keep
