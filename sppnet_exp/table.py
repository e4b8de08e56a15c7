"""Compute one table's runs: ``python -m sppnet_exp.table table2 [--seeds 0,1,2] [overrides ...]``.

The entry script behind ``make table2`` … ``make table12``: it reads the table's ``sweep`` from
``experiments/<table>/expected.yaml`` (:mod:`sppnet_exp.reporting.sweeps`, the one place a table's cells are
listed), prints the multirun command and runs it; the remaining arguments are Hydra overrides added to every
job (``data=imagenet data.root=... scale=paper``). ``--print`` prints the command only. The report is the next
step (``python -m sppnet_exp.report table=table2``).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

from sppnet_exp.config import REPO_DIR
from sppnet_exp.reporting.sweeps import load_sweep


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run (or print) the table's multirun; its exit code."""
    parser = argparse.ArgumentParser(prog="python -m sppnet_exp.table", description=__doc__.split("\n\n")[0])
    parser.add_argument("table", help="table2, table3, table9, table10 or table12")
    parser.add_argument("--seeds", default=None, help="training seeds of a seeded table (e.g. 0,1,2)")
    parser.add_argument("--print", action="store_true", dest="dry", help="print the command, run nothing")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every job (key=value ...)")
    args, unknown = parser.parse_known_intermixed_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)} (Hydra overrides are key=value)")
    try:
        sweep = load_sweep(REPO_DIR / "experiments", args.table)
    except (FileNotFoundError, ValueError) as exc:
        parser.error(str(exc))
    extra = list(args.overrides)
    cmd = [sys.executable, *sweep.argv(args.seeds, extra)]
    print(shlex.join(["python", *cmd[1:]]), flush=True)
    if args.dry:
        return 0
    return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
