"""`make smoke`: its commands (a dry run) stay in their own root with W&B off; the slow test runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAMP = ".venv/.installed"  # `-o`: never (re)install the venv from a test

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def _make(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    return subprocess.run(
        ["make", "--no-print-directory", "-o", STAMP, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_smoke_dry_run_covers_every_table_in_its_own_root() -> None:
    out = _make("-n", "smoke", "SMOKE_DIR=outputs/smoke-dry")
    assert out.returncode == 0, out.stderr
    joined = out.stdout.replace("\\\n", " ")  # a recipe's continued lines as one command
    lines = [ln for ln in joined.splitlines() if "sppnet_exp." in ln]
    commands = ("train", "eval", "detect", "transfer", "report")
    entry = {m: [ln for ln in lines if f"-m sppnet_exp.{m} " in ln] for m in commands}
    counts = {m: len(v) for m, v in entry.items()}
    assert counts == {"train": 1, "eval": 2, "detect": 1, "transfer": 3, "report": 1}, lines
    assert "table2/" in entry["train"][0] and "table3/" in entry["eval"][0] and "table4/" in entry["eval"][1]
    for table in ("table9/", "table10/", "table12/combination"):
        assert table in entry["detect"][0]
    assert "table7/" in entry["transfer"][0] and "table6/c_spp_full" in entry["transfer"][1]
    assert "table6/d_spp_full_best" in entry["transfer"][2]
    assert "table=table2,table3,table4,table6,table7,table9,table10,table12" in entry["report"][0]
    for ln in lines:
        assert "WANDB_MODE=disabled" in ln
        assert "paths.output_dir=outputs/smoke-dry " in ln and "paths.data_dir=outputs/smoke-dry/data" in ln
        assert "experiments" not in ln  # the specs are read from experiments/, nothing is written there
    assert "out_dir=outputs/smoke-dry/reports" in entry["report"][0]


@pytest.mark.parametrize("bad", ["", "experiments", "outputs/../experiments", "/tmp/x"])
def test_smoke_refuses_a_root_outside_outputs(bad: str) -> None:
    out = _make("smoke", f"SMOKE_DIR={bad}")
    assert out.returncode != 0 and "SMOKE_DIR must" in out.stdout + out.stderr


@pytest.mark.slow
def test_make_smoke_runs_every_table() -> None:
    root = "outputs/smoke-pytest"
    try:
        out = _make("smoke", f"SMOKE_DIR={root}", timeout=900)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        for table in ("table2", "table3", "table4", "table6", "table7", "table9", "table10", "table12"):
            # a table whose smoke runs are not its own recipe (the tiny classification scale) is reported beside the
            # runs (<runs_root>/report), the others in the smoke's reports folder
            done = [REPO / root / sub / table / "results.md" for sub in ("reports", "runs/report")]
            assert any(p.is_file() for p in done), table
        assert not list((REPO / root).rglob("wandb"))
    finally:
        shutil.rmtree(REPO / root, ignore_errors=True)
