"""The Table 2 noise figures (sppnet_exp.reporting.noise) on a runs root written by hand: per-image errors known
exactly, so every gain, standard error, variance split and projection can be checked against a direct formula."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from sppnet_exp.reporting.noise import fit_table, load_errors, main, noise_table, project_se

N_CLASSES, PER_CLASS = 4, 10


def _write_run(root: Path, cell: str, seed: int, wrong: np.ndarray, updated: str = "2026-01-01T00:00:00") -> None:
    """A finished run whose 10-view scores are wrong exactly on the images of ``wrong`` (a 0/1 vector)."""
    run_dir = root / cell / f"generated-embedded-s{seed}-{abs(hash((cell, seed, updated))) % 10**8:08d}"
    (run_dir / "predictions").mkdir(parents=True)
    targets = np.repeat(np.arange(N_CLASSES), PER_CLASS)
    scores = np.zeros((len(targets), N_CLASSES), dtype=np.float16)
    predicted = np.where(wrong.astype(bool), (targets + 1) % N_CLASSES, targets)
    scores[np.arange(len(targets)), predicted] = 1.0
    np.savez(run_dir / "predictions" / "10view.npz", scores=scores, targets=targets)
    payload = {
        "cell": cell,
        "seed": seed,
        "status": "finished",
        "updated": updated,
        "metrics": {"10view": {"top1_err": 100.0 * float(wrong.mean())}},
        "train": {
            "plateau_exit": {"step": 30 + seed, "epoch": 1 if cell == "overfeat7_spp_multi" else 0},
            "seconds": 2.5,
        },
    }
    (run_dir / "results.json").write_text(json.dumps(payload))


def _wrong(rng: np.random.Generator, p: float) -> np.ndarray:
    return (rng.random(N_CLASSES * PER_CLASS) < p).astype(np.float64)


@pytest.fixture
def runs_root(tmp_path: Path) -> tuple[Path, dict[tuple[str, int], np.ndarray]]:
    rng = np.random.default_rng(0)
    truth: dict[tuple[str, int], np.ndarray] = {}
    for net in ("zf5", "overfeat7"):
        for mode, p in (("nospp", 0.4), ("spp_single", 0.25), ("spp_multi", 0.3)):
            for seed in (0, 1, 2):
                truth[(f"{net}_{mode}", seed)] = w = _wrong(rng, p)
                _write_run(tmp_path, f"{net}_{mode}", seed, w)
    # an older run of a cell is ignored in favour of the newest; an unfinished one is never read
    _write_run(tmp_path, "zf5_nospp", 0, np.ones(N_CLASSES * PER_CLASS), updated="2025-01-01T00:00:00")
    unfinished = tmp_path / "zf5_nospp" / "running"
    (unfinished / "predictions").mkdir(parents=True)
    (unfinished / "results.json").write_text(json.dumps({"cell": "zf5_nospp", "seed": 5, "status": "running"}))
    return tmp_path, truth


def test_gains_and_paired_standard_errors_match_the_direct_formula(runs_root) -> None:
    root, truth = runs_root
    runs = load_errors(root)
    assert set(runs) == set(truth)  # the newest finished run of each (cell, seed), nothing else
    table = noise_table(runs)
    n = N_CLASSES * PER_CLASS
    for net in ("zf5", "overfeat7"):
        a, b = f"{net}_nospp", f"{net}_spp_single"
        d = [100 * (truth[(a, s)].mean() - truth[(b, s)].mean()) for s in (0, 1, 2)]
        got = table["gains"]["b-a"]["networks"][net]
        assert got["gains"] == pytest.approx(d, abs=1e-3)
        assert got["se"] == pytest.approx(np.std(d, ddof=1) / math.sqrt(3), abs=1e-3)
        v_test = np.mean([1e4 * np.var(truth[(a, s)] - truth[(b, s)]) / n for s in (0, 1, 2)])
        assert got["v_test"] == pytest.approx(v_test, abs=1e-3)
        assert got["v_train"] == pytest.approx(max(0.0, np.std(d, ddof=1) ** 2 - v_test), abs=1e-3)
        errs = [100 * truth[(a, s)].mean() for s in (0, 1, 2)]
        assert table["cells"][a]["sd"] == pytest.approx(np.std(errs, ddof=1), abs=1e-3)
    nets = table["gains"]["b-a"]["networks"]
    assert table["gains"]["b-a"]["mean_se"] == pytest.approx(
        math.sqrt(sum(v["se"] ** 2 for v in nets.values())) / 2, abs=1e-3
    )
    # the projection at the measured seeds and test-set size gives back sqrt(sum(sd^2 / S)) / n_nets
    projected = project_se(table, "b-a", seeds=3, test_images=n)
    direct = math.sqrt(sum(max(v["sd"] ** 2, v["v_test"]) / 3 for v in nets.values())) / 2
    assert projected == pytest.approx(direct, rel=1e-3)
    # more test images shrink only the test-set part; more seeds shrink all
    assert project_se(table, "b-a", 3, 4 * n) < projected < project_se(table, "b-a", 2, n)


def test_a_test_set_prefix_takes_the_first_images_of_every_class(runs_root) -> None:
    root, truth = runs_root
    table = noise_table(load_errors(root), per_class=3)
    assert table["test_images"] == 3 * N_CLASSES
    keep = np.concatenate([np.arange(c * PER_CLASS, c * PER_CLASS + 3) for c in range(N_CLASSES)])
    errs = [100 * truth[("zf5_spp_multi", s)][keep].mean() for s in (0, 1, 2)]
    assert table["cells"]["zf5_spp_multi"]["errors"] == pytest.approx(errs, abs=1e-3)


def test_runs_on_different_test_images_are_refused(runs_root) -> None:
    root, _ = runs_root
    runs = load_errors(root)
    key = next(iter(runs))
    runs[key] = type(runs[key])(key[0], key[1], runs[key].errors, runs[key].targets[::-1].copy())
    with pytest.raises(ValueError, match="test images differ"):
        noise_table(runs)


def test_fit_of_every_run_names_the_worst_and_the_late_plateau_exits(runs_root) -> None:
    root, truth = runs_root
    fit = fit_table(root, max_err=100.0)
    assert len(fit["runs"]) == len(truth)  # the older zf5_nospp seed-0 run (100% error) and the unfinished one: out
    errors = {(r["cell"], r["seed"]): r["top1_err"] for r in fit["runs"]}
    assert errors == pytest.approx({k: 100.0 * w.mean() for k, w in truth.items()})
    worst = max(truth, key=lambda k: truth[k].mean())
    assert fit["worst"]["top1_err"] == pytest.approx(100.0 * truth[worst].mean()) and fit["all_within"]
    assert not fit_table(root, max_err=100.0 * truth[worst].mean() - 1e-6)["all_within"]
    assert not fit["all_left_in_epoch_1"]  # overfeat7_spp_multi left it in epoch 2
    assert fit["latest_exit_step"] == 32 and fit["train_seconds"] == 2.5 * len(truth)


def test_cli_writes_json_and_markdown(runs_root, tmp_path: Path) -> None:
    root, _ = runs_root
    out = tmp_path / "noise"
    main([str(root), "--per-class", "5", "--seeds", "2", "3", "--test-images", "40", "--out", str(out)])
    saved = json.loads(out.with_suffix(".json").read_text())
    assert [t["test_images"] for t in saved["tables"]] == [20, 40]
    assert {(p["comparison"], p["seeds"]) for p in saved["projections"]} == {
        (c, s) for c in ("b-a", "c-b") for s in (2, 3)
    }
    text = out.with_suffix(".md").read_text()
    assert (
        "mean of 2" in text and "Every run left the plateau (10-step mean loss < 0.95 ln C) in epoch 1: **no**" in text
    )
    assert saved["fit"]["runs"] and saved["fit"]["max_err"] == 15.0
    with pytest.raises(SystemExit, match="no finished run"):
        main([str(tmp_path / "empty")])
