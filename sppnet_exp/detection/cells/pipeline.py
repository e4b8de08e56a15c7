"""The whole detector of one table cell (SPP-net or R-CNN): every stage cached, so a killed run resumes.

Stages: data -> proposals (cached per image) -> pool5 features of every window (SPP: conv5 once per image and
scale, then window SPP; R-CNN: warped windows through the whole net) -> fine-tuning -> per row
(pool5, fc6, ftfc6, ftfc7, ftfc7_bb) SVMs, test detections and VOC07 mAP. Each finished row is written to
``results.json`` at once; files under ``<run_dir>/`` (fine-tuned weights, SVMs, regressors, detections) are
reused on a re-run.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from sppnet_exp.config import fingerprint
from sppnet_exp.detection.evaluation.inference import ImageDetections, detect_image, scores_for
from sppnet_exp.detection.features.heads import FCHead
from sppnet_exp.detection.structures.roidb import ImageWindows, build_windows
from sppnet_exp.utils.dist import is_primary
from sppnet_exp.utils.io import atomic_torch_save

log = logging.getLogger(__name__)

FT_ROWS = ("ftfc6", "ftfc7", "ftfc7_bb")
ROW_LAYER = {"pool5": "pool5", "fc6": "fc6", "ftfc6": "fc6", "ftfc7": "fc7", "ftfc7_bb": "fc7"}
ROW_SVM = {"ftfc7_bb": "ftfc7"}  # rows that reuse another row's SVM


def ddp_child() -> bool:
    """Whether this process is an extra rank (DDP or SLURM task) started to share the conv5 extraction."""
    return not is_primary()


def resolve_device(cfg: DictConfig) -> torch.device:
    """CUDA when the trainer asks for a GPU (or auto and one is present), else CPU."""
    acc = str(cfg.trainer.get("accelerator", "auto"))
    if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def trainer_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """Lightning Trainer arguments for fine-tuning (single device; the cfg's accelerator and precision)."""
    t = cfg.trainer
    return {
        "accelerator": t.get("accelerator", "auto"),
        "devices": 1,
        "precision": t.get("precision", "32-true"),
        "enable_progress_bar": bool(t.get("enable_progress_bar", True)) and bool(cfg.get("progress", True)),
        "enable_model_summary": False,
        "logger": False,
        "enable_checkpointing": False,
        "default_root_dir": str(cfg.run_dir),
    }


def setup_data(cfg: DictConfig) -> Any:
    """The detection DataModule of ``cfg.data``, set up (splits loaded)."""
    from sppnet_exp.training.wiring import build_datamodule

    dm = build_datamodule(cfg)
    dm.setup()
    return dm


def load_proposals(cfg: DictConfig, split: Any) -> dict[str, np.ndarray]:
    """The proposals of every image of ``split`` as ``cfg.proposals`` says (computed once and cached, or loaded)."""
    from sppnet_exp.detection.proposals.sources import get_proposals

    p = cfg.proposals
    path = p.get("path")
    if isinstance(path, DictConfig):
        path = path.get(split.name)
    return get_proposals(
        split,
        source=str(p.source),
        path=path,
        cache_root=Path(cfg.cache_dir) / "proposals" / _data_tag(cfg),
        mode=str(p.mode),
        max_side=p.get("max_side"),
        min_size=p.get("min_size") or 0,
        max_proposals=p.get("max_proposals"),
        workers=int(cfg.get("workers", 2)),
        progress=bool(cfg.get("progress", True)),
    )


class DetectionRun:
    """One detection cell; :meth:`run` returns ``{row: {"mAP": .., "AP/<class>": ..}}`` (percent)."""

    def __init__(self, cfg: DictConfig, net: torch.nn.Module, on_row: Any = None) -> None:
        self.cfg = cfg
        self.net = net
        self.run_dir = Path(cfg.run_dir)
        self.cache_dir = Path(cfg.cache_dir)
        self.device = resolve_device(cfg)
        self.method = str(cfg.detector.method)
        self.on_row = on_row  # callback(row, metrics, info) to persist a finished row
        self.info: dict[str, Any] = {"stages": {}}

    # -- data and windows ---------------------------------------------------------------------------------
    def setup(self) -> None:
        self.dm = setup_data(self.cfg)
        self.train, self.test = self.dm.train, self.dm.test
        self.classes = list(self.dm.classes)
        self.num_classes = len(self.classes)
        self.info["data"] = {
            "classes": self.classes,
            "train_images": len(self.train),
            "test_images": len(self.test),
            "train_stats": dict(getattr(self.train, "stats", {})),
            "test_stats": dict(getattr(self.test, "stats", {})),
        }
        t = time.time()
        self.props_train = load_proposals(self.cfg, self.train)
        self.props_test = load_proposals(self.cfg, self.test)
        self.info["stages"]["proposals_s"] = round(time.time() - t, 1)
        self.roidb_train = [
            build_windows(r, self.props_train[r.image_id], self.num_classes) for r in self.train.records
        ]
        self.roidb_test = [_proposals_only(r, self.props_test[r.image_id], self.num_classes) for r in self.test.records]
        self.info["windows"] = {
            "train_per_image": float(np.mean([len(w) for w in self.roidb_train])) if self.roidb_train else 0.0,
            "test_per_image": float(np.mean([len(w) for w in self.roidb_test])) if self.roidb_test else 0.0,
        }

    # -- pool5 features -----------------------------------------------------------------------------------
    def _pooled_cache(self, split_name: str, roidb: list[ImageWindows], source: Any, tag: str) -> Any:
        from sppnet_exp.detection.features.conv_cache import PooledCache

        cache = PooledCache(self.cache_dir / "pool5" / tag / split_name)
        cache.build(len(roidb), [w.image_id for w in roidb], lambda i: source(i, roidb[i].boxes), progress=self._p())
        return cache

    def _p(self) -> bool:
        return bool(self.cfg.get("progress", True))

    def build_features(self) -> None:
        """pool5 caches of the train and test windows (and, for R-CNN, of the fine-tuned net later)."""
        t = time.time()
        if self.method == "spp":
            self._spp_features()
        else:
            self._rcnn_features(self.net, "pre")
        self.info["stages"]["features_s"] = round(time.time() - t, 1)

    def _spp_features(self) -> None:
        from sppnet_exp.detection.features.conv_cache import ConvCache, SPPPooledSource, build_conv_cache
        from sppnet_exp.detection.features.mapping import receptive_field

        det = self.cfg.detector
        scales = [int(s) for s in det.scales]
        levels = tuple(det.levels) if det.get("levels") else tuple(self.net.levels)
        if tuple(levels) != tuple(self.net.levels):
            raise ValueError(
                f"detector.levels {list(levels)} differ from the pretrained net's pyramid {list(self.net.levels)}; "
                "fc6 expects the net's own levels in its order"
            )
        conv_tag = fingerprint(self.pre_tag, _data_tag(self.cfg))
        conv = ConvCache(self.cache_dir / "conv5", scales, conv_tag)
        items = [(r.image_id, r.path) for split in (self.train, self.test) for r in split.records]
        t = time.time()
        build_conv_cache(conv, items, self.net.features, scales, trainer_kwargs=self._conv_trainer_kwargs())
        if ddp_child():
            log.info("DDP rank > 0: conv5 shard written, leaving the rest of the detector to rank 0")
            raise SystemExit(0)
        self.info["stages"]["conv5_s"] = round(time.time() - t, 1)
        geom = receptive_field(self.net.features)
        self.geom = geom
        sources = {}
        for name, split in (("train", self.train), ("test", self.test)):
            meta = [(r.image_id, r.width, r.height) for r in split.records]
            sources[name] = SPPPooledSource(
                conv,
                meta,
                scales,
                geom,
                levels=levels,
                mapping_rule=str(det.mapping),
                scale_rule=str(det.scale_rule),
                target=int(det.target_size),
                offset=float(det.get("mapping_offset", 6.5)),
                dtype=torch.float16,  # the cache stores fp16; pooling (a max) is exact in fp16
                device=self.device,
                reuse_out=True,  # PooledCache writes each result before the next call
            )
        self.spp_sources = sources
        pool_tag = fingerprint(
            conv_tag,
            scales,
            levels,
            str(det.mapping),
            str(det.scale_rule),
            det.target_size,
            OmegaConf.to_container(self.cfg.proposals, resolve=True),
        )
        self.pool_train = self._pooled_cache("train", self.roidb_train, sources["train"], pool_tag)
        self.pool_test = self._pooled_cache("test", self.roidb_test, sources["test"], pool_tag)
        self.ft_pool_train, self.ft_pool_test = self.pool_train, self.pool_test

    def _conv_trainer_kwargs(self) -> dict[str, Any]:
        t = OmegaConf.to_container(self.cfg.trainer, resolve=True)
        assert isinstance(t, dict)
        keep = {k: t[k] for k in ("accelerator", "devices", "num_nodes", "precision") if k in t}
        strategy = t.get("strategy")
        if isinstance(strategy, dict) and "_target_" in strategy:
            from hydra.utils import instantiate

            keep["strategy"] = instantiate(strategy, _convert_="all")
        elif strategy is not None:
            keep["strategy"] = strategy
        keep.update(enable_progress_bar=self._p(), enable_model_summary=False, logger=False)
        return keep

    def _rcnn_features(self, net: torch.nn.Module, which: str) -> None:
        from sppnet_exp.detection.features.rcnn_features import RCNNFeatures

        size = int(net.input_size)
        padding = int(self.cfg.detector.padding)
        props = OmegaConf.to_container(self.cfg.proposals, resolve=True)
        tag_parts = [self.pre_tag, _data_tag(self.cfg), size, padding, props]
        if which == "ft":
            tag_parts.append(self.cfg.fingerprint)
        tag = "rcnn-" + fingerprint(*tag_parts)
        caches = []
        for name, split, roidb in (("train", self.train, self.roidb_train), ("test", self.test, self.roidb_test)):
            src = RCNNFeatures(net, split.load_image, size=size, padding=padding, device=self.device)
            caches.append(self._pooled_cache(name, roidb, src, tag))
        if which == "pre":
            self.pool_train, self.pool_test = caches
        else:
            self.ft_pool_train, self.ft_pool_test = caches

    # -- fine-tuning --------------------------------------------------------------------------------------
    def finetune(self) -> FCHead:
        """Fine-tuned fc6/fc7 (SPP: on cached pool5; R-CNN: the whole net on warped windows), cached in run_dir."""
        t = time.time()
        path = self.run_dir / "finetune" / ("fc_head.pt" if self.method == "spp" else "rcnn_net.pt")
        if self.method == "spp":
            from sppnet_exp.detection.finetune.fc import finetune_fc

            head = FCHead.from_fc(self.net.fc)
            if path.is_file():
                head.load_state_dict(torch.load(path, map_location="cpu"))
                log.info(f"fine-tuned fc6/fc7 reused from {path}")
            else:
                ft = dict(OmegaConf.to_container(self.cfg.scale.finetune, resolve=True))
                ft["seed"] = int(self.cfg.seed)
                head = finetune_fc(
                    self.roidb_train,
                    self.pool_train.get,
                    self.net.fc,
                    self.num_classes,
                    ft,
                    trainer_kwargs(self.cfg),
                    ckpt_dir=self.run_dir / "finetune" / "ckpt",
                )
                atomic_torch_save(head.state_dict(), path)
        else:
            from sppnet_exp.detection.finetune.rcnn import finetune_rcnn

            net = copy.deepcopy(self.net)
            if path.is_file():
                net.load_state_dict(torch.load(path, map_location="cpu"), strict=False)
                log.info(f"fine-tuned R-CNN net reused from {path}")
            else:
                ft = dict(OmegaConf.to_container(self.cfg.scale.rcnn_finetune, resolve=True))
                ft["seed"] = int(self.cfg.seed)
                ft["padding"] = int(self.cfg.detector.padding)
                net = finetune_rcnn(
                    net,
                    self.roidb_train,
                    self.train.load_image,
                    self.num_classes,
                    ft,
                    trainer_kwargs(self.cfg),
                    ckpt_dir=self.run_dir / "finetune" / "ckpt",
                )
                atomic_torch_save(_trunk_and_fc(net), path)
            net.eval()
            self._rcnn_features(net, "ft")
            head = FCHead.from_fc(net.fc)
        self.info["stages"]["finetune_s"] = round(time.time() - t, 1)
        return head.eval()

    # -- rows ---------------------------------------------------------------------------------------------
    def run(self, done_rows: set[str] | None = None) -> dict[str, dict[str, float]]:
        """Run every configured row not in ``done_rows``."""
        done_rows = done_rows or set()
        rows = [r for r in self.cfg.rows if r not in done_rows]
        if not rows and "chance" in done_rows:
            return {}
        self.setup()
        out: dict[str, dict[str, float]] = {}
        if "chance" not in done_rows:
            out["chance"] = self._chance()
            if self.on_row is not None:
                self.on_row("chance", out["chance"], self.info)
        self.pre_tag = self._pretrained_tag()
        self.build_features()
        heads: dict[str, FCHead] = {}
        if any(r in ("fc6",) for r in rows):
            heads["pre"] = FCHead.from_fc(self.net.fc).eval()
        if any(r in FT_ROWS for r in rows):
            heads["ft"] = self.finetune()
        detectors: dict[str, Any] = {}
        for row in rows:
            t = time.time()
            svm_row = ROW_SVM.get(row, row)
            ft = svm_row in FT_ROWS
            head = heads.get("ft" if ft else "pre")
            pool_train = self.ft_pool_train if ft else self.pool_train
            pool_test = self.ft_pool_test if ft else self.pool_test
            layer = ROW_LAYER[row]
            if svm_row not in detectors:
                detectors[svm_row] = self._svm(svm_row, layer, head, pool_train)
            regress = self._regressor(pool_train) if row.endswith("_bb") else None
            dets = self._detect(detectors[svm_row], layer, head, pool_test, regress)
            metrics = self._evaluate(row, dets)
            metrics["seconds"] = round(time.time() - t, 1)
            out[row] = metrics
            if self.on_row is not None:
                self.on_row(row, metrics, self.info)
            log.info(f"<{self.cfg.cell}> {row}: mAP {metrics['mAP']:.2f}")
        return out

    def _chance(self) -> dict[str, float]:
        """The chance level: the same test proposals with uniformly random scores, through the same NMS/top-k."""
        rng = np.random.default_rng(int(self.cfg.seed))
        t = self.cfg.test
        dets = [
            detect_image(
                w.image_id,
                w.width,
                w.height,
                w.boxes,
                rng.random((len(w), self.num_classes)),
                score_thresh=None,
                nms_thresh=float(t.nms),
                max_per_image=int(t.max_per_image),
            )
            for w in self.roidb_test
        ]
        return self._evaluate("chance", dets)

    def _pretrained_tag(self) -> str:
        return fingerprint(OmegaConf.to_container(self.cfg.pretrained, resolve=True), self.cfg.scale.pretrain)

    def _layer_fn(self, layer: str, head: FCHead | None):  # noqa: ANN202
        if layer == "pool5":
            return lambda x: x
        assert head is not None
        head = head.to(self.device)
        return lambda x: head.layer_features(x.to(self.device), layer).cpu()

    def _features(self, cache: Any):  # noqa: ANN202
        return lambda i: torch.from_numpy(np.asarray(cache.get(i), dtype=np.float32))

    def _svm(self, row: str, layer: str, head: FCHead | None, pool_train: Any) -> Any:
        from sppnet_exp.detection.linear.svm import LinearDetector, SVMConfig, feature_scale, train_svms

        path = self.run_dir / "svm" / f"{row}.npz"
        if path.is_file():
            log.info(f"SVMs of {row} reused from {path}")
            return LinearDetector.load(path)
        s = self.cfg.svm
        svm_cfg = SVMConfig(
            C=float(s.C),
            pos_weight=float(s.pos_weight),
            bias_mult=float(s.bias_mult),
            target_norm=float(s.target_norm),
            neg_iou=float(s.neg_iou),
            hard_thresh=float(s.hard_thresh),
            evict_thresh=float(s.evict_thresh),
            retrain_limit=int(s.retrain_limit),
            neg_overlap_prune=float(s.neg_overlap) if s.neg_prune == "overlap" else None,
            norm_images=int(s.norm_images),
            norm_boxes=int(s.norm_boxes),
            seed=int(s.seed),
        )
        feats, layer_fn = self._features(pool_train), self._layer_fn(layer, head)
        scale = feature_scale(
            self.roidb_train,
            feats,
            layer_fn,
            svm_cfg.norm_images,
            svm_cfg.norm_boxes,
            svm_cfg.seed,
            svm_cfg.target_norm,
        )
        neg_keep = self._conv5_dedup() if s.neg_prune == "conv5_box" else None
        det = train_svms(
            self.roidb_train,
            feats,
            self.num_classes,
            svm_cfg,
            layer_fn=layer_fn,
            scale=scale,
            neg_keep=neg_keep,
            progress=self._p(),
        )
        det.save(path)
        return det

    def _conv5_dedup(self):  # noqa: ANN202
        """The authors' negative dedup: one window per identical (conv5 cells, scale) key."""
        if self.method != "spp":
            raise ValueError("svm.neg_prune=conv5_box needs the SPP method (it dedups on conv5 windows)")
        src = self.spp_sources["train"]

        def keep(i: int) -> np.ndarray:
            keys = np.asarray(src.keys(i, self.roidb_train[i].boxes))
            _, first = np.unique(keys, axis=0, return_index=True)
            mask = np.zeros(len(keys), dtype=bool)
            mask[first] = True
            return mask

        return keep

    def _regressor(self, pool_train: Any) -> Any:
        from sppnet_exp.detection.linear.bbox_reg import BoxRegressor, train_bbox_regressors
        from sppnet_exp.detection.linear.svm import feature_scale

        path = self.run_dir / "bbox_reg.npz"
        if path.is_file():
            return BoxRegressor.load(path)
        b = self.cfg.detector.bbox_reg
        feats = self._features(pool_train)
        s = self.cfg.svm
        scale = feature_scale(
            self.roidb_train,
            feats,
            lambda x: x,
            int(s.norm_images),
            int(s.norm_boxes),
            int(s.seed),
            float(s.target_norm),
        )
        reg = train_bbox_regressors(
            self.roidb_train, feats, self.num_classes, lam=float(b.lam), min_overlap=float(b.min_overlap), scale=scale
        )
        reg.save(path)
        return reg

    def _detect(self, detector: Any, layer: str, head: FCHead | None, pool_test: Any, regressor: Any) -> list:
        t = self.cfg.test
        layer_fn, feats = self._layer_fn(layer, head), self._features(pool_test)
        bb_feats = None
        if regressor is not None:  # box regression reads pool5 of the (R-CNN: fine-tuned) net
            bb_feats = self._features(self.ft_pool_test if self.method == "rcnn" else self.pool_test)
        out: list[ImageDetections] = []
        for i, win in enumerate(self.roidb_test):
            x = layer_fn(feats(i)) * detector.scale
            scores = scores_for(x, detector.W, detector.b)
            regress = None
            if regressor is not None:
                pool5 = bb_feats(i) * regressor.scale

                def regress(keep: np.ndarray, c: int, pool5=pool5, win=win) -> np.ndarray:  # noqa: ANN001
                    return regressor.predict(pool5[keep].numpy(), win.boxes[keep], c + 1)

            thresh = t.get("score_thresh")
            out.append(
                detect_image(
                    win.image_id,
                    win.width,
                    win.height,
                    win.boxes,
                    scores,
                    score_thresh=None if thresh is None else float(thresh),
                    nms_thresh=float(t.nms),
                    max_per_image=int(t.max_per_image),
                    regress=regress,
                    eval_nms=bool(t.get("eval_nms", True)),
                )
            )
        return out

    def _evaluate(self, row: str, dets: list[ImageDetections]) -> dict[str, float]:
        d = to_detections(dets, self.classes)
        return evaluate_and_save(d, self.test, self.classes, self.run_dir / f"detections_{row}.jsonl")


def evaluate_and_save(dets: Any, split: Any, classes: list[str], path: Path) -> dict[str, float]:
    """Write the detections file, evaluate with the VOC07 devkit rules; mAP and per-class AP in percent."""
    from sppnet_exp.detection.evaluation.voc_eval import evaluate_detections
    from sppnet_exp.detection.structures.detections import write_detections

    write_detections(path, dets)
    res = evaluate_detections(dets, split, classes)
    metrics = {"mAP": round(100.0 * float(res.map), 3)}
    for c, ap in res.ap.items():
        if ap == ap:  # not NaN
            metrics[f"AP/{c}"] = round(100.0 * float(ap), 3)
    metrics["detections"] = float(len(dets.scores))
    return metrics


def to_detections(dets: list[ImageDetections], classes: list[str]) -> Any:
    """Per-image, per-class arrays -> the detections-file container."""
    from sppnet_exp.detection.structures.detections import Detections

    ids, labels, scores, boxes = [], [], [], []
    for d in dets:
        for c, b in d.boxes.items():
            n = len(b)
            ids += [d.image_id] * n
            labels += [classes[c]] * n
            scores.append(d.scores[c])
            boxes.append(b)
    score_arr = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    box_arr = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
    return Detections.from_arrays(ids, labels, score_arr, box_arr)


def _proposals_only(record: Any, proposals: np.ndarray, num_classes: int) -> ImageWindows:
    """Test windows: the proposals alone (GT boxes are never scored at test)."""
    w = build_windows(record, proposals, num_classes)
    keep = ~w.is_gt
    return ImageWindows(
        w.image_id, w.width, w.height, w.boxes[keep], w.gt_classes[keep], w.difficult[keep], w.overlaps[keep]
    )


def _data_tag(cfg: DictConfig) -> str:
    """Identity of the dataset (for caches keyed by image id)."""
    d = cfg.data
    return f"{d.name}-" + fingerprint(d.get("root"), d.get("gen"), d.get("classes"), d.get("max_images"))


def _trunk_and_fc(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in net.state_dict().items() if not k.startswith("classifier.")}
