"""Each table is defined once: the ``sweep`` of its expected.yaml lists the runs that make it; the Makefile's table
targets run it (``python -m sppnet_exp.table``); a grid cell composes to exactly its experiment file's config; cells
that several tables ask for have one run dir (computed once)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from sppnet_exp.config import REPO_DIR, compose_config
from sppnet_exp.reporting.sweeps import load_sweep
from tests.test_configs import EXPERIMENTS

TABLES = ["table2", "table3", "table7", "table9", "table10", "table12"]
EXP_DIR = REPO_DIR / "experiments"


def _jobs(table: str) -> list[list[str]]:
    """The override lists of the sweep's jobs, one seed, in the order the basic sweeper runs them."""
    sweep = load_sweep(EXP_DIR, table)
    if sweep.grid:
        keys = list(sweep.grid)
        combos = itertools.product(*(sweep.grid[k] for k in keys))
        return [[f"{k}={v}" for k, v in zip(keys, combo, strict=True)] + [f"table={table}"] for combo in combos]
    return [[f"experiment={e}"] for e in sweep.experiments]


@pytest.mark.parametrize("table", TABLES)
def test_every_table_has_a_sweep_of_existing_cells(table: str) -> None:
    sweep = load_sweep(EXP_DIR, table)
    assert sweep.experiments or sweep.grid
    assert all(e in EXPERIMENTS and e.startswith(f"{table}/") for e in sweep.experiments)
    for job in _jobs(table):
        cfg = compose_config(sweep.command, job)
        assert cfg.table == table and str(cfg.run_dir).endswith(str(cfg.fingerprint)), job


def test_table2_grid_is_the_experiment_files_exactly() -> None:
    """A grid cell and the experiment file of the same cell compose to the same resolved config (the same run
    dir), in the order `make table2` always ran them: the two ways to name a cell cannot drift apart."""
    order = []
    for job in _jobs("table2"):
        model, mode = (o.split("=", 1)[1] for o in job[:2])
        by_grid = OmegaConf.to_container(compose_config("train", job), resolve=True)
        by_file = OmegaConf.to_container(compose_config("train", [f"experiment=table2/{model}_{mode}"]), resolve=True)
        assert by_grid == by_file, (model, mode)
        order.append(f"{model}_{mode}")
    assert order[:3] == ["zf5_nospp", "zf5_spp_single", "zf5_spp_multi"] and len(order) == 12


def test_detection_cells_asked_for_by_several_tables_share_one_run() -> None:
    dirs = {
        table: {str(compose_config("detect", job).run_dir) for job in _jobs(table)}
        for table in ("table9", "table10", "table12")
    }
    run = {
        e: str(compose_config("detect", [f"experiment={e}"]).run_dir)
        for e in ("table9/spp_1scale", "table9/spp_5scale")
    }
    assert run["table9/spp_1scale"] in dirs["table10"] and run["table9/spp_5scale"] in dirs["table10"]
    assert run["table9/spp_5scale"] in dirs["table12"]
    distinct = set().union(*dirs.values())
    assert len(distinct) == sum(len(d) for d in dirs.values()) - 3  # 11 jobs, 8 distinct runs


def test_table_entry_prints_the_multirun_and_refuses_a_bad_table(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sppnet_exp.table", *args], cwd=REPO_DIR, capture_output=True, text=True, timeout=60
        )

    out = run("table2", "--seeds", "0,1", "--print", "data.gen_seed=1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        "python -m sppnet_exp.train -m model=zf5,convnet5,overfeat5,overfeat7 mode=nospp,spp_single,spp_multi"
        " table=table2 seed=0,1 data.gen_seed=1"
    )
    out = run("table12", "--seeds", "0", "--print")  # not a seeded table: the seeds are not added
    assert out.stdout.strip().endswith("-m experiment=table12/net1,table12/net2,table12/combination")
    out = run("table5", "--print")
    assert out.returncode == 2 and "table5/expected.yaml: no such table definition" in out.stderr
    assert "table2" in out.stderr


def test_a_malformed_sweep_is_named(tmp_path: Path) -> None:
    d = tmp_path / "tableX"
    d.mkdir()
    for sweep, needle in [
        (None, "no 'sweep' section"),
        ({"command": "fit", "experiments": ["a"]}, "sweep.command must be one of"),
        ({"command": "train", "experiments": ["a"], "grid": {"model": ["zf5"]}}, "exactly one of 'grid'"),
        ({"command": "train", "grid": {"model": []}}, "sweep.grid.model: expected a non-empty list"),
    ]:
        (d / "expected.yaml").write_text(yaml.safe_dump({"table": "tableX", **({"sweep": sweep} if sweep else {})}))
        with pytest.raises(ValueError, match=needle):
            load_sweep(tmp_path, "tableX")


def test_a_new_table2_network_is_one_edit_of_one_file(tmp_path: Path) -> None:
    """The README's recipe: a column in `columns:` and its name in `sweep.grid.model`, both in table2's
    expected.yaml; the report's layout and the multirun then both have it."""
    from sppnet_exp.reporting.tables import load_spec

    (tmp_path / "table2").mkdir()
    text = (EXP_DIR / "table2" / "expected.yaml").read_text()
    text = text.replace(
        '  - {id: overfeat7, label: "Overfeat-7"}\n',
        '  - {id: overfeat7, label: "Overfeat-7"}\n  - {id: alexnet, label: "AlexNet"}\n',
    )
    text = text.replace(
        "model: [zf5, convnet5, overfeat5, overfeat7]", "model: [zf5, convnet5, overfeat5, overfeat7, alexnet]"
    )
    (tmp_path / "table2" / "expected.yaml").write_text(text)
    spec = load_spec(tmp_path / "table2" / "expected.yaml")
    assert {"alexnet_nospp", "alexnet_spp_single", "alexnet_spp_multi"} <= set(spec.cells())
    sweep = load_sweep(tmp_path, "table2")
    assert sweep.overrides("0")[0] == "model=zf5,convnet5,overfeat5,overfeat7,alexnet"
    cfg = compose_config("train", ["model=alexnet", "mode=spp_multi", "table=table2"])
    assert cfg.cell == "alexnet_spp_multi"


def test_a_table_with_its_own_seeds_runs_them_whatever_seeds_says() -> None:
    """Table 7's seeds are Caltech101's 10 random splits, not the training seeds of `make table2`."""
    sweep = load_sweep(EXP_DIR, "table7")
    assert sweep.command == "transfer" and sweep.seeds == tuple(range(10))
    assert sweep.overrides("0,1")[-1] == "seed=0,1,2,3,4,5,6,7,8,9"
    assert load_sweep(EXP_DIR, "table2").overrides("0,1")[-1] == "seed=0,1"


def test_a_sweep_with_malformed_seeds_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "expected.yaml").write_text("sweep: {command: transfer, seeds: [0, x], experiments: [t/a]}\n")
    with pytest.raises(ValueError, match="sweep.seeds must be true, false or a list of integers"):
        load_sweep(tmp_path, "t")
