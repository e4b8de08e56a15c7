"""The ``experiment=`` names of a command line, checked against the ``conf/experiment`` tree before Hydra runs.

Hydra reports an unknown experiment with every option of the group (detection and classification mixed) and a
detection experiment given to ``train`` as "Could not override 'detector'". Here an experiment belongs to the
commands whose primary config (``train.yaml``, ``eval.yaml``, ``detect.yaml``) has every config group the
experiment overrides (its ``defaults``, followed through the experiments it includes): Tables 2 and 3 override
``model`` / ``mode`` (train, eval), Tables 9, 10 and 12 ``detector`` / ``pretrained`` (detect). Only YAML is read.
"""

from __future__ import annotations

import difflib
import textwrap
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from sppnet_exp.config import config_dir
from sppnet_exp.engine.preflight import COMMANDS, Problem, example_command

__all__ = ["argv_problems", "commands_for", "experiment_names", "experiment_problem"]

_SWEEP_SYNTAX = set("()[]{}*$'\"")


def _conf() -> Path:
    return Path(config_dir())


def experiment_names() -> list[str]:
    """Every experiment: ``conf/experiment/<table>/<cell>.yaml`` as ``<table>/<cell>``, sorted."""
    root = _conf() / "experiment"
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


@cache
def _defaults(path: Path) -> tuple[Any, ...]:
    data = yaml.safe_load(path.read_text()) or {}
    return tuple(data.get("defaults") or ()) if isinstance(data, dict) else ()


@cache
def _primary_groups(config_name: str) -> frozenset[str]:
    """The config groups of a primary config's defaults list (following the configs it extends)."""
    groups: set[str] = set()
    for entry in _defaults(_conf() / f"{config_name}.yaml"):
        if isinstance(entry, str) and entry != "_self_" and (_conf() / f"{entry}.yaml").is_file():
            groups |= _primary_groups(entry)
        elif isinstance(entry, dict):
            for key in entry:
                groups.add(str(key).removeprefix("optional ").removeprefix("override ").strip("/"))
    return frozenset(groups)


@cache
def _experiment_groups(name: str) -> frozenset[str]:
    """The groups an experiment overrides, with those of the experiments it includes (``/experiment/...``)."""
    groups: set[str] = set()
    for entry in _defaults(_conf() / "experiment" / f"{name}.yaml"):
        if isinstance(entry, str) and entry.startswith("/experiment/"):
            groups |= _experiment_groups(entry.removeprefix("/experiment/"))
        elif isinstance(entry, dict):
            for key in entry:
                groups.add(str(key).removeprefix("override ").strip("/").split("@")[0].split("/")[0])  # group@package
    return frozenset(groups)


@cache
def _primary_keys(config_name: str) -> frozenset[str]:
    """The top-level keys and groups of a primary config (following the configs it extends)."""
    data = yaml.safe_load((_conf() / f"{config_name}.yaml").read_text()) or {}
    keys = {str(k) for k in data if k != "defaults"} | set(_primary_groups(config_name))
    for entry in _defaults(_conf() / f"{config_name}.yaml"):
        if isinstance(entry, str) and entry != "_self_" and (_conf() / f"{entry}.yaml").is_file():
            keys |= _primary_keys(entry)
    return frozenset(keys)


@cache
def _experiment_keys(name: str) -> frozenset[str]:
    """The top-level keys an experiment sets (a ``# @package _global_`` file), with those of the ones it includes."""
    data = yaml.safe_load((_conf() / "experiment" / f"{name}.yaml").read_text()) or {}
    keys = {str(k) for k in data if k != "defaults"}
    for entry in _defaults(_conf() / "experiment" / f"{name}.yaml"):
        if isinstance(entry, str) and entry.startswith("/experiment/"):
            keys |= _experiment_keys(entry.removeprefix("/experiment/"))
    return frozenset(keys)


def commands_for(name: str) -> list[str]:
    """The commands (``train``, ``eval``, ``detect``, ``transfer``) whose config takes experiment ``name``: the
    groups it overrides and the keys it sets are the command's own."""
    groups, keys = _experiment_groups(name), _experiment_keys(name)
    return [c for c in COMMANDS if groups <= _primary_groups(c) and keys <= _primary_keys(c)]


def _listing(command: str) -> str:
    by_table: dict[str, list[str]] = {}
    for name in experiment_names():
        if command in commands_for(name):
            table, _, cell = name.partition("/")
            by_table.setdefault(table, []).append(cell)
    lines = []
    for table, cells in sorted(by_table.items(), key=lambda kv: (len(kv[0]), kv[0])):
        lines += textwrap.wrap(f"{table}/: {' '.join(cells)}", 116, initial_indent="    ", subsequent_indent="      ")
    return "\n".join(lines)


def _run_with(command: str) -> str:
    prog, module = COMMANDS[command]
    return f"{prog} (python -m {module})"


def experiment_problem(command: str, name: str, argv: Sequence[str] = ()) -> Problem | None:
    """None when ``command`` takes experiment ``name``; else what is wrong: no such experiment (the problem lists
    the command's experiments) or another command's (the problem names that command)."""
    names = experiment_names()
    if name not in names:
        own = [n for n in names if command in commands_for(n)]
        close = difflib.get_close_matches(name, own, n=1, cutoff=0.0)
        return Problem(
            f"experiment={name}",
            f"no such experiment (no conf/experiment/{name}.yaml)",
            f"one of the experiments of {COMMANDS[command][0]}:\n{_listing(command)}",
            fix=f"experiment={close[0]}" if close else None,
        )
    fits = commands_for(name)
    if command in fits or not fits:
        return None
    kind = "a detection" if "detect" in fits else "a classification"
    use = " or ".join(_run_with(c) for c in fits)
    example = example_command(fits[0], argv, [f"experiment={name}"])
    return Problem("experiment", f"{name} is {kind} experiment: use {use}", "", example=example)


def _experiment_values(argv: Sequence[str]) -> list[str]:
    """The experiment names of ``experiment=a`` / ``+experiment=a,b`` arguments (sweep syntax beyond a comma list
    — ``glob(...)``, ``choice(...)``, interpolations — is left to Hydra)."""
    names: list[str] = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if not eq or key.lstrip("+~") != "experiment" or key.startswith("~") or _SWEEP_SYNTAX & set(value):
            continue
        names += [v.strip() for v in value.split(",") if v.strip() and v.strip() != "null"]
    return names


def argv_problems(command: str, argv: Sequence[str]) -> list[Problem]:
    """The problems of the ``experiment=`` arguments of a ``command`` line (none when there is none)."""
    found = (experiment_problem(command, name, argv) for name in dict.fromkeys(_experiment_values(argv)))
    return [p for p in found if p is not None]
