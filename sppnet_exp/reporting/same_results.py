"""Are two runs roots' results the same? (``python -m sppnet_exp.reporting.same_results ROOT_A ROOT_B``)

The check behind a refactor that must not change a number (issue 23) and behind a run on other hardware: every
finished ``results.json`` under ``ROOT_A`` is paired with the one of the same cell, data, scale and seed under
``ROOT_B`` (the run dir's name without its fingerprint, so a change of identity alone is reported, not
mistaken for a missing run), and their ``metrics`` are compared value by value — exactly by default, or within
``--tol``. Timing metrics (``*time*``, ``*speedup*``, ``*seconds*``, ``*_s``) vary from run to run and are left
out unless ``--timing``. ``--common`` compares only the metrics both runs have and lists the others (a test view
one run added later, e.g. Table 3's views of a Table 2 checkpoint).

Exit 0 when every pair is equal and no run is missing on either side, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["compare_roots", "finished_runs", "main"]

_FINGERPRINT = re.compile(r"-[0-9a-f]{8}$")
_TIMING = re.compile(r"time|speedup|seconds|per_s|_s$")


def finished_runs(root: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """``<cell>/<data>-<scale>-s<seed>`` → (run dir, results.json) of every finished run under ``root``."""
    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path in sorted(root.glob("*/*/results.json")):
        results = json.loads(path.read_text())
        if results.get("status") != "finished":
            continue
        run_dir = path.parent
        key = f"{run_dir.parent.name}/{_FINGERPRINT.sub('', run_dir.name)}"
        out[key] = (run_dir, results)
    return out


def _leaves(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(tree, Mapping):
        for k in sorted(tree):
            yield from _leaves(tree[k], f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, tree


def _differs(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return False
        return abs(float(a) - float(b)) > tol
    return a != b


def compare_roots(
    a: Path, b: Path, tol: float = 0.0, timing: bool = False, common: bool = False
) -> tuple[list[str], bool]:
    """The lines of the comparison of runs roots ``a`` and ``b``, and whether they hold the same results."""
    runs_a, runs_b = finished_runs(a), finished_runs(b)
    lines: list[str] = []
    same = True
    for key in sorted(set(runs_a) | set(runs_b)):
        if key not in runs_b or key not in runs_a:
            where = b if key not in runs_b else a
            lines.append(f"{key}: no finished run under {where}")
            same = False
            continue
        (dir_a, res_a), (dir_b, res_b) = runs_a[key], runs_b[key]
        leaves_a = dict(_leaves(res_a.get("metrics", {})))
        leaves_b = dict(_leaves(res_b.get("metrics", {})))
        keys = set(leaves_a) & set(leaves_b) if common else set(leaves_a) | set(leaves_b)
        keep = [k for k in sorted(keys) if timing or not _TIMING.search(k)]
        one_sided = sorted((set(leaves_a) ^ set(leaves_b)) - keys)
        diffs = [
            f"{k}: {leaves_a.get(k, '—')} vs {leaves_b.get(k, '—')}"
            for k in keep
            if k not in leaves_a or k not in leaves_b or _differs(leaves_a[k], leaves_b[k], tol)
        ]
        ident = "" if dir_a.name == dir_b.name else f" (identity {dir_a.name} -> {dir_b.name})"
        only = f" (on one side only, not compared: {', '.join(one_sided)})" if one_sided else ""
        if diffs:
            same = False
            lines.append(f"{key}{ident}: {len(diffs)} of {len(keep)} metrics differ: " + "; ".join(diffs[:8]) + only)
        else:
            lines.append(f"{key}{ident}: {len(keep)} metrics equal{only}")
    lines.append(f"{len(runs_a)} vs {len(runs_b)} finished runs: " + ("the same results" if same else "DIFFERENT"))
    return lines, same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root_a", type=Path)
    parser.add_argument("root_b", type=Path)
    parser.add_argument("--tol", type=float, default=0.0, help="absolute tolerance per metric (default: exact)")
    parser.add_argument("--timing", action="store_true", help="compare the timing metrics too")
    parser.add_argument("--common", action="store_true", help="compare only the metrics both runs have")
    args = parser.parse_args(argv)
    for root in (args.root_a, args.root_b):
        if not root.is_dir():
            parser.error(f"{root}: not a folder (a runs root, e.g. outputs/runs)")
    lines, same = compare_roots(args.root_a, args.root_b, args.tol, args.timing, args.common)
    print("\n".join(lines))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
