"""The resumable on-disk cache of selective-search proposals: ``ProposalCache``, one ``<image_id>.npy`` per image.

Images are computed in a process pool (forkserver with this module, :mod:`.selective_search` and the decoder
preloaded; spawn where forkserver does not exist) by the module-level worker ``_compute_one``. Selective search
itself is :mod:`.selective_search`, the read-time filters :mod:`.filters`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from tqdm.auto import tqdm

from sppnet_exp.utils.claims import try_claim, wait_for
from sppnet_exp.utils.io import atomic_save_npy, atomic_write_text

__all__ = ["ProposalCache"]

log = logging.getLogger(__name__)

_COMPUTE_KEYS = {"max_side": None, "seed": 0}
_READ_KEYS = {"min_size": 0, "max_proposals": None, "dedup": True}
_TMP_MARK = ".tmp-"


class _Record(Protocol):
    image_id: str
    path: Path
    width: int
    height: int


class _Split(Protocol):
    records: Sequence[_Record]


def _init_worker() -> None:
    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def _pool_context() -> mp.context.BaseContext:
    """``forkserver`` preloading this module, selective search and the decoder (torch is imported once, workers are
    forked from a clean server), or ``spawn`` where forkserver does not exist. The preload list is process-global;
    it only takes effect when the forkserver starts and keeps ``__main__`` in it as the default does."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(
        ["__main__", __name__, "sppnet_exp.detection.proposals.selective_search", "sppnet_exp.data.images"]
    )
    return ctx


def _compute_one(task: tuple[str, str, int, int, str, str, int | None, int]) -> tuple[str, int, float]:
    """Worker: decode one image, run selective search, write its boxes atomically. Returns (id, K, CPU seconds);
    K = -1 when another process holds the image's claim (it is computing it; the caller waits for it)."""
    from sppnet_exp.data.images import decode_file
    from sppnet_exp.detection.proposals.selective_search import selective_search

    image_id, path, width, height, out, mode, max_side, seed = task
    claim = try_claim(out)
    if claim is None:
        return image_id, -1, 0.0
    with claim:
        if _readable(Path(out)):  # finished by another process since the list was made
            return image_id, -1, 0.0
        t0 = time.process_time()
        img = decode_file(path).permute(1, 2, 0).numpy()
        if img.shape[:2] != (height, width):
            raise ValueError(f"image {path} is {img.shape[1]}x{img.shape[0]} but its record says {width}x{height}")
        boxes = selective_search(img, mode=mode, max_side=max_side, seed=seed)
        atomic_save_npy(out, boxes)
        return image_id, len(boxes), time.process_time() - t0


def _readable(path: Path) -> bool:
    """A complete (K, 4) boxes file is there."""
    try:
        return _check_boxes(np.load(path, allow_pickle=False), None, None) is None
    except (OSError, ValueError, EOFError):
        return False


class _Progress:
    """tqdm's bar (with its ETA) plus a log line with the ETA at every tenth of the work (for logs without a bar)."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.bar = tqdm(total=total, desc=desc, unit="img", disable=not enabled)
        self.total, self.done, self.desc, self.t0 = total, 0, desc, time.perf_counter()
        self.step = max(1, total // 10)

    def update(self) -> None:
        self.bar.update(1)
        self.done += 1
        if self.done % self.step == 0 and self.done < self.total:
            rate = self.done / (time.perf_counter() - self.t0)
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            log.info("%s: %d/%d images, %.2f images/s, ETA %s", self.desc, self.done, self.total, rate, _clock(eta))

    def close(self) -> None:
        self.bar.close()


def _clock(seconds: float) -> str:
    if seconds != seconds:
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _check_boxes(arr: Any, width: int | None, height: int | None) -> str | None:
    """Why a loaded cache array is unusable (None when it is fine)."""
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[1] != 4:
        return f"expected a (K, 4) array, got {getattr(arr, 'shape', type(arr))}"
    if not np.isfinite(arr).all():
        return "non-finite values"
    known = len(arr) and width is not None and height is not None
    if known and (arr[:, :2].min() < 1 or arr[:, 2].max() > width or arr[:, 3].max() > height):
        return f"boxes outside the {width}x{height} image (a cache of another dataset?)"
    return None


def _parse_method(method: str) -> str:
    from sppnet_exp.detection.proposals.selective_search import SS_MODES

    for prefix in ("ss_", "selective_search_"):
        if method.startswith(prefix) and method[len(prefix) :] in SS_MODES:
            return method[len(prefix) :]
    raise ValueError(f"unknown proposal method {method!r}; expected ss_<mode> with mode in {SS_MODES}")


class ProposalCache:
    """Selective-search proposals of every image, computed once, one ``<image_id>.npy`` per image.

    Files live in ``<root>/<hash>/`` where the hash covers what changes the boxes (method, ``max_side``, ``seed``);
    ``meta.json`` records them. Read-time filters (``min_size``, ``max_proposals``, ``dedup``) are not hashed, so
    changing them never recomputes. Files are stored clipped but unfiltered, in ranking order, and written
    atomically (temp file + ``os.replace``): a killed run resumes and skips finished images. Do not run two
    ``compute`` calls on the same directory at once (each removes stray temp files on start).
    """

    def __init__(self, root: str | Path, method: str = "ss_fast", params: dict | None = None) -> None:
        params = dict(params or {})
        unknown = set(params) - set(_COMPUTE_KEYS) - set(_READ_KEYS)
        if unknown:
            raise ValueError(f"unknown ProposalCache params {sorted(unknown)}; known: {[*_COMPUTE_KEYS, *_READ_KEYS]}")
        self.mode = _parse_method(method)
        self.method = f"ss_{self.mode}"
        self.compute_params = {k: params.get(k, v) for k, v in _COMPUTE_KEYS.items()}
        self.read_params = {k: params.get(k, v) for k, v in _READ_KEYS.items()}
        key = json.dumps({"method": self.method, **self.compute_params}, sort_keys=True)
        self.key = hashlib.sha1(key.encode()).hexdigest()[:12]
        self.dir = Path(root) / self.key
        self._records: dict[str, tuple[str, int, int]] = {}

    # -- paths and metadata
    def path(self, image_id: str) -> Path:
        image_id = str(image_id)
        if not image_id or image_id in (".", "..") or "/" in image_id or "\\" in image_id or _TMP_MARK in image_id:
            raise ValueError(f"image id {image_id!r} cannot name a cache file")
        return self.dir / f"{image_id}.npy"

    def _write_meta(self) -> None:
        meta_path = self.dir / "meta.json"
        meta = {"method": self.method, "params": self.compute_params, "opencv": cv2.__version__}
        if meta_path.exists():
            try:
                old = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                old = {}
            if old.get("opencv") not in (None, cv2.__version__):
                log.warning(
                    "proposal cache %s was made with OpenCV %s, now %s; reused files may differ from new ones",
                    self.dir,
                    old.get("opencv"),
                    cv2.__version__,
                )
                return
            if old.get("method") == self.method and old.get("params") == self.compute_params:
                return
        atomic_write_text(meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")

    def _task(self, image_id: str) -> tuple[str, str, int, int, str, str, int | None, int]:
        path, width, height = self._records[image_id]
        ms, seed = self.compute_params["max_side"], self.compute_params["seed"]
        return image_id, path, width, height, str(self.path(image_id)), self.mode, ms, seed

    def _load(self, image_id: str) -> tuple[np.ndarray | None, str | None]:
        """(boxes, None) or (None, why unusable) for a cached file; ('missing') when absent."""
        file = self.path(image_id)
        if not file.exists():
            return None, "missing"
        try:
            arr = np.load(file, allow_pickle=False)
        except Exception as exc:  # truncated/garbage files raise ValueError, EOFError, OSError, ...
            return None, f"cannot load ({type(exc).__name__}: {exc})"
        w, h = self._records.get(image_id, (None, None, None))[1:]
        why = _check_boxes(arr, w, h)
        return (None, why) if why else (arr.astype(np.float32, copy=False), None)

    # -- computing
    def compute(self, split: _Split, workers: int | None = None, progress: bool = True) -> dict[str, Any]:
        """Compute the proposals of every image of ``split`` that is not cached yet; return stats (``computed``,
        ``reused``, ``corrupt``, ``seconds``, ``images_per_s``, ``images_per_s_per_core``, ``workers``,
        ``mean_boxes``, ``cpu_seconds_per_image`` (decode + search, in the worker), ``cache_dir``).
        ``workers`` defaults to min(2, CPUs); ``workers <= 1`` runs in this process."""
        t0 = time.perf_counter()
        if workers is None:
            workers = min(2, os.cpu_count() or 1)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_meta()
        for stray in self.dir.glob(f"*{_TMP_MARK}*"):  # left by an old version's killed writer
            stray.unlink(missing_ok=True)
        for rec in split.records:
            image_id = str(rec.image_id)
            self.path(image_id)
            self._records[image_id] = (str(rec.path), int(rec.width), int(rec.height))
        ids = list(dict.fromkeys(str(r.image_id) for r in split.records))
        todo, corrupt = [], 0
        for image_id in ids:
            _, why = self._load(image_id)
            if why is None:
                continue
            if why != "missing":
                corrupt += 1
                log.warning("recomputing proposals of %s: %s is unusable: %s", image_id, self.path(image_id), why)
            todo.append(image_id)
        counts, worker_s, claimed = self._run(todo, workers, progress)
        while claimed:  # another process (an array job on the same cache) is computing these: wait, take orphans
            orphans = wait_for([self.path(i) for i in claimed])
            left = [p.stem for p in orphans]
            got, secs, claimed = self._run(left, 1, False) if left else ([], [], [])
            counts, worker_s = counts + got, worker_s + secs
        seconds = time.perf_counter() - t0
        n_workers = max(1, min(int(workers), len(todo))) if todo else 0
        ips = len(todo) / seconds if todo and seconds > 0 else 0.0
        stats = {
            "computed": len(todo),
            "reused": len(ids) - len(todo),
            "corrupt": corrupt,
            "seconds": seconds,
            "images_per_s": ips,
            "images_per_s_per_core": ips / n_workers if n_workers else 0.0,
            "workers": n_workers,
            "mean_boxes": float(np.mean(counts)) if counts else 0.0,
            "cpu_seconds_per_image": float(np.mean(worker_s)) if worker_s else 0.0,
            "cache_dir": str(self.dir),
        }
        log.info("proposals (%s) for %d images: %s", self.method, len(ids), stats)
        return stats

    def _run(self, todo: list[str], workers: int, progress: bool) -> tuple[list[int], list[float], list[str]]:
        """Compute ``todo``; returns the box counts and CPU seconds of what this process computed, and the ids
        another process had claimed."""
        counts: list[int] = []
        secs: list[float] = []
        claimed: list[str] = []
        if not todo:
            return counts, secs, claimed
        bar = _Progress(len(todo), f"selective search ({self.mode})", progress)

        def record(image_id: str, k: int, s: float) -> None:
            if k < 0:
                claimed.append(image_id)
            else:
                counts.append(k)
                secs.append(s)
            bar.update()

        try:
            if workers <= 1 or len(todo) == 1:
                threads = cv2.getNumThreads()
                cv2.setNumThreads(1)
                try:
                    for image_id in todo:
                        record(*_compute_one(self._task(image_id)))
                finally:
                    cv2.setNumThreads(threads)
                return counts, secs, claimed
            ctx = _pool_context()
            n = min(int(workers), len(todo))
            with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker) as pool:
                pending = {pool.submit(_compute_one, self._task(i)) for i in todo}
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for fut in done:
                        if fut.exception() is not None:
                            for other in pending:
                                other.cancel()
                            raise RuntimeError(f"selective search failed: {fut.exception()}") from fut.exception()
                        record(*fut.result())
        finally:
            bar.close()
        return counts, secs, claimed

    # -- reading
    def get(
        self,
        image_id: str,
        min_size: float | None = None,
        max_proposals: int | None = None,
        dedup: bool | None = None,
    ) -> np.ndarray:
        """Cached boxes of ``image_id`` with the read-time filters (arguments override the cache's params).

        A missing or corrupt file of an image seen by :meth:`compute` is (re)computed, the corrupt case with a
        warning; otherwise a missing file raises KeyError."""
        image_id = str(image_id)
        boxes, why = self._load(image_id)
        if boxes is None:
            if image_id not in self._records:
                where = self.path(image_id)
                if why == "missing":
                    raise KeyError(f"no cached proposals for image {image_id!r} ({where}); run compute(split) first")
                raise ValueError(f"cached proposals {where} are unusable ({why}); run compute(split) to recompute")
            if why != "missing":
                warnings.warn(
                    f"recomputing proposals of {image_id}: cache file {self.path(image_id)} is unusable: {why}",
                    RuntimeWarning,
                    stacklevel=2,
                )
            self._run([image_id], workers=1, progress=False)
            boxes, why = self._load(image_id)
            if boxes is None:  # pragma: no cover - the file was just written
                raise RuntimeError(f"proposals of {image_id} unusable right after computing them: {why}")
        from sppnet_exp.detection.proposals.filters import select_proposals

        rp = self.read_params
        return select_proposals(
            boxes,
            rp["min_size"] if min_size is None else min_size,
            rp["max_proposals"] if max_proposals is None else max_proposals,
            rp["dedup"] if dedup is None else dedup,
        )
