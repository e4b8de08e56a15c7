"""Region proposals: selective search (OpenCV ximgproc), filtering, a resumable per-image cache, and one dispatch.

Boxes are float32 ``(K, 4)`` ``x1, y1, x2, y2`` in VOC 1-based inclusive pixels of the original image, in the
proposal method's ranking order. Loaders of precomputed proposals live in :mod:`.proposal_formats`.

Selective search modes (see the detection facts, section 4):

- ``fast`` / ``quality`` / ``single``: OpenCV's ``switchToSelectiveSearchFast`` / ``...Quality`` /
  ``switchToSingleStrategy`` (HSV+Lab, k = 150, 300, 450, min_size 100, CFTS+FTS for fast);
- ``rcnn``: the parameters of R-CNN's ``selective_search_boxes.m`` fast mode rebuilt from OpenCV parts (HSV+Lab,
  k = 50, 100 with min_size = k, sigma 0.8, strategies CTSF and TSF). OpenCV's features (Scharr texture) and
  ranking are kept, so boxes do not match the MATLAB code bit for bit.

OpenCV ranks regions with C ``rand()``; :func:`selective_search` seeds it (and OpenCV's RNG) before every image so
that an image's proposals do not depend on which process computed it or on what it computed before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import logging
import multiprocessing as mp
import os
import time
import uuid
import warnings
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from tqdm.auto import tqdm

from sppnet_exp.detection.boxes import clip_boxes
from sppnet_exp.detection.proposal_formats import load_array_dir, load_rcnn_mat

__all__ = [
    "SS_MODES",
    "ProposalCache",
    "filter_proposals",
    "get_proposals",
    "load_array_dir",
    "load_rcnn_mat",
    "select_proposals",
    "selective_search",
]

log = logging.getLogger(__name__)

SS_MODES = ("fast", "quality", "single", "rcnn")
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


# ----------------------------------------------------------------------------------------------- selective search
_LIBC: Any = None
_LIBC_TRIED = False


def _libc() -> Any:
    """The C runtime whose ``srand`` seeds OpenCV's ``rand()`` (None where it cannot be found)."""
    global _LIBC, _LIBC_TRIED
    if not _LIBC_TRIED:
        _LIBC_TRIED = True
        for name in (None, ctypes.util.find_library("c"), "ucrtbase", "msvcrt"):
            try:
                lib = ctypes.CDLL(name)
                lib.srand.argtypes = [ctypes.c_uint]
                _LIBC = lib
                break
            except (OSError, AttributeError, TypeError):
                continue
        if _LIBC is None:
            warnings.warn(
                "cannot load the C runtime to seed rand(); selective-search rankings then depend on the process "
                "history and are not reproducible per image",
                RuntimeWarning,
                stacklevel=3,
            )
    return _LIBC


def _seed_rngs(seed: int) -> None:
    cv2.setRNGSeed(int(seed))
    lib = _libc()
    if lib is not None:
        lib.srand(int(seed) & 0xFFFFFFFF)


def _configure(ss: Any, bgr: np.ndarray, mode: str) -> None:
    """Set up a SelectiveSearchSegmentation object for ``mode``."""
    seg = cv2.ximgproc.segmentation
    if mode == "fast":
        ss.setBaseImage(bgr)
        ss.switchToSelectiveSearchFast()
    elif mode == "quality":
        ss.setBaseImage(bgr)
        ss.switchToSelectiveSearchQuality()
    elif mode == "single":
        ss.setBaseImage(bgr)
        ss.switchToSingleStrategy()
    elif mode == "rcnn":
        ss.addImage(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV))
        ss.addImage(cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab))
        for k in (50, 100):
            ss.addGraphSegmentation(seg.createGraphSegmentation(0.8, float(k), k))
        ss.addStrategy(
            seg.createSelectiveSearchSegmentationStrategyMultiple(
                seg.createSelectiveSearchSegmentationStrategyColor(),
                seg.createSelectiveSearchSegmentationStrategyTexture(),
                seg.createSelectiveSearchSegmentationStrategySize(),
                seg.createSelectiveSearchSegmentationStrategyFill(),
            )
        )
        ss.addStrategy(
            seg.createSelectiveSearchSegmentationStrategyMultiple(
                seg.createSelectiveSearchSegmentationStrategyTexture(),
                seg.createSelectiveSearchSegmentationStrategySize(),
                seg.createSelectiveSearchSegmentationStrategyFill(),
            )
        )
    else:
        raise ValueError(f"unknown selective-search mode {mode!r}; expected one of {SS_MODES}")


def selective_search(image: np.ndarray, mode: str = "fast", max_side: int | None = None, seed: int = 0) -> np.ndarray:
    """Selective-search boxes of an RGB ``uint8`` ``H x W x 3`` image: float32 ``(K, 4)`` 1-based inclusive.

    With ``max_side`` the image is first shrunk (INTER_AREA) so that its longer side is at most ``max_side`` (as
    R-CNN's demo resizes to width 500); boxes are mapped back with ``(b - 1) * scale + 1`` and clipped.
    """
    if mode not in SS_MODES:
        raise ValueError(f"unknown selective-search mode {mode!r}; expected one of {SS_MODES}")
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or min(img.shape[:2]) < 1:
        raise ValueError(f"selective_search expects an H x W x 3 uint8 RGB image, got {img.shape} {img.dtype}")
    height, width = img.shape[:2]
    sx = sy = 1.0
    if max_side is not None and max(height, width) > max_side:
        if max_side < 1:
            raise ValueError(f"max_side must be >= 1, got {max_side}")
        f = max_side / max(height, width)
        new_w, new_h = max(1, round(width * f)), max(1, round(height * f))
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_AREA)
        sx, sy = width / new_w, height / new_h
    bgr = np.ascontiguousarray(img[:, :, ::-1])
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    _configure(ss, bgr, mode)
    _seed_rngs(seed)
    rects = np.asarray(ss.process(), dtype=np.float64).reshape(-1, 4)
    boxes = np.empty_like(rects)
    boxes[:, 0] = rects[:, 0] + 1
    boxes[:, 1] = rects[:, 1] + 1
    boxes[:, 2] = rects[:, 0] + rects[:, 2]
    boxes[:, 3] = rects[:, 1] + rects[:, 3]
    if sx != 1.0 or sy != 1.0:
        boxes[:, [0, 2]] = (boxes[:, [0, 2]] - 1) * sx + 1
        boxes[:, [1, 3]] = (boxes[:, [1, 3]] - 1) * sy + 1
        boxes = clip_boxes(boxes, width, height)
    return boxes.astype(np.float32)


# ------------------------------------------------------------------------------------------------------ filtering
def select_proposals(
    boxes: np.ndarray, min_size: float = 0, max_proposals: int | None = None, dedup: bool = True
) -> np.ndarray:
    """Drop empty boxes and boxes with width or height < ``min_size`` (+1 widths), then exact duplicates (first
    kept), then keep the first ``max_proposals``; order is preserved. Boxes are assumed already clipped."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    w = b[:, 2] - b[:, 0] + 1
    h = b[:, 3] - b[:, 1] + 1
    b = b[(w >= max(min_size, 1)) & (h >= max(min_size, 1))]
    if dedup and len(b) > 1:
        _, first = np.unique(b, axis=0, return_index=True)
        b = b[np.sort(first)]
    if max_proposals is not None:
        if max_proposals < 0:
            raise ValueError(f"max_proposals must be >= 0 or None, got {max_proposals}")
        b = b[:max_proposals]
    return np.ascontiguousarray(b, dtype=np.float32)


def filter_proposals(
    boxes: np.ndarray,
    width: int,
    height: int,
    min_size: float = 0,
    max_proposals: int | None = None,
    dedup: bool = True,
) -> np.ndarray:
    """Drop boxes entirely outside the image, clip the rest, then :func:`select_proposals` (R-CNN's
    ``FilterBoxesWidth`` + ``BoxRemoveDuplicates``)."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    b = b[(b[:, 0] <= width) & (b[:, 1] <= height) & (b[:, 2] >= 1) & (b[:, 3] >= 1)]
    return select_proposals(clip_boxes(b, width, height), min_size, max_proposals, dedup)


# ---------------------------------------------------------------------------------------------------------- cache
def _init_worker() -> None:
    cv2.setNumThreads(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def _pool_context() -> mp.context.BaseContext:
    """``forkserver`` preloading this module and the decoder (torch is imported once, workers are forked from a
    clean server), or ``spawn`` where forkserver does not exist. The preload list is process-global; it only
    takes effect when the forkserver starts and keeps ``__main__`` in it as the default does."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", __name__, "sppnet_exp.data.images"])
    return ctx


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f"{path.name}{_TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, arr)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _compute_one(task: tuple[str, str, int, int, str, str, int | None, int]) -> tuple[str, int, float]:
    """Worker: decode one image, run selective search, write its boxes atomically. Returns (id, K, CPU seconds)."""
    from sppnet_exp.data.images import decode_file

    image_id, path, width, height, out, mode, max_side, seed = task
    t0 = time.process_time()
    img = decode_file(path).permute(1, 2, 0).numpy()
    if img.shape[:2] != (height, width):
        raise ValueError(f"image {path} is {img.shape[1]}x{img.shape[0]} but its record says {width}x{height}")
    boxes = selective_search(img, mode=mode, max_side=max_side, seed=seed)
    _atomic_save(Path(out), boxes)
    return image_id, len(boxes), time.process_time() - t0


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
        tmp = meta_path.with_name(f"meta.json{_TMP_MARK}{os.getpid()}")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, meta_path)

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
        for stray in self.dir.glob(f"*{_TMP_MARK}*"):
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
        counts, worker_s = self._run(todo, workers, progress)
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

    def _run(self, todo: list[str], workers: int, progress: bool) -> tuple[list[int], list[float]]:
        counts: list[int] = []
        secs: list[float] = []
        if not todo:
            return counts, secs
        bar = tqdm(total=len(todo), desc=f"selective search ({self.mode})", unit="img", disable=not progress)
        try:
            if workers <= 1 or len(todo) == 1:
                threads = cv2.getNumThreads()
                cv2.setNumThreads(1)
                try:
                    for image_id in todo:
                        _, k, s = _compute_one(self._task(image_id))
                        counts.append(k)
                        secs.append(s)
                        bar.update(1)
                finally:
                    cv2.setNumThreads(threads)
                return counts, secs
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
                        _, k, s = fut.result()
                        counts.append(k)
                        secs.append(s)
                        bar.update(1)
        finally:
            bar.close()
        return counts, secs

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
        rp = self.read_params
        return select_proposals(
            boxes,
            rp["min_size"] if min_size is None else min_size,
            rp["max_proposals"] if max_proposals is None else max_proposals,
            rp["dedup"] if dedup is None else dedup,
        )


# -------------------------------------------------------------------------------------------------------- dispatch
def get_proposals(
    split: _Split,
    source: str = "selective_search",
    path: str | Path | None = None,
    cache_root: str | Path = Path("data") / "proposals",
    mode: str = "fast",
    max_side: int | None = None,
    min_size: float = 0,
    max_proposals: int | None = None,
    dedup: bool = True,
    workers: int | None = None,
    progress: bool = True,
    seed: int = 0,
    stats: dict | None = None,
) -> dict[str, np.ndarray]:
    """Proposals of every image of ``split`` as ``{image_id: (K, 4) float32}``, clipped and filtered.

    ``source``: ``selective_search`` (computed once into ``cache_root``), ``rcnn_mat`` (R-CNN's published .mat
    at ``path``) or ``array_dir`` (``path/<image_id>.npy|.txt``). ``stats``, when given, is updated with counts.
    """
    records = list(split.records)
    ids = [str(r.image_id) for r in records]
    t0 = time.perf_counter()
    if source == "selective_search":
        cache = ProposalCache(cache_root, f"ss_{mode}", {"max_side": max_side, "seed": seed})
        run_stats = cache.compute(split, workers=workers, progress=progress)
        raw = {i: cache.get(i, min_size=0, max_proposals=None, dedup=False) for i in ids}
        if stats is not None:
            stats.update(run_stats)
    elif source in ("rcnn_mat", "array_dir"):
        if path is None:
            raise ValueError(f"proposal source {source!r} needs a path")
        raw = load_rcnn_mat(path, ids) if source == "rcnn_mat" else load_array_dir(path, ids)
    else:
        raise ValueError(f"unknown proposal source {source!r}; expected selective_search, rcnn_mat or array_dir")
    out: dict[str, np.ndarray] = {}
    outside = 0
    for rec in records:
        b = raw[str(rec.image_id)]
        if len(b) and (
            b[:, :2].min() < 1 - 1e-3 or b[:, 2].max() > rec.width + 1e-3 or b[:, 3].max() > rec.height + 1e-3
        ):
            outside += 1
        out[str(rec.image_id)] = filter_proposals(b, rec.width, rec.height, min_size, max_proposals, dedup)
    if outside:
        log.warning(
            "%d of %d images had proposals outside the image (clipped); check the source %s",
            outside,
            len(records),
            path,
        )
    counts = [len(b) for b in out.values()]
    summary = {
        "source": source,
        "images": len(out),
        "mean_proposals": float(np.mean(counts)) if counts else 0.0,
        "min_proposals": int(min(counts)) if counts else 0,
        "images_outside": outside,
        "total_seconds": time.perf_counter() - t0,
    }
    log.info("proposals: %s", summary)
    if stats is not None:
        stats.update(summary)
    return out
