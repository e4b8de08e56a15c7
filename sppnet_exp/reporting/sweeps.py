"""Which runs make a table: the ``sweep`` section of ``experiments/<table>/expected.yaml``.

A table is defined in one file: its rows and columns, the paper's numbers and relations (:mod:`.tables`), and
here the Hydra multirun that computes its cells, from which ``make <table>`` (``python -m sppnet_exp.table``)
runs. The schema::

    sweep:
      command: train            # the entry script: train, eval, detect or transfer
      seeds: true               # one job per cell and training seed (SEEDS of the Makefile, --seeds); or the
                                # table's own list, e.g. [0, 1, ..., 9]: Caltech101's random splits
      grid:                     # a product of config-group options, in this order (the last varies fastest) ...
        model: [zf5, convnet5, overfeat5, overfeat7]
        mode: [nospp, spp_single, spp_multi]
      experiments: [table9/spp_1scale, ...]   # ... or a list of experiment files, run in this order

A grid sweep adds ``table=<table>`` (what an experiment file sets). Cells that compute the same thing have one
run dir (the identity leaves ``table`` out), so a cell asked for by several tables is computed once and its
``results.json`` lists every table that reused it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["COMMANDS", "Sweep", "load_sweep"]

COMMANDS = ("train", "eval", "detect", "transfer")


@dataclass(frozen=True)
class Sweep:
    """The multirun of one table."""

    table: str
    command: str
    seeds: bool | tuple[int, ...] = False  # a tuple: the table's own seeds, whatever --seeds says
    grid: Mapping[str, Sequence[str]] = field(default_factory=dict)
    experiments: Sequence[str] = ()

    def overrides(self, seeds: str | None = None) -> list[str]:
        """The multirun's Hydra overrides (``model=a,b mode=c,d table=table2 seed=0,1``)."""
        if self.grid:
            out = [f"{key}={','.join(values)}" for key, values in self.grid.items()] + [f"table={self.table}"]
        else:
            out = [f"experiment={','.join(self.experiments)}"]
        if isinstance(self.seeds, tuple):
            return [*out, "seed=" + ",".join(str(s) for s in self.seeds)]
        return out + ([f"seed={seeds}"] if self.seeds and seeds else [])

    def argv(self, seeds: str | None = None, extra: Sequence[str] = ()) -> list[str]:
        """``-m sppnet_exp.<command> -m <overrides> <extra>`` (after the interpreter)."""
        return ["-m", f"sppnet_exp.{self.command}", "-m", *self.overrides(seeds), *extra]


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}: expected a non-empty list of names, got {value!r}")
    return list(value)


def load_sweep(experiments_dir: str | Path, table: str) -> Sweep:
    """The ``sweep`` of ``<experiments_dir>/<table>/expected.yaml``; a clear error naming the file otherwise."""
    path = Path(experiments_dir) / table / "expected.yaml"
    if not path.is_file():
        known = sorted(p.parent.name for p in Path(experiments_dir).glob("*/expected.yaml"))
        raise FileNotFoundError(f"{path}: no such table definition (tables: {', '.join(known)})")
    spec = yaml.safe_load(path.read_text()) or {}
    sweep = spec.get("sweep")
    if not isinstance(sweep, Mapping):
        raise ValueError(f"{path}: no 'sweep' section (which runs make the table)")
    command = sweep.get("command")
    if command not in COMMANDS:
        raise ValueError(f"{path}: sweep.command must be one of {COMMANDS}, got {command!r}")
    grid, experiments = sweep.get("grid"), sweep.get("experiments")
    if (grid is None) == (experiments is None):
        raise ValueError(f"{path}: the sweep needs exactly one of 'grid' and 'experiments'")
    if grid is not None:
        if not isinstance(grid, Mapping) or not grid:
            raise ValueError(f"{path}: sweep.grid must map config groups to lists of options")
        grid = {str(k): _strings(v, f"{path}: sweep.grid.{k}") for k, v in grid.items()}
    seeds = sweep.get("seeds", False)
    if isinstance(seeds, list):
        if not seeds or not all(isinstance(v, int) and not isinstance(v, bool) for v in seeds):
            raise ValueError(f"{path}: sweep.seeds must be true, false or a list of integers, got {seeds!r}")
        seeds = tuple(seeds)
    elif not isinstance(seeds, bool):
        raise ValueError(f"{path}: sweep.seeds must be true, false or a list of integers, got {seeds!r}")
    return Sweep(
        table=table,
        command=str(command),
        seeds=seeds,
        grid=grid or {},
        experiments=_strings(experiments, f"{path}: sweep.experiments") if experiments is not None else (),
    )
