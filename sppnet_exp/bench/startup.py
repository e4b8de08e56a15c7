"""Start-up benchmark: how fast ``--help`` and a config error come back (target: median ≤ 3 s, issue 22).

Each case is one command line run ``runs`` times in a fresh Python process (``sys.executable -m ...``, the
current directory and environment, ``HYDRA_FULL_ERROR`` unset); its figure is the wall time from the start of
the process to its exit, reported as the median with its distribution-free interval
(:func:`~sppnet_exp.utils.paired.median_interval`; with 5 runs the interval is the range, coverage 94%). The
target is judged on that interval (:func:`~sppnet_exp.utils.paired.verdict`): met when every run is within it.
One more run per case under ``python -X importtime`` records which heavy modules (torch, Lightning, numpy, ...)
were imported before the exit: none should be, the config being composed and checked first. Each error case
also records its exit code, whether its message names the key at fault and whether it left anything under its
runs root (it must not).

Cases: ``sppnet-train --help``; ``sppnet-train data=imagenet`` without ``data.root`` (the mandatory value of
issue 22's case (b)); ``sppnet-detect experiment=table9/spp_1scale data=voc data.root=/nonexistent`` (case
(a): the wrong root of a detection run, checked before the pretrained net or any data is made). Nothing here
imports torch.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sppnet_exp.utils.paired import fmt, median_interval, verdict

__all__ = ["CASES", "HEAVY_MODULES", "STARTUP_TARGET_S", "bench_startup", "startup_lines", "startup_readme_line"]

STARTUP_TARGET_S = 3.0
HEAVY_MODULES = ("torch", "lightning", "pytorch_lightning", "torchvision", "numpy", "cv2", "PIL", "scipy", "wandb")

# name -> (argv after ``python``, expected exit code, text the output must contain)
CASES: dict[str, tuple[tuple[str, ...], int, str]] = {
    "train_help": (("-m", "sppnet_exp.train", "--help"), 0, "Powered by Hydra"),
    "train_missing_root": (("-m", "sppnet_exp.train", "data=imagenet"), 2, "data.root"),
    "detect_wrong_root": (
        ("-m", "sppnet_exp.detect", "experiment=table9/spp_1scale", "data=voc", "data.root=/nonexistent"),
        2,
        "data.root",
    ),
}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return {**env, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"}


def _once(argv: Sequence[str], timeout: float) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *argv], env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    return time.perf_counter() - t0, proc


def heavy_imports(importtime_stderr: str) -> list[str]:
    """The heavy top-level packages named in ``python -X importtime`` output (``import time: ... | name``)."""
    found = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name in HEAVY_MODULES:
                found.add(name)
    return sorted(found)


def _case(argv: Sequence[str], code: int, needle: str, runs: int, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sppnet-startup-") as tmp:
        runs_root = Path(tmp) / "runs"
        full = [*argv] if code == 0 else [*argv, f"paths.runs_root={runs_root}"]
        _once(full, timeout)  # warm-up: the page cache and .pyc files, not timed
        walls, codes, named = [], [], []
        for _ in range(runs):
            wall, proc = _once(full, timeout)
            walls.append(wall)
            codes.append(proc.returncode)
            named.append(needle in proc.stdout + proc.stderr)
        _, traced = _once(["-X", "importtime", *full], timeout)
        output = (traced.stdout + traced.stderr).splitlines()
        message = [line for line in output if not line.startswith("import time:")]
        left = sorted(str(p.relative_to(tmp)) for p in Path(tmp).rglob("*"))
    wall = median_interval(walls)
    v = verdict(wall["lo"], wall["hi"], STARTUP_TARGET_S, "<=")  # on the range: met only if every run is
    return {
        "argv": list(full),
        "wall_s": {**wall, "target": STARTUP_TARGET_S, "op": "<=", "verdict": v},
        "runs_s": [round(w, 4) for w in walls],
        "exit_codes": codes,
        "expected_exit_code": code,
        "names_key": all(named),
        "heavy_imports": heavy_imports(traced.stderr),
        "left_behind": left,
        "message_lines": len(message),
        "message_head": message[:3],
    }


def bench_startup(runs: int = 5, timeout: float = 120.0, cases: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Time each case of :data:`CASES` ``runs`` times (plus a warm-up and an ``-X importtime`` run)."""
    cases = CASES if cases is None else cases
    results = {name: _case(argv, code, needle, runs, timeout) for name, (argv, code, needle) in cases.items()}
    ok = all(
        r["exit_codes"] == [r["expected_exit_code"]] * runs and r["names_key"] and not r["heavy_imports"]
        for r in results.values()
    )
    return {
        "runs": runs,
        "python": sys.executable,
        "cases": results,
        "derived": {name: r["wall_s"] for name, r in results.items()},
        "checks_pass": ok and not any(r["left_behind"] for r in results.values()),
    }


def startup_lines(r: Mapping[str, Any]) -> list[str]:
    """The Markdown section of a :func:`bench_startup` result."""
    lines = [
        "## Start-up: `--help` and config errors (fresh process each, wall time to exit)",
        "",
        f"{r['runs']} timed runs per case after one warm-up; median [interval = range of the runs]. Heavy "
        "imports: the packages `python -X importtime` saw before the exit.",
        "",
        "| case | wall (s) | target | exit code | names the key | heavy imports | left behind |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in r["cases"].items():
        w = c["wall_s"]
        codes = sorted(set(c["exit_codes"]))
        shown = " ".join(a for a in c["argv"][1:] if not a.startswith("paths.runs_root="))
        lines.append(
            f"| `{shown}` ({name}) | {fmt(w)} | ≤ {w['target']:g}: {w['verdict']} | {'/'.join(map(str, codes))} "
            f"(expected {c['expected_exit_code']}) | {'yes' if c['names_key'] else '**no**'} | "
            f"{', '.join(c['heavy_imports']) or 'none'} | {len(c['left_behind']) or 'nothing'} |"
        )
    lines += ["", f"All checks (exit codes, messages, no heavy import, nothing left): {r['checks_pass']}.", ""]
    return lines


def startup_readme_line(r: Mapping[str, Any]) -> str:
    """The README bench block's line of a :func:`bench_startup` result."""
    c = r["cases"]
    figures = ", ".join(f"{name} {fmt(x['wall_s'])} s" for name, x in c.items())
    heavy = "none" if not any(x["heavy_imports"] for x in c.values()) else "**some**"
    head = "- Start-up (fresh process, wall time to exit, target ≤ 3 s)"
    return f"{head}: {figures}; heavy imports before the exit: {heavy}."
