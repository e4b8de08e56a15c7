"""Turn finished runs into a table in the paper's layout: ``python -m sppnet_exp.report table=table2``.

Prints the table beside the paper's numbers, writes ``experiments/<table>/results.{md,csv}`` and the table's
pictures (PNG), logs them to W&B (a Table and images), and with ``verify=true`` exits 1 when a check of
``expected.yaml`` fails: a value outside its tolerance, or one of the paper's relations on the mean over seeds
(a relation marked not reproduced is printed as such and does not fail).

``experiments/<table>/`` is only written from runs of the table's own recipe (default trainer and loader
settings); a report of runs made with other settings (``trainer.max_epochs=1``, batch limits, ...) goes to
``<runs_root>/report/<table>/`` (``other_dir``) and its header says so.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from sppnet_exp.config import REPO_DIR, config_dir, wandb_disabled, wandb_offline
from sppnet_exp.reporting import build_report

log = logging.getLogger(__name__)


def report(cfg: DictConfig) -> bool:
    """Build, print, write and log the report of ``cfg.table``; return whether verification passed."""
    experiments_dir = Path(cfg.paths.experiments_dir)
    if not (experiments_dir / cfg.table / "expected.yaml").is_file():  # run from outside the repo: its own specs
        experiments_dir = REPO_DIR / "experiments"
    rep = build_report(
        table=cfg.table,
        runs_root=Path(cfg.paths.runs_root),
        experiments_dir=experiments_dir,
        data=cfg.runs.data,
        scale=cfg.runs.scale,
        source=cfg.source,
        wandb_project=cfg.wandb.project,
        wandb_entity=cfg.wandb.entity,
        verify=True,  # always shown in results.md; `verify=true` makes a failure the exit code
        recipe=str(cfg.recipe),
        other_dir=Path(cfg.other_dir),
    )
    print(rep.console)
    if rep.n_runs == 0:
        print(f"no finished runs for {cfg.table} under {cfg.paths.runs_root}: nothing written")
        return not cfg.verify
    if cfg.write:
        out = Path(cfg.out_dir if rep.own_recipe else cfg.other_dir) / cfg.table
        rep.to_files(out)
        print(f"written: {out / 'results.md'} and results.csv")
        if not rep.own_recipe:
            print(f"not the table's own recipe ({', '.join(rep.overrides)} differ): {cfg.out_dir} left as it was")
    if cfg.wandb.log and wandb_disabled():
        print("W&B is disabled by WANDB_MODE=disabled: the report is not logged to W&B")
    elif cfg.wandb.log:
        mode = "offline" if wandb_offline() else "online"
        rep.log_to_wandb(
            project=cfg.wandb.project,
            group=cfg.table,
            mode=mode,
            entity=cfg.wandb.entity,
            dir=str(_mkdir(Path(cfg.paths.output_dir) / "reports")),
        )
    if cfg.verify:
        if rep.verify_ok is None:
            print(f"no expectations in experiments/{cfg.table}/expected.yaml for data={rep.data} scale={rep.scale}")
            return True
        print("\n".join(rep.verify_lines))
        return bool(rep.verify_ok)
    return True


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="report")
def hydra_main(cfg: DictConfig) -> None:
    """The Hydra app."""
    if not report(cfg):
        sys.exit(1)


# Which runs to show is `runs.data` / `runs.scale`; `conf/` has config groups named `data` and `scale`, so Hydra
# would read `data=imagenet` as a group choice and refuse it ("No match in the defaults list").
PLAIN_KEYS = ("data", "scale")


def plain_key_overrides(argv: list[str]) -> list[str]:
    """``data=X`` / ``scale=X`` as ``runs.data=X`` / ``runs.scale=X``; other arguments as given."""
    return [f"runs.{a}" if "=" in a and a.split("=", 1)[0] in PLAIN_KEYS else a for a in argv]


def main() -> None:
    """Console entry point (``sppnet-report``): ``data=`` / ``scale=`` read as ``runs.data=`` / ``runs.scale=``."""
    sys.argv[1:] = plain_key_overrides(sys.argv[1:])
    hydra_main()


if __name__ == "__main__":
    main()
