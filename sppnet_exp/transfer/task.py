"""The transfer task: one column of Table 7 (Caltech101) for one random split — the seed — per run.

A run: the pretrained Table 2 net (:mod:`sppnet_exp.engine.pretrained`: its run dir, trained first when missing)
→ the split's train and test images (the data group's DataModule: 30 / <= 50 per class, background excluded, the
split drawn from the seed) → the features of every layer of the column's view at size s
(:mod:`.features`; kept per image in a cache shared by every split and run, :class:`FeatureCache`) → for each
layer, one-vs-rest linear SVMs on the l2-normalised training features (:mod:`.svm`) → the mean per-class accuracy
on the test images, in percent, written to ``results.json`` as ``metrics[layer]["acc"]`` (each finished layer at
once). The report averages the splits (seeds) and gives their spread.
"""

from __future__ import annotations

import hashlib
import logging
import time
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
from sppnet_exp.transfer.svm import choose_c, fit_ovr, mean_class_accuracy
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
        "size": int(cfg.size),
        "classes": len(classes),
        "train_images": len(train),
        "test_images": len(test),
        "layers": layers,
    }
    write_results(run_dir, {**_payload(cfg, net, "running", previous), "metrics": metrics, "transfer": info})
    start = time.time()
    tag = "transfer-" + fingerprint(pretrained_identity(cfg), str(cfg.data_name), cfg.data.root, str(cfg.view),
                                    int(cfg.size), layers)  # fmt: skip
    cache = FeatureCache(Path(cfg.cache_dir) / "transfer", tag)
    kw = {"device": resolve_device(cfg), "batch_size": int(cfg.batch_size)}
    x_train = cache.get(net, [p for p, _ in train], str(cfg.view), int(cfg.size), layers, **kw)
    x_test = cache.get(net, [p for p, _ in test], str(cfg.view), int(cfg.size), layers, **kw)
    y_train = np.asarray([int(t) for _, t in train])
    y_test = np.asarray([int(t) for _, t in test])
    svm = cfg.svm
    fit = {"normalize": bool(svm.normalize), "tol": float(svm.tol), "max_iter": int(svm.max_iter)}
    for layer in layers:
        if str(svm.C) == "auto":
            c, cv = choose_c(x_train[layer], y_train, len(classes), tuple(float(v) for v in svm.C_grid),
                             int(svm.folds), seed=int(cfg.seed), **fit)  # fmt: skip
            info.setdefault("svm_cv", {})[layer] = {str(k): round(100 * v, 2) for k, v in cv.items()}
        else:
            c = float(svm.C)
        model = fit_ovr(x_train[layer], y_train, len(classes), C=c, seed=int(cfg.seed), **fit)
        acc = 100.0 * mean_class_accuracy(model.predict(x_test[layer]), y_test, len(classes))
        metrics[layer] = {"acc": acc, "C": c, "dim": float(x_train[layer].shape[1])}
        update_results(run_dir, {"metrics": {layer: metrics[layer]}})
        for lg in loggers:
            lg.log_metrics({f"{layer}/acc": acc})
        log.info(f"<{cfg.cell}> split {cfg.seed}: {layer} ({x_train[layer].shape[1]}-d, C {c:g}) accuracy {acc:.2f}%")
    info["seconds"] = round(time.time() - start, 1)
    info["split"] = hashlib.sha1("\n".join(p for p, _ in train).encode()).hexdigest()[:12]
    payload = {**_payload(cfg, net, "finished", previous), "metrics": metrics, "transfer": info}
    write_results(run_dir, payload)
    for lg in loggers:
        lg.finalize("success")
    return payload
