"""Scan a dataset once: its file lists cached on disk, keyed by the folder tree's listing and mtimes.

Listing ILSVRC2012's 1.28M training files takes seconds to minutes (13 s on a local disk, far more on network
storage), and every DDP rank and every cell of a sweep used to do it again. :func:`load_or_scan` keeps the
result of a listing-only scan (class names and ``(path, class)`` samples) in one gzipped JSON file per dataset
root and scan settings, under ``data.file_list_cache`` (by default ``<runs_root>/file_lists/``, beside the
runs, shared by every cell), and reuses it while the **key** is unchanged.

The key (:func:`tree_signature`) covers what a listing depends on: the root's real path; the name, inode and
``st_mtime_ns`` of every folder down to ``depth`` levels (for ImageNet: ``train/``, ``val/`` and every class
folder; adding, removing or renaming a file changes its folder's mtime); the size and mtime of the non-image
files in the listed folders and of ``extra_files`` (the devkit's ground truth for a flat ``val/``); and the
scan settings. Symbolic links are followed (a re-pointed link changes the inode). A file edited in place keeps
its folder's mtime, which is right for a listing: its name, and so the list, is unchanged. On file systems
with coarse mtimes (1 s on some network mounts) a change within the second of the last scan can go unseen.

Writes are atomic (temporary file, fsync, rename: :mod:`sppnet_exp.utils.io`), so concurrent ranks read the
old file, the new file or none, never half of one. Rank 0 scans and writes; the other ranks wait for a file
with the current key (``wait_s``) and read it, and scan themselves only if it does not come.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from sppnet_exp.utils.io import atomic_write_bytes

from .images import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

__all__ = ["CACHE_VERSION", "cache_path", "load_or_scan", "tree_signature"]

CACHE_VERSION = 1
Listing = tuple[list[str], list[tuple[str, int]], list[tuple[str, int]]]  # classes, train, eval


def _entry(path: Path, rel: str, kind: str) -> list[Any] | None:
    try:
        st = path.stat()  # follows links
    except OSError:
        return None
    if kind == "dir":
        return [rel, "d", st.st_ino, st.st_mtime_ns]
    return [rel, "f", st.st_size, st.st_mtime_ns]


def tree_signature(root: str | Path, depth: int = 2, extra_files: Iterable[str | Path] = ()) -> list[Any]:
    """What a listing of ``root`` depends on (see the module docstring), as a JSON-able list.

    Folders at levels ``< depth`` are listed; folders at every level ``<= depth`` contribute their inode and
    mtime; non-image files of the listed folders and ``extra_files`` their size and mtime.
    """
    root = Path(root)
    sig: list[Any] = [os.path.realpath(root), _entry(root, ".", "dir")]
    frontier = [(root, ".")]
    for level in range(depth):
        nxt = []
        for folder, rel in frontier:
            try:
                with os.scandir(folder) as it:
                    names = sorted((e.name, e.is_dir()) for e in it)
            except OSError:
                continue
            for name, is_dir in names:
                child_rel = f"{rel}/{name}" if rel != "." else name
                if is_dir:
                    sig.append(_entry(folder / name, child_rel, "dir"))
                    if level + 1 < depth:
                        nxt.append((folder / name, child_rel))
                elif os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                    sig.append(_entry(folder / name, child_rel, "file"))
        frontier = nxt
    sig += [_entry(Path(f), str(f), "file") for f in extra_files]
    return sig


def cache_path(cache_dir: str | Path, dataset: str, root: str | Path, params: Mapping[str, Any]) -> Path:
    """The cache file of a dataset root and its scan settings."""
    ident = json.dumps([os.path.realpath(root), dict(params)], sort_keys=True, default=str)
    return Path(cache_dir) / f"{dataset}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.json.gz"


def _key(signature: list[Any], params: Mapping[str, Any]) -> str:
    blob = json.dumps([CACHE_VERSION, dict(params), signature], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _read(path: Path, key: str, root: Path) -> Listing | None:
    try:
        payload = json.loads(gzip.decompress(path.read_bytes()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError) as exc:  # a damaged cache is rebuilt, not trusted
        log.warning("file list cache %s is unreadable (%s); scanning again", path, exc)
        return None
    if not isinstance(payload, dict) or payload.get("key") != key:
        return None
    prefix = _prefix(root)
    try:
        rebuild = lambda rows: [(prefix + rel, int(t)) for rel, t in rows]  # noqa: E731
        return list(payload["classes"]), rebuild(payload["train"]), rebuild(payload["eval"])
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("file list cache %s is malformed (%s); scanning again", path, exc)
        return None


def _prefix(root: Path) -> str:
    return str(root).rstrip(os.sep) + os.sep


def _relative(path: str, prefix: str, root: Path) -> str:
    # String slicing: 1.28M calls of os.path.relpath would take seconds.
    return path[len(prefix) :] if path.startswith(prefix) else os.path.relpath(path, root)


def _write(path: Path, key: str, root: Path, listing: Listing) -> None:
    classes, train, evals = listing
    prefix = _prefix(root)
    rel = lambda rows: [[_relative(p, prefix, root), int(t)] for p, t in rows]  # noqa: E731
    payload = {"version": CACHE_VERSION, "key": key, "root": str(root), "classes": classes}
    payload |= {"train": rel(train), "eval": rel(evals)}
    atomic_write_bytes(path, gzip.compress(json.dumps(payload).encode(), compresslevel=1))


def load_or_scan(
    cache_file: str | Path,
    root: str | Path,
    params: Mapping[str, Any],
    scan: Callable[[], Listing],
    primary: bool = True,
    wait_s: float = 600.0,
    depth: int = 2,
    extra_files: Iterable[str | Path] = (),
    poll_s: float = 0.5,
) -> tuple[Listing, str]:
    """The listing of ``root`` from ``cache_file`` when its key matches, else from ``scan()`` (then cached).

    Returns ``(listing, source)`` with ``source`` one of ``"cache"``, ``"scan"``. A non-``primary`` process
    waits up to ``wait_s`` for the primary's file before scanning itself. Sample paths must lie under
    ``root``; they are stored relative to it.
    """
    cache_file, root = Path(cache_file), Path(root)
    key = _key(tree_signature(root, depth, extra_files), params)
    hit = _read(cache_file, key, root)
    if hit is None and not primary and wait_s > 0:
        deadline = time.monotonic() + wait_s
        while hit is None and time.monotonic() < deadline:
            time.sleep(poll_s)
            hit = _read(cache_file, key, root)
        if hit is None:
            log.warning("no file list from rank 0 in %s after %.0f s; scanning %s here", cache_file, wait_s, root)
    if hit is not None:
        log.info("file lists of %s read from %s", root, cache_file)
        return hit, "cache"
    start = time.perf_counter()
    listing = scan()
    try:
        _write(cache_file, key, root, listing)
    except OSError as exc:  # a read-only or full disk costs the next run a scan, not this run its data
        log.warning("cannot write the file list cache %s (%s); the next run scans %s again", cache_file, exc, root)
        return listing, "scan"
    log.info("scanned %s in %.1f s; file lists cached in %s", root, time.perf_counter() - start, cache_file)
    return listing, "scan"
