"""Gather finished runs (local run dirs or a W&B group), pick one (data, scale) and one recipe, aggregate over seeds.

A run's recipe is everything that identifies it but its seed (:func:`sppnet_exp.utils.identity.recipe_key`). The
table's own recipe is the one its experiment configs give with the default trainer and loader settings: a run
whose recorded ``recipe_overrides`` are empty. :func:`select` never averages runs of two recipes: by default it
keeps the table's own recipe when any run has it, else the most recent other one, and says which and why.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sppnet_exp.config import fingerprint
from sppnet_exp.engine.results import iter_results
from sppnet_exp.utils.identity import (
    describe_differences,
    describe_overrides,
    identity_settings,
    recipe_overrides_of,
)

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
    overrides: dict[str, Any] = field(default_factory=dict)  # non-default trainer / loader settings ({}: own recipe)
    recipe: str | None = None  # seed-free identity hash (None: no config recorded)
    settings: dict[str, Any] = field(default_factory=dict, repr=False)  # what the recipe hash is of (flat)

    @property
    def own_recipe(self) -> bool:
        """Whether the run used the table's own recipe (default trainer and loader settings)."""
        return not self.overrides


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
    own_recipe: bool = True  # the records use the table's own recipe (False: the overrides below)
    overrides: dict[str, Any] = field(default_factory=dict)
    left_out: list[Record] = field(default_factory=list)  # runs of other recipes, not averaged in


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
    config = d.get("config") if isinstance(d.get("config"), Mapping) else None
    settings = identity_settings(config, with_seed=False) if config else {}
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
        overrides=recipe_overrides_of(config),
        recipe=fingerprint(settings) if config else None,
        settings=settings,
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


RECIPES = ("auto", "own", "latest")


def select(
    records: Iterable[Record],
    cells: Iterable[str],
    data: str | None = None,
    scale: str | None = None,
    recipe: str = "auto",
) -> Collection:
    """Keep the records of the table's ``cells`` at (data, scale), one recipe, latest run per (cell, seed).

    With ``data`` or ``scale`` None, the most recently updated combination present fills the gap (a note says so).
    ``recipe``: ``own`` keeps the table's own recipe only (default trainer and loader settings), ``latest`` the
    recipe of the most recently updated run, ``auto`` the own recipe when any run has it, else ``latest``. Runs of
    the other recipes are left out (a note lists them); within a cell, runs of one recipe only are kept.
    """
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
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
    kept, overrides, recipe_notes = _one_recipe(chosen, recipe)
    notes += recipe_notes
    kept = _one_recipe_per_cell(kept, notes)
    latest_by_key: dict[tuple[str, int | None], Record] = {}
    superseded = 0
    for r in sorted(kept, key=lambda r: r.updated):
        key = (r.cell, r.seed)
        if key in latest_by_key:
            superseded += 1
        latest_by_key[key] = r
    if superseded:
        notes.append(f"{superseded} older run(s) of the same cell and seed superseded by the latest one")
    final = list(latest_by_key.values())
    for n in dict.fromkeys(n for r in final for n in r.notes):  # each distinct run note once, in run order
        notes.append(n)
    used = {id(r) for r in kept}
    left_out = [r for r in chosen if id(r) not in used]
    return Collection(
        records=final,
        data=data,
        scale=scale,
        notes=notes,
        own_recipe=not overrides,
        overrides=overrides,
        left_out=left_out,
    )


def _key(overrides: Mapping[str, Any]) -> str:
    return describe_overrides(overrides)


def _one_recipe(chosen: list[Record], recipe: str) -> tuple[list[Record], dict[str, Any], list[str]]:
    """The records of one set of trainer / loader overrides (see :func:`select`), those overrides and the notes."""
    if not chosen:
        return [], {}, []
    own = [r for r in chosen if r.own_recipe]
    if recipe == "own" or (recipe == "auto" and own):
        overrides: dict[str, Any] = {}
        why = "the table's own recipe (default trainer and loader settings)"
    else:
        overrides = dict(max(chosen, key=lambda r: r.updated).overrides)
        why = (
            "no run has the table's own recipe (default trainer and loader settings): using the most recent run's"
            if recipe == "auto" and not own
            else "recipe=latest: using the most recent run's"
        ) + f" ({_key(overrides)})"
    kept = [r for r in chosen if r.overrides == overrides]
    notes = [] if not overrides and len(kept) == len(chosen) else [f"recipe: {why}"]
    others: dict[str, list[Record]] = {}
    for r in chosen:
        if r.overrides != overrides:
            others.setdefault(_key(r.overrides), []).append(r)
    for text, runs in others.items():
        cells = ", ".join(sorted({f"{r.cell} s{r.seed}" for r in runs}))
        notes.append(f"left out (not averaged): {len(runs)} run(s) with {text}: {cells}")
    return kept, overrides, notes


def _one_recipe_per_cell(records: list[Record], notes: list[str]) -> list[Record]:
    """Per cell, the runs of the recipe whose latest run is the most recent (runs of a cell made with, e.g.,
    another learning rate are not averaged with it; a note says what differs)."""
    by_cell: dict[str, dict[str | None, list[Record]]] = {}
    for r in records:
        by_cell.setdefault(r.cell, {}).setdefault(r.recipe, []).append(r)
    out: list[Record] = []
    for cell, recipes in by_cell.items():
        if len(recipes) == 1 or all(k is None for k in recipes):
            out += [r for runs in recipes.values() for r in runs]
            continue
        ranked = sorted(recipes.values(), key=lambda runs: max(r.updated for r in runs), reverse=True)
        keep, rest = ranked[0], [r for runs in ranked[1:] for r in runs]
        out += keep
        diffs = _settings_diff(rest[0].settings, keep[0].settings)
        notes.append(
            f"{cell}: runs of {len(recipes)} recipes, not averaged: using the most recent one ({len(keep)} run(s));"
            f" left out {len(rest)} run(s) of another ({describe_differences(diffs) or 'no config recorded'};"
            " left out → used)"
        )
    return out


def _settings_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


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
