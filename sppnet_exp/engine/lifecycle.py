"""The life of a run dir, the same for every task (classification and detection cells alike).

A cell's run dir is a function of its config (``<runs_root>/<cell>/<data>-<scale>-s<seed>-<fingerprint>``,
:mod:`sppnet_exp.utils.identity`). Opening it (:func:`open_run`) reads the earlier ``results.json``, if any, and
either hands it to the task (which skips what is finished and resumes the rest) or, with ``retrain=true``, moves
the earlier run to ``<run_dir>/superseded/`` on rank 0 and starts afresh. A run dir whose results.json records
other result settings than the ones asked for (one written before they counted) is never reused:
:class:`RunMismatchError` names the settings, in one line, with the way to force a new run. The tables a run
belongs to accumulate in its ``tables`` list (:func:`tables_with`, :func:`record_table`): one run can serve
several tables.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sppnet_exp.engine.results import read_results, supersede_run, update_results
from sppnet_exp.utils.dist import is_primary
from sppnet_exp.utils.identity import describe_differences, recipe_overrides_of, setting_differences

log = logging.getLogger(__name__)

__all__ = [
    "RunMismatchError",
    "check_recipe_overrides",
    "check_settings",
    "open_run",
    "record_table",
    "refuse",
    "tables_with",
]

# A check of an earlier run against the config asked for: raises RunMismatchError when it may not be reused.
ReuseCheck = Callable[[DictConfig, Mapping[str, Any] | None, Path], None]


class RunMismatchError(RuntimeError):
    """A run dir holds a run computed with other result settings than the ones asked for: it is not reused."""


def refuse(cfg: DictConfig, previous: Mapping[str, Any] | None, run_dir: Path, what: str) -> RunMismatchError:
    """The error for an earlier run at ``run_dir`` that differs by ``what`` (``other settings (...)``)."""
    status = (previous or {}).get("status", "earlier")
    return RunMismatchError(
        f"<{cfg.cell}>: {run_dir} holds a {status} run {what}, so it is not reused: add retrain=true to run it"
        " again (the earlier run moves to superseded/, its CSV log is kept)"
    )


def check_settings(cfg: DictConfig, previous: Mapping[str, Any] | None, run_dir: Path) -> None:
    """A classification run: refuse one whose recorded result settings (epochs, batch limits, precision, loader)
    differ from ``cfg``'s; a results.json without a config passes."""
    recorded = (previous or {}).get("config")
    if not isinstance(recorded, Mapping):
        return
    diffs = setting_differences(recorded, cfg)
    if diffs:
        raise refuse(
            cfg, previous, run_dir, f"made with other settings ({describe_differences(diffs)}; recorded → requested)"
        )


def check_recipe_overrides(cfg: DictConfig, previous: Mapping[str, Any] | None, run_dir: Path) -> None:
    """A detection run: refuse one whose recorded trainer settings that change a result (the conv5 precision;
    the rest of a detection cell's identity is hashed whole) differ from the ones asked for."""
    recorded_cfg = (previous or {}).get("config")
    if not isinstance(recorded_cfg, Mapping):
        return
    recorded = recipe_overrides_of({**recorded_cfg, "task_name": "detect"})
    value = cfg.get("recipe_overrides") or {}
    requested = dict(OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value)
    keys = sorted(set(recorded) | set(requested))
    diffs = {k: (recorded.get(k), requested.get(k)) for k in keys if recorded.get(k) != requested.get(k)}
    if diffs:
        raise refuse(
            cfg, previous, run_dir, f"made with other settings ({describe_differences(diffs)}; recorded → requested)"
        )


def open_run(cfg: DictConfig, checks: Sequence[ReuseCheck]) -> dict[str, Any] | None:
    """The earlier results.json of ``cfg.run_dir`` (None: none, or ``retrain=true``), after ``checks`` passed.

    With ``retrain=true`` rank 0 moves the earlier run aside before any other rank starts (DDP children re-run
    the job with retrain=true and find rank 0's fresh results.json: they ignore it likewise)."""
    run_dir = Path(cfg.run_dir)
    previous = read_results(run_dir) if (run_dir / "results.json").is_file() else None
    if cfg.retrain:
        if is_primary():
            log.info(f"retrain=true: running <{cfg.cell}> again from scratch in {run_dir}")
            supersede_run(run_dir)
        return None
    for check in checks:
        check(cfg, previous, run_dir)
    return previous


def tables_with(previous: Mapping[str, Any] | None, table: str | None) -> list[str]:
    """The tables of the earlier run plus ``table`` (a run computed once serves every table that asks for it)."""
    tables = list((previous or {}).get("tables", []))
    if table and table not in tables:
        tables.append(str(table))
    return tables


def record_table(run_dir: Path, previous: dict[str, Any], table: str | None) -> dict[str, Any]:
    """Add ``table`` to a finished run's ``tables`` (a skip on behalf of another table); the results."""
    if table and table not in previous.get("tables", []):
        return update_results(run_dir, {"tables": tables_with(previous, table)})
    return previous
