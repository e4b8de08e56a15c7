"""Loaders of precomputed proposals: ``.mat`` files (R-CNN's published selective-search boxes, or Fast R-CNN's
per-image demo files) and a plain per-image directory format. All return ``{image_id: float32 (K, 4)}`` boxes
``x1, y1, x2, y2`` 1-based inclusive, in the file's order (the proposal ranking).

``.mat`` layouts (:data:`MAT_LAYOUTS`, detected from the variables or named):

* ``rcnn``: one file per split (R-CNN's ``selective_search_data/voc_2007_{trainval,test}.mat``) with ``images`` (a
  cell of ids) and ``boxes`` (a cell of ``[y1 x1 y2 x2]`` 1-based arrays, MATLAB's row/column order);
* ``fast_rcnn``: one file per image (Fast R-CNN's ``demo/<id>_boxes.mat``) holding ``boxes``, ``[x1 y1 x2 y2]``
  0-based — a folder of ``<id>_boxes.mat`` / ``<id>.mat`` files, or one such file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MAT_LAYOUTS", "load_array_dir", "load_rcnn_mat"]

MAT_LAYOUTS = ("auto", "rcnn", "fast_rcnn")


def _missing_error(missing: list[str], where: Path, total: int) -> KeyError:
    shown = ", ".join(repr(m) for m in missing[:5])
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    return KeyError(f"{len(missing)} of {total} image ids have no proposals in {where}: {shown}{more}")


def _check_rows(arr: np.ndarray, where: str) -> np.ndarray:
    """Validate (K, 4) boxes; raise ValueError naming ``where``."""
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: non-finite box coordinates")
    bad = np.flatnonzero((arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1]))
    if len(bad):
        raise ValueError(f"{where}: {len(bad)} boxes with x2 < x1 or y2 < y1 (first row {bad[0]}: {arr[bad[0]]})")
    return arr.astype(np.float32)


# ------------------------------------------------------------------------------------------------------ R-CNN .mat
def _mat_string(item: Any) -> str:
    """A MATLAB char array as loaded by scipy (nested object/str arrays) -> str."""
    while isinstance(item, np.ndarray) and item.dtype == object and item.size == 1:
        item = item.reshape(-1)[0]
    if isinstance(item, np.ndarray):
        if item.dtype.kind == "U":
            return "".join(item.reshape(-1).tolist())
        if item.dtype.kind in "iuf" and item.size:  # numeric ids (e.g. a double 5 for '000005' is not recoverable)
            return str(int(item.reshape(-1)[0]))
    return str(item)


def _read_mat_v5(path: Path) -> tuple[list[str], list[np.ndarray]]:
    from scipy.io import loadmat

    data = loadmat(str(path))
    for name in ("images", "boxes"):
        if name not in data:
            keys = sorted(k for k in data if not k.startswith("__"))
            raise ValueError(f"{path}: no variable {name!r} (R-CNN layout has 'images' and 'boxes'); found {keys}")
    images = [_mat_string(x) for x in np.asarray(data["images"], dtype=object).reshape(-1, order="F")]
    boxes = [np.asarray(b) for b in np.asarray(data["boxes"], dtype=object).reshape(-1, order="F")]
    return images, boxes


def _read_mat_v73(path: Path) -> tuple[list[str], list[np.ndarray]]:
    try:
        import h5py
    except ImportError as exc:
        raise ValueError(
            f"{path} is a MATLAB v7.3 (HDF5) file; reading it needs h5py, which is not installed "
            "(pip install h5py, or re-save the file with MATLAB's -v7 option)"
        ) from exc
    with h5py.File(path, "r") as f:
        for name in ("images", "boxes"):
            if name not in f:
                raise ValueError(f"{path}: no variable {name!r} (R-CNN layout has 'images' and 'boxes')")

        def deref(ref: Any) -> np.ndarray:
            ds = f[ref]
            if ds.attrs.get("MATLAB_empty", 0):
                return np.zeros((0, 4))
            return np.asarray(ds[()]).T  # MATLAB stores column-major: HDF5 shape is the transpose

        images = ["".join(chr(c) for c in deref(r).reshape(-1)) for r in np.asarray(f["images"][()]).reshape(-1)]
        boxes = [deref(r) for r in np.asarray(f["boxes"][()]).reshape(-1)]
    return images, boxes


def _mat_variables(path: Path) -> list[str]:
    from scipy.io import whosmat

    try:
        return [name for name, _, _ in whosmat(str(path))]
    except Exception:  # v7.3 (HDF5) or unreadable: R-CNN's layout is the one published that way
        return ["images", "boxes"]


def _load_fast_rcnn(path: Path, image_ids: list[str]) -> dict[str, np.ndarray]:
    """Per-image ``boxes`` (0-based x1 y1 x2 y2) from a folder of ``<id>_boxes.mat`` / ``<id>.mat`` or one file."""
    from scipy.io import loadmat

    files: dict[str, Path] = {}
    if path.is_dir():
        for image_id in image_ids:
            for name in (f"{image_id}_boxes.mat", f"{image_id}.mat"):
                if (path / name).is_file():
                    files[image_id] = path / name
                    break
    else:
        stem = path.stem[: -len("_boxes")] if path.stem.endswith("_boxes") else path.stem
        files = {stem: path} if stem in image_ids else {}
    missing = [i for i in image_ids if i not in files]
    if missing:
        raise _missing_error(missing, path, len(image_ids))
    out = {}
    for image_id, file in files.items():
        data = loadmat(str(file))
        if "boxes" not in data:
            keys = sorted(k for k in data if not k.startswith("__"))
            raise ValueError(f"{file}: no variable 'boxes' (Fast R-CNN's layout); found {keys}")
        b = np.asarray(data["boxes"], dtype=np.float64)
        if b.size == 0:
            out[image_id] = np.zeros((0, 4), np.float32)
            continue
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"{file}: 'boxes' has shape {b.shape}, expected (K, 4) x1 y1 x2 y2")
        out[image_id] = _check_rows(b + 1.0, f"{file}")  # 0-based -> 1-based
    return out


def load_rcnn_mat(path: str | Path, image_ids: Iterable[str], layout: str = "auto") -> dict[str, np.ndarray]:
    """Proposals of ``image_ids`` from ``.mat`` files in R-CNN's layout (``images`` + ``boxes`` cells of
    ``[y1 x1 y2 x2]`` 1-based) or Fast R-CNN's (``boxes`` per image, 0-based ``x1 y1 x2 y2``), converted to 1-based
    ``x1 y1 x2 y2``. ``layout``: one of :data:`MAT_LAYOUTS` (``auto``: a folder, or a file with ``boxes`` but no
    ``images``, is Fast R-CNN's; anything else R-CNN's). v7.3 (HDF5) files need h5py."""
    path = Path(path)
    if layout not in MAT_LAYOUTS:
        raise ValueError(f"proposal .mat layout must be one of {MAT_LAYOUTS}, got {layout!r}")
    if not path.exists():
        raise FileNotFoundError(f"proposal file {path} not found")
    ids = [str(i) for i in image_ids]
    if layout == "auto":
        names = [] if path.is_dir() else _mat_variables(path)
        layout = "fast_rcnn" if path.is_dir() or ("boxes" in names and "images" not in names) else "rcnn"
    if layout == "fast_rcnn":
        return _load_fast_rcnn(path, ids)
    if not path.is_file():
        raise FileNotFoundError(f"R-CNN proposal file {path} is not a file (R-CNN's layout is one .mat per split)")
    with open(path, "rb") as fh:
        head = fh.read(128)
    is_v73 = b"MATLAB 7.3" in head or head[:8] == b"\x89HDF\r\n\x1a\n"
    try:
        images, boxes = _read_mat_v73(path) if is_v73 else _read_mat_v5(path)
    except (ValueError, KeyError):
        raise
    except Exception as exc:
        raise ValueError(f"cannot read R-CNN proposal file {path}: {type(exc).__name__}: {exc}") from exc
    if len(images) != len(boxes):
        raise ValueError(f"{path}: {len(images)} image ids but {len(boxes)} box arrays")
    index = {img: i for i, img in enumerate(images)}
    missing = [i for i in ids if i not in index]
    if missing:
        raise _missing_error(missing, path, len(ids))
    out: dict[str, np.ndarray] = {}
    for image_id in ids:
        b = np.asarray(boxes[index[image_id]], dtype=np.float64)
        if b.size == 0:
            out[image_id] = np.zeros((0, 4), dtype=np.float32)
            continue
        if b.ndim != 2 or b.shape[1] < 4:
            raise ValueError(f"{path}: boxes of image {image_id!r} have shape {b.shape}, expected (K, 4)")
        out[image_id] = _check_rows(b[:, [1, 0, 3, 2]], f"{path} (image {image_id!r})")
    return out


# -------------------------------------------------------------------------------------------------- per-image dir
def _read_txt(file: Path) -> np.ndarray:
    rows = []
    for n, line in enumerate(file.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].replace(",", " ").strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) not in (4, 5):
            raise ValueError(f"{file}:{n}: expected 4 or 5 values (x1 y1 x2 y2 [score]), got {len(parts)}")
        try:
            rows.append([float(p) for p in parts[:4]])
        except ValueError as exc:
            raise ValueError(f"{file}:{n}: not a number in {line!r}") from exc
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def _read_npy(file: Path) -> np.ndarray:
    try:
        arr = np.load(file, allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"{file}: cannot load ({type(exc).__name__}: {exc})") from exc
    if arr.size == 0:
        return np.zeros((0, 4))
    if arr.ndim != 2 or arr.shape[1] not in (4, 5) or arr.dtype.kind not in "iuf":
        raise ValueError(f"{file}: expected a numeric (K, 4) or (K, 5) array, got {arr.shape} {arr.dtype}")
    return arr[:, :4].astype(np.float64)


def load_array_dir(path: str | Path, image_ids: Iterable[str]) -> dict[str, np.ndarray]:
    """Proposals from ``<path>/<image_id>.npy`` or ``.txt`` (rows ``x1 y1 x2 y2 [score]``, 1-based; whitespace or
    comma separated, ``#`` comments; an optional score column is ignored). ``.npy`` wins when both exist."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"proposal directory {root} not found")
    ids = [str(i) for i in image_ids]
    files: dict[str, Path] = {}
    missing = []
    for image_id in ids:
        for ext in (".npy", ".txt"):
            f = root / f"{image_id}{ext}"
            if f.is_file():
                files[image_id] = f
                break
        else:
            missing.append(image_id)
    if missing:
        raise _missing_error(missing, root, len(ids))
    out: dict[str, np.ndarray] = {}
    for image_id, f in files.items():
        arr = _read_npy(f) if f.suffix == ".npy" else _read_txt(f)
        out[image_id] = _check_rows(arr, str(f))
    return out
