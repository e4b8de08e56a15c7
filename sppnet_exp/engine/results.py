"""The per-run ``results.json`` (schema in DESIGN.md): atomic write, deep-merge update, read and scan.

One file per run dir ``<runs_root>/<cell>/<data>-<scale>-s<seed>-<fingerprint>/results.json``. Errors are in
percent. Training writes it with ``status="running"`` and then ``"finished"``; evaluation adds views under
``metrics`` with :func:`update_results` without dropping the views already there.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sppnet_exp.utils.env import git_info, host_info, versions
from sppnet_exp.utils.io import atomic_write_json, read_json

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
SUPERSEDED = "superseded"  # <run_dir>/superseded/<time>/: an earlier run of a run dir, moved by a forced re-run
LOG_DIRS = ("csv", "wandb")  # what a forced re-run leaves in place (the CSV log gets a new version beside it)
SCHEMA_VERSION = 1
STATUSES = ("running", "finished", "failed")


def _now() -> str:
    """Current time, ISO 8601 with timezone."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _path(run_dir: str | os.PathLike[str]) -> Path:
    """The results file of a run dir (a path to the file itself is accepted too)."""
    p = Path(run_dir)
    return p if p.name == RESULTS_FILE else p / RESULTS_FILE


def deep_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated by ``patch``; nested dicts merge key by key, any other value replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def make_payload(
    *,
    cell: str,
    model: str,
    mode: str,
    levels: Sequence[int] | None,
    data: str,
    scale: str,
    seed: int,
    fingerprint: str,
    tables: Sequence[str] = (),
    data_root: str | None = None,
    config: Mapping[str, Any] | None = None,
    world_size: int = 1,
    repo_dir: str | os.PathLike[str] | None = None,
    status: str = "running",
) -> dict[str, Any]:
    """A fresh payload with the identity fields and provenance (versions, git, host) filled in."""
    host = host_info()
    host["world_size"] = world_size
    return {
        "schema": SCHEMA_VERSION,
        "status": status,
        "cell": cell,
        "model": model,
        "mode": mode,
        "levels": list(levels) if levels is not None else None,
        "data": data,
        "data_root": data_root,
        "scale": scale,
        "seed": seed,
        "fingerprint": fingerprint,
        "tables": list(tables),
        "metrics": {},
        "train": {},
        "config": dict(config or {}),
        "versions": versions(),
        "git": git_info(repo_dir),
        "host": host,
        "updated": _now(),
    }


def _validate(payload: Mapping[str, Any], where: Path) -> None:
    """Reject payloads that would break the reporter later."""
    if not isinstance(payload, Mapping):
        raise TypeError(f"{where}: results payload must be a dict, got {type(payload).__name__}")
    status = payload.get("status")
    if status is not None and status not in STATUSES:
        raise ValueError(f"{where}: status must be one of {STATUSES}, got {status!r}")
    metrics = payload.get("metrics", {})
    if not isinstance(metrics, Mapping) or not all(isinstance(v, Mapping) for v in metrics.values()):
        raise ValueError(f"{where}: 'metrics' must map view name -> {{metric: value}}")


def write_results(run_dir: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` as the run's results.json atomically (sets ``schema`` and ``updated``)."""
    path = _path(run_dir)
    _validate(payload, path)
    data = dict(payload)
    data.setdefault("schema", SCHEMA_VERSION)
    data["updated"] = _now()
    return atomic_write_json(path, data)


def read_results(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a run's results.json; errors name the file."""
    path = _path(run_dir)
    if not path.is_file():
        raise FileNotFoundError(f"no {RESULTS_FILE} at {path}")
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def update_results(run_dir: str | os.PathLike[str], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``patch`` into the run's results.json (created when absent) and write it back atomically."""
    path = _path(run_dir)
    base = read_results(path) if path.is_file() else {}
    merged = deep_merge(base, patch)
    write_results(path, merged)
    return read_results(path)


def supersede_run(run_dir: str | os.PathLike[str]) -> Path | None:
    """Move everything of ``run_dir`` but its logs (``csv/``, ``wandb/``) into ``run_dir/superseded/<UTC time>/``,
    so that a forced re-run starts from nothing and the earlier run (results.json, checkpoints, cached stages)
    is kept; return where it went (None when there was nothing to move). The reporter ignores superseded runs."""
    root = Path(run_dir)
    entries = [p for p in sorted(root.iterdir()) if p.name not in (SUPERSEDED, *LOG_DIRS)] if root.is_dir() else []
    if not entries:
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    dest, n = root / SUPERSEDED / stamp, 1
    while dest.exists():
        n += 1
        dest = root / SUPERSEDED / f"{stamp}-{n}"
    dest.mkdir(parents=True)
    for p in entries:
        p.rename(dest / p.name)
    log.info("moved the earlier run of %s to %s", root, dest)
    return dest


def superseded_count(run_dir: str | os.PathLike[str]) -> int:
    """How many earlier runs ``run_dir`` keeps under ``superseded/``."""
    folder = Path(run_dir) / SUPERSEDED
    return sum(1 for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else 0


def iter_results(runs_root: str | os.PathLike[str], skipped: list[Path] | None = None) -> Iterator[dict[str, Any]]:
    """Yield every readable ``**/results.json`` under ``runs_root`` (sorted by path), with ``_path`` added.

    Unreadable or malformed files are skipped with a warning naming the file and appended to ``skipped``; runs
    moved aside by a forced re-run (``<run_dir>/superseded/``) are not yielded.
    """
    root = Path(runs_root)
    if not root.exists():
        return
    for path in sorted(root.rglob(RESULTS_FILE)):
        if SUPERSEDED in path.relative_to(root).parts[:-1]:
            continue
        try:
            data = read_results(path)
            _validate(data, path)
        except (OSError, ValueError, TypeError) as e:
            log.warning("skipping unreadable results file %s: %s", path, e)
            if skipped is not None:
                skipped.append(path)
            continue
        data["_path"] = str(path)
        yield data
