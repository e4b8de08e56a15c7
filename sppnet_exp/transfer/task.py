"""The transfer task: one column of Table 6 (VOC 2007) or Table 7 (Caltech101) for one seed per run.

A run: the pretrained Table 2 net (:mod:`sppnet_exp.engine.pretrained`: its run dir, trained first when missing)
→ the train and test images (the data group's DataModule; Caltech101: 30 / <= 50 per class, background excluded,
the split drawn from the seed; VOC 2007: trainval / test, multi-label) → the features of every layer of the column's
view at size s (:mod:`.features`; kept per image in a cache shared by every split and run, :class:`FeatureCache`)
→ for each layer, one-vs-rest linear SVMs on the l2-normalised training features (:mod:`.svm`) → the measure on the
test images, in percent, written to ``results.json`` as ``metrics[layer]["acc"]`` (mean per-class accuracy,
single-label data) or ``metrics[layer]["mAP"]`` (VOC07 11-point mAP, multi-label data), each layer as it finishes.
The report averages the seeds and gives their spread.

``size`` is s, or ``{base: s0, factors: [...], val_fraction: f}``: Table 6 (d)'s "best s ... based on the validation
set" among the grid ``round(s0 x factor)`` (relative to the training crop s0, so one grid serves both scales). The
training images are split once (seeded) into a held-out fraction f and the rest; at every s of the grid the SVMs of
every layer are trained on the rest (C chosen on it as usual) and scored on the held-out images; the s with the best
mean score over the layers is then used as a fixed s (SVMs on all training images, scored on the test images).
The scores of the search are kept in ``results.json`` (``transfer.size_search``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from sppnet_exp.config import REPO_DIR, fingerprint
from sppnet_exp.data.images import decode_file
from sppnet_exp.engine.lifecycle import open_run, record_table, tables_with
from sppnet_exp.engine.pretrained import load_pretrained, pretrained_identity
from sppnet_exp.engine.results import make_payload, update_results, write_results
from sppnet_exp.engine.wiring import build_datamodule, build_loggers, resolve_device
from sppnet_exp.models.net import SPPNet
from sppnet_exp.transfer.features import extract, layers_for
from sppnet_exp.transfer.svm import choose_c, class_aps, fit_ovr, score
from sppnet_exp.utils.io import atomic_savez

log = logging.getLogger(__name__)

__all__ = ["FeatureCache", "transfer"]


class FeatureCache:
    """Features of a net's layers at one view and size, per image path, in ``root/<tag>.npz`` (float32 rows).

    ``get`` computes the images it lacks, adds them and rewrites the file atomically, so splits that share images
    compute them once and a killed run loses only the images of its last call."""

    def __init__(self, root: Path, tag: str) -> None:
        self.path = Path(root) / f"{tag}.npz"

    def _load(self) -> tuple[list[str], dict[str, np.ndarray]]:
        if not self.path.is_file():
            return [], {}
        with np.load(self.path, allow_pickle=False) as z:
            paths = [str(p) for p in z["paths"]]
            return paths, {k[2:]: z[k] for k in z.files if k.startswith("f_")}

    def get(self, net: SPPNet, paths: list[str], kind: str, size: int, layers: list[str], **kw: Any) -> dict:
        """``{layer: (len(paths), D)}`` for ``paths`` in order."""
        known, feats = self._load()  # the tag names the layers: the file holds exactly these
        index = {p: i for i, p in enumerate(known)}
        missing = [p for p in dict.fromkeys(paths) if p not in index]
        if missing:
            log.info(f"features of {len(missing)} images ({kind} view, s = {size}) -> {self.path}")
            new = extract(net, (decode_file(p) for p in missing), kind, size, layers, **kw)
            feats = {k: np.concatenate([feats[k], new[k]]) if k in feats else new[k] for k in layers}
            known = known + missing
            index = {p: i for i, p in enumerate(known)}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_savez(self.path, paths=np.asarray(known), **{f"f_{k}": v for k, v in feats.items()})
        rows = np.asarray([index[p] for p in paths], dtype=np.int64)
        return {k: feats[k][rows] for k in layers}


def _payload(cfg: DictConfig, net: SPPNet, status: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    payload = make_payload(
        cell=str(cfg.cell),
        model=str(cfg.pretrained.model),
        mode=f"{net.head}-{cfg.view}",
        levels=list(net.levels),
        data=str(cfg.data_name),
        data_root=cfg.data.root,
        scale=str(cfg.scale.name),
        seed=int(cfg.seed),
        fingerprint=str(cfg.fingerprint),
        tables=tables_with(previous, cfg.table),
        config=OmegaConf.to_container(cfg, resolve=True),
        repo_dir=REPO_DIR,
        status=status,
    )
    return {**payload, "task": "transfer", "run_dir": str(cfg.run_dir)}


def _labels(samples: list[tuple[str, Any]], multilabel: bool) -> np.ndarray:
    """(N,) class indices, or (N, K) multi-hot targets in {1, 0, -1} for multi-label data."""
    if multilabel:
        return np.stack([np.asarray(t, dtype=np.float32) for _, t in samples])
    return np.asarray([int(t) for _, t in samples])


def _chosen_size(
    cfg: DictConfig,
    paths: list[str],
    y: np.ndarray,
    layers: list[str],
    features: Callable[[list[str], int], dict[str, np.ndarray]],
    fit_layer: Callable[[np.ndarray, np.ndarray], tuple[Any, float, Any]],
    info: dict[str, Any],
) -> int:
    """``cfg.size`` when it is a number; for ``{base, factors, val_fraction}`` the s of the grid whose SVMs, trained
    on the training images less a seeded held-out fraction, score best on the held-out ones (mean over the layers)."""
    if not isinstance(cfg.size, DictConfig):
        return int(cfg.size)
    grid = list(dict.fromkeys(int(float(cfg.size.base) * float(f) + 0.5) for f in cfg.size.factors))
    frac = float(cfg.size.val_fraction)
    if not grid or not 0.0 < frac < 1.0:
        raise ValueError(f"size: grid must list sizes and 0 < val_fraction < 1, got {grid} and {frac}")
    held = np.zeros(len(paths), bool)
    held[np.random.default_rng([int(cfg.seed), 6]).permutation(len(paths))[: max(1, round(frac * len(paths)))]] = True
    search: dict[str, dict[str, float]] = {}
    for s in grid:
        x = features(paths, s)
        search[str(s)] = {}
        for layer in layers:
            model, _, _ = fit_layer(x[layer][~held], y[~held])
            search[str(s)][layer] = round(100.0 * score(model, x[layer][held], y[held]), 2)
        log.info(f"<{cfg.cell}> seed {cfg.seed}: s = {s} on the held-out training images: {search[str(s)]}")
    best = max(grid, key=lambda s: (float(np.nanmean(list(search[str(s)].values()))), -s))
    info["size_search"] = {"held_out": int(held.sum()), "scores": search, "chosen": best}
    info["size"] = best
    return best


def transfer(cfg: DictConfig) -> dict[str, Any]:
    """Run (or skip) the transfer cell ``cfg`` describes for its split; return its results."""
    run_dir = Path(cfg.run_dir)
    previous = open_run(cfg, [])
    if cfg.skip_finished and previous is not None and previous.get("status") == "finished":
        log.info(f"Skipping finished transfer cell <{cfg.cell}> (split {cfg.seed}): {run_dir}")
        return record_table(run_dir, previous, cfg.table)
    net, net_info = load_pretrained(cfg)
    net.eval()
    layers = layers_for(net, str(cfg.view), list(cfg.layers))
    dm = build_datamodule(cfg)
    dm.setup()
    train, test = list(dm.train_samples), list(dm.eval_samples)
    classes = list(dm.class_names)
    loggers = build_loggers(cfg)
    metrics: dict[str, dict[str, float]] = {}
    info = {
        "pretrained": {**net_info, **pretrained_identity(cfg)},
        "view": str(cfg.view),
        "size": OmegaConf.to_container(cfg.size) if isinstance(cfg.size, DictConfig) else int(cfg.size),
        "classes": len(classes),
        "train_images": len(train),
        "test_images": len(test),
        "layers": layers,
    }
    write_results(run_dir, {**_payload(cfg, net, "running", previous), "metrics": metrics, "transfer": info})
    start = time.time()
    y_train, y_test = _labels(train, dm.multilabel), _labels(test, dm.multilabel)
    measure = "mAP" if dm.multilabel else "acc"

    def features(paths: list[str], size: int) -> dict[str, np.ndarray]:
        tag = "transfer-" + fingerprint(pretrained_identity(cfg), str(cfg.data_name), cfg.data.root, str(cfg.view),
                                        size, layers)  # fmt: skip
        kw = {"device": resolve_device(cfg), "batch_size": int(cfg.batch_size)}
        return FeatureCache(Path(cfg.cache_dir) / "transfer", tag).get(net, paths, str(cfg.view), size, layers, **kw)

    def fit_layer(x: np.ndarray, y: np.ndarray) -> tuple[Any, float, dict[float, float] | None]:
        if str(svm.C) != "auto":
            return fit_ovr(x, y, len(classes), C=float(svm.C), seed=int(cfg.seed), **fit), float(svm.C), None
        c, cv = choose_c(x, y, len(classes), tuple(float(v) for v in svm.C_grid), int(svm.folds),
                         seed=int(cfg.seed), **fit)  # fmt: skip
        return fit_ovr(x, y, len(classes), C=c, seed=int(cfg.seed), **fit), c, cv

    svm = cfg.svm
    fit = {"normalize": bool(svm.normalize), "tol": float(svm.tol), "max_iter": int(svm.max_iter)}
    train_paths = [p for p, _ in train]
    size = _chosen_size(cfg, train_paths, y_train, layers, features, fit_layer, info)
    x_train = features(train_paths, size)
    x_test = features([p for p, _ in test], size)
    for layer in layers:
        model, c, cv = fit_layer(x_train[layer], y_train)
        if cv is not None:
            info.setdefault("svm_cv", {})[layer] = {str(k): round(100 * v, 2) for k, v in cv.items()}
        value = 100.0 * score(model, x_test[layer], y_test)
        metrics[layer] = {measure: value, "C": c, "dim": float(x_train[layer].shape[1])}
        if dm.multilabel:  # each class's AP beside the mean (null: no positive test image)
            aps = class_aps(model.scores(x_test[layer]), y_test)
            info.setdefault("class_ap", {})[layer] = {
                name: None if np.isnan(a) else round(100.0 * float(a), 2) for name, a in zip(classes, aps)
            }
        update_results(run_dir, {"metrics": {layer: metrics[layer]}})
        for lg in loggers:
            lg.log_metrics({f"{layer}/{measure}": value})
        log.info(f"<{cfg.cell}> seed {cfg.seed}: {layer} ({x_train[layer].shape[1]}-d, C {c:g}) {measure} {value:.2f}%")
    info["seconds"] = round(time.time() - start, 1)
    info["split"] = hashlib.sha1("\n".join(p for p, _ in train).encode()).hexdigest()[:12]
    payload = {**_payload(cfg, net, "finished", previous), "metrics": metrics, "transfer": info}
    write_results(run_dir, payload)
    for lg in loggers:
        lg.finalize("success")
    return payload
