"""W&B side of the reporter: read a table's runs from a W&B group, log a rendered table as a report run.

Reading needs network access and a W&B login; it is not exercised by the test suite (the machines that run it
have no network), so keep it small and keep its field mapping identical to the local one in ``collect.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sppnet_exp.config import wandb_disabled
from sppnet_exp.reporting.collect import Record, record_from_results
from sppnet_exp.reporting.tables import CSV_COLUMNS

log = logging.getLogger(__name__)


def _name(value: Any) -> Any:
    """A config entry that may be a Hydra group dict (``{"name": ...}``) or a plain value."""
    if isinstance(value, Mapping):
        return value.get("name")
    return value


def _get(value: Any, key: str) -> Any:
    """``value[key]`` when ``value`` is a mapping, else None."""
    return value.get(key) if isinstance(value, Mapping) else None


def record_from_wandb(
    config: Mapping[str, Any], summary: Mapping[str, Any], updated: Any = None, source: str = ""
) -> Record | None:
    """A Record from one W&B run's config and summary (the pure part of :func:`load_wandb_records`)."""
    metrics: dict[str, dict[str, float]] = {}
    for key, value in summary.items():
        parts = str(key).split("/")
        if len(parts) == 3 and parts[0] == "test" and isinstance(value, int | float) and not isinstance(value, bool):
            metrics.setdefault(parts[1], {})[parts[2]] = float(value)
    d = {
        "cell": config.get("cell"),
        "model": _name(config.get("model")),
        "mode": _name(config.get("mode")),
        "levels": config.get("levels") or _get(config.get("mode"), "levels"),
        "data": _name(config.get("data")),
        "scale": _name(config.get("scale")),
        "seed": config.get("seed"),
        "fingerprint": config.get("fingerprint"),
        "metrics": metrics,
        "updated": updated,
        # the resolved Hydra config when the run logged it: its recipe (recipe_overrides, trainer, data, ...)
        "config": dict(config) if "recipe_overrides" in config or isinstance(config.get("trainer"), Mapping) else None,
    }
    return record_from_results(d, source=source)


def load_wandb_records(project: str, entity: str | None, group: str) -> list[Record]:
    """Finished runs of W&B group ``group`` as Records.

    Reads ``run.config`` keys cell/model/mode/levels/data/scale/seed (a Hydra group dict contributes its
    ``name``) and summary keys ``test/<view>/<metric>`` (e.g. ``test/10view/top1_err``, in percent).
    Only :func:`record_from_wandb` is covered by tests: the query needs network access and a W&B login.
    """
    import wandb

    path = f"{entity}/{project}" if entity else project
    records: list[Record] = []
    for run in wandb.Api().runs(path, filters={"group": group}):
        if run.state != "finished":
            continue
        updated = getattr(run, "heartbeat_at", None) or getattr(run, "created_at", None)
        rec = record_from_wandb(dict(run.config), dict(run.summary_metrics), updated, getattr(run, "url", run.id))
        if rec is not None:
            records.append(rec)
    return records


def log_table(
    rows: Sequence[Mapping[str, Any]],
    *,
    table: str,
    project: str,
    group: str,
    mode: str = "online",
    entity: str | None = None,
    markdown: str | None = None,
    config: Mapping[str, Any] | None = None,
    dir: str | None = None,
    images: Sequence[tuple[str, Path]] = (),
    verify_lines: Sequence[str] = (),
) -> str | None:
    """Log the report rows as a ``wandb.Table`` in a ``job_type="report"`` run, with the table's pictures as
    ``<table>/figures/<name>`` images (caption: the title) and the verify lines; return the run's URL (or None).
    ``mode="disabled"`` or ``WANDB_MODE=disabled`` logs nothing (no ``wandb.init``, no ``wandb`` folder)."""
    if mode == "disabled" or wandb_disabled():
        log.info(f"W&B is disabled by {'WANDB_MODE' if wandb_disabled() else 'mode'}=disabled: {table} not logged")
        return None
    import wandb

    run = wandb.init(
        project=project,
        entity=entity,
        group=group,
        job_type="report",
        name=f"{table}-report",
        mode=mode,
        config=dict(config or {}),
        dir=dir,
        reinit="finish_previous",
    )
    try:
        wt = wandb.Table(columns=list(CSV_COLUMNS), data=[[r.get(c) for c in CSV_COLUMNS] for r in rows])
        payload: dict[str, Any] = {f"{table}/results": wt}
        if markdown is not None:
            payload[f"{table}/markdown"] = wandb.Html(f"<pre>{_escape(markdown)}</pre>")
        if verify_lines:
            payload[f"{table}/verify"] = wandb.Html(f"<pre>{_escape(chr(10).join(verify_lines))}</pre>")
        for title, path in images:
            payload[f"{table}/figures/{Path(path).stem}"] = wandb.Image(str(path), caption=title)
        run.log(payload)
        return getattr(run, "url", None)
    finally:
        run.finish()


def _escape(text: str) -> str:
    """Minimal HTML escaping for the Markdown preview."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
