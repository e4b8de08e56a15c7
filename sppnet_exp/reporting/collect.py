"""Gather finished runs (local run dirs or a W&B group), pick one (data, scale) and aggregate over seeds."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sppnet_exp.reporting.results import iter_results

log = logging.getLogger(__name__)


@dataclass
class Record:
    """One finished run, reduced to what the tables need (errors in percent)."""

    cell: str
    model: str | None
    mode: str | None
    levels: list[int] | None
    data: str | None
    scale: str | None
    seed: int | None
    metrics: dict[str, dict[str, float]]
    updated: datetime
    source: str = ""
    fingerprint: str | None = None
    notes: list[str] = field(default_factory=list)  # a run's own provenance notes (``report_notes``), shown once


@dataclass
class Agg:
    """Mean, sample std (None for n=1) and count of one metric over seeds; ``values[i]`` is seed ``seeds[i]``'s
    (kept so that two cells run with the same seeds can be compared seed by seed: :mod:`.relations`)."""

    mean: float
    std: float | None
    n: int
    seeds: list[int | None] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @property
    def se(self) -> float | None:
        """Standard error of the mean, std / sqrt(n); None for a single seed."""
        return None if self.std is None else self.std / math.sqrt(self.n)


@dataclass
class Collection:
    """Records of the chosen (data, scale) plus what the reporter should say about how they were chosen."""

    records: list[Record]
    data: str | None
    scale: str | None
    notes: list[str] = field(default_factory=list)
    skipped_files: list[Path] = field(default_factory=list)


def _parse_time(value: Any) -> datetime:
    """ISO time from results.json (naive ones taken as UTC); the epoch when missing or malformed."""
    if isinstance(value, str):
        try:
            t = datetime.fromisoformat(value)
            return t if t.tzinfo else t.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.fromtimestamp(0, tz=UTC)


def _float_metrics(metrics: Any) -> dict[str, dict[str, float]]:
    """Keep numeric, finite metric values only: ``{view: {metric: value}}``."""
    out: dict[str, dict[str, float]] = {}
    if not isinstance(metrics, Mapping):
        return out
    for view, vals in metrics.items():
        if not isinstance(vals, Mapping):
            continue
        clean = {
            k: float(v)
            for k, v in vals.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
        }
        if clean:
            out[str(view)] = clean
    return out


def record_from_results(d: Mapping[str, Any], source: str = "") -> Record | None:
    """A Record from a results.json dict; None when it names no cell."""
    model, mode = d.get("model"), d.get("mode")
    cell = d.get("cell") or (f"{model}_{mode}" if model and mode else None)
    if not cell:
        return None
    seed = d.get("seed")
    return Record(
        cell=str(cell),
        model=model,
        mode=mode,
        levels=list(d["levels"]) if isinstance(d.get("levels"), list) else None,
        data=d.get("data"),
        scale=d.get("scale"),
        seed=int(seed) if isinstance(seed, int | float) else None,
        metrics=_float_metrics(d.get("metrics")),
        updated=_parse_time(d.get("updated")),
        source=source or str(d.get("_path", "")),
        fingerprint=d.get("fingerprint"),
        notes=[str(n) for n in d.get("report_notes") or []],
    )


def load_local(runs_root: str | os.PathLike[str], skipped: list[Path] | None = None) -> list[Record]:
    """Finished runs under ``runs_root``; unreadable files go to ``skipped``, unfinished ones are ignored."""
    records, unfinished = [], 0
    for d in iter_results(runs_root, skipped):
        if d.get("status") != "finished":
            unfinished += 1
            continue
        rec = record_from_results(d)
        if rec is None:
            log.warning("skipping %s: it names no cell (nor model + mode)", d.get("_path"))
            continue
        records.append(rec)
    if unfinished:
        log.info("ignored %d unfinished run(s) under %s", unfinished, runs_root)
    return records


def select(
    records: Iterable[Record], cells: Iterable[str], data: str | None = None, scale: str | None = None
) -> Collection:
    """Keep the records of the table's ``cells`` at (data, scale), latest run per (cell, seed).

    With ``data`` or ``scale`` None, the most recently updated combination present fills the gap (a note
    says so).
    """
    wanted = set(cells)
    mine = [r for r in records if r.cell in wanted]
    notes: list[str] = []
    if data is None or scale is None:
        cands = [r for r in mine if (data is None or r.data == data) and (scale is None or r.scale == scale)]
        if cands:
            latest = max(cands, key=lambda r: r.updated)
            combos = sorted({(r.data, r.scale) for r in cands}, key=str)
            data, scale = latest.data, latest.scale
            msg = f"data/scale not given: using the most recently updated results, data={data} scale={scale}"
            if len(combos) > 1:
                others = ", ".join(f"{d}/{s}" for d, s in combos if (d, s) != (data, scale))
                msg += f" (also present: {others}; pass data=... scale=... to choose)"
            notes.append(msg)
    chosen = [r for r in mine if r.data == data and r.scale == scale]
    latest_by_key: dict[tuple[str, int | None], Record] = {}
    superseded = 0
    for r in sorted(chosen, key=lambda r: r.updated):
        key = (r.cell, r.seed)
        if key in latest_by_key:
            superseded += 1
        latest_by_key[key] = r
    if superseded:
        notes.append(f"{superseded} older run(s) of the same cell and seed superseded by the latest one")
    kept = list(latest_by_key.values())
    for n in dict.fromkeys(n for r in kept for n in r.notes):  # each distinct run note once, in run order
        notes.append(n)
    return Collection(records=kept, data=data, scale=scale, notes=notes)


def aggregate(records: Iterable[Record]) -> dict[tuple[str, str, str], Agg]:
    """Mean/std/n over seeds for every (cell, view, metric) present."""
    values: dict[tuple[str, str, str], list[tuple[float, int | None]]] = {}
    for r in records:
        for view, metrics in r.metrics.items():
            for metric, v in metrics.items():
                values.setdefault((r.cell, view, metric), []).append((v, r.seed))
    out: dict[tuple[str, str, str], Agg] = {}
    for key, vs in values.items():
        vs = sorted(vs, key=lambda p: (p[1] is None, p[1] if p[1] is not None else 0))
        xs = [v for v, _ in vs]
        n = len(xs)
        mean = sum(xs) / n
        std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
        out[key] = Agg(mean=mean, std=std, n=n, seeds=[s for _, s in vs], values=xs)
    return out
