"""The noise of a Table 2 sweep: seed spread per cell, paired standard errors of the gains, and what more seeds or
more test images would buy (``python -m sppnet_exp.reporting.noise RUNS_ROOT``).

Reads every finished run's ``results.json`` and the per-image test scores it saved
(``predictions/<view>.npz``, :meth:`sppnet_exp.classification.classifier.SPPClassifier._save_test_scores`). For the
first ``k`` test images of each class (``--per-class``; the generated data draws image ``i`` of a class from the
same seed whatever the split's size, so a prefix is the smaller test set exactly) it gives:

* per cell: the mean top-1 error over seeds and its seed standard deviation;
* per network, for (b) - (a) (pyramid pooling) and (c) - (b) (multi-size training): the gains seed by seed, their
  mean and paired standard error ``sd / sqrt(n)``, and the split of the variance of one seed's gain into the
  part that comes from the finite test set, ``v_test = var_i(e_x,i - e_y,i) / N`` (``e`` the 0/1 error of
  image ``i``; the variance of a paired difference of proportions), and the rest, ``v_train = max(0, sd^2 -
  v_test)``, which no test set removes (the nets of two seeds generalise differently);
* over the networks: the mean gain and its standard error ``sqrt(sum SE_i^2) / n_nets``;
* the fit of every run (``--fit-max``): its top-1 error, the step and epoch it left the initial loss plateau
  (``train.plateau_exit`` of results.json) and its training time — the check that no run sits on the plateau;
* the projection to ``S`` seeds and ``N`` test images: ``SE_net(S, N) = sqrt((v_train + v_test * N_0 / N) / S)``,
  and the mean's SE from those (the formula the design in ``experiments/table2/README.md`` is chosen from).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sppnet_exp.utils.io import atomic_write_json, atomic_write_text

__all__ = ["COMPARISONS", "NETWORKS", "fit_table", "load_errors", "noise_table", "project_se"]

NETWORKS = ("zf5", "convnet5", "overfeat5", "overfeat7")
# (name, baseline mode, compared mode): the gain is err(baseline) - err(compared), positive = better
COMPARISONS = (("b-a", "nospp", "spp_single"), ("c-b", "spp_single", "spp_multi"))


@dataclass(frozen=True)
class RunErrors:
    """One run's 0/1 top-1 errors per test image (loader order) and the targets."""

    cell: str
    seed: int
    errors: np.ndarray
    targets: np.ndarray


def load_errors(root: str | Path, view: str = "10view") -> dict[tuple[str, int], RunErrors]:
    """Every finished run under ``root`` with saved ``view`` scores, by (cell, seed); the newest run wins."""
    runs: dict[tuple[str, int], tuple[str, RunErrors]] = {}
    for path in sorted(Path(root).glob("*/*/results.json")):
        res = json.loads(path.read_text())
        scores_file = path.parent / "predictions" / f"{view}.npz"
        if res.get("status") != "finished" or not scores_file.is_file():
            continue
        saved = np.load(scores_file)
        targets = saved["targets"]
        # the float32 top-1 where saved (the float16 scores of older runs may tie two classes: ~1 image in 800)
        top1 = saved["top1"] if "top1" in saved.files else saved["scores"].astype(np.float32).argmax(1)
        errors = (top1 != targets).astype(np.float64)
        key = (str(res["cell"]), int(res["seed"]))
        stamp = str(res.get("updated", ""))
        if key not in runs or stamp > runs[key][0]:
            runs[key] = (stamp, RunErrors(key[0], key[1], errors, targets))
    return {k: v for k, (_, v) in runs.items()}


def fit_table(root: str | Path, view: str = "10view", max_err: float = 15.0) -> dict[str, Any]:
    """Every finished run under ``root`` (the newest per cell and seed): its ``view`` top-1 error, where it left the
    plateau and its training seconds; whether all are at most ``max_err`` and left the plateau in the first epoch."""
    newest: dict[tuple[str, int], dict[str, Any]] = {}
    for path in sorted(Path(root).glob("*/*/results.json")):
        res = json.loads(path.read_text())
        metric = (res.get("metrics") or {}).get(view, {}).get("top1_err")
        if res.get("status") != "finished" or metric is None:
            continue
        key = (str(res["cell"]), int(res["seed"]))
        if key not in newest or str(res.get("updated", "")) > str(newest[key].get("updated", "")):
            newest[key] = res
    runs = []
    for (cell, seed), res in sorted(newest.items()):
        train = res.get("train") or {}
        exit_ = train.get("plateau_exit") or {}
        runs.append(
            {
                "cell": cell,
                "seed": seed,
                "top1_err": float(res["metrics"][view]["top1_err"]),
                "plateau_step": exit_.get("step"),
                "plateau_epoch": exit_.get("epoch"),
                "seconds": train.get("seconds"),
            }
        )
    worst = max(runs, key=lambda r: r["top1_err"]) if runs else None
    return {
        "view": view,
        "max_err": max_err,
        "runs": runs,
        "worst": worst,
        "all_within": bool(runs) and all(r["top1_err"] <= max_err for r in runs),
        "all_left_in_epoch_1": bool(runs) and all(r["plateau_epoch"] == 0 for r in runs),
        "latest_exit_step": max((r["plateau_step"] for r in runs if r["plateau_step"] is not None), default=None),
        "train_seconds": round(sum(float(r["seconds"] or 0.0) for r in runs), 1),
    }


def _fit_markdown(fit: dict[str, Any]) -> list[str]:
    if not fit["runs"]:
        return []
    w = fit["worst"]
    lines = [
        f"### Fit of every run ({len(fit['runs'])} runs, {fit['view']})\n",
        f"Worst top-1 error {w['top1_err']:.2f} ({w['cell']}, seed {w['seed']}); all ≤ {fit['max_err']:g}: "
        f"{'yes' if fit['all_within'] else '**no**'}. Every run left the plateau (10-step mean loss < 0.95 ln C) in "
        f"epoch 1: {'yes' if fit['all_left_in_epoch_1'] else '**no**'} (latest at step {fit['latest_exit_step']}). "
        f"Training time summed over the runs: {fit['train_seconds']:.0f} s.\n",
        "| cell | seed | top-1 error | leaves the plateau at step (epoch) | training s |",
        "|---|---|---|---|---|",
    ]
    for r in fit["runs"]:
        where = "never" if r["plateau_step"] is None else f"{r['plateau_step']} ({r['plateau_epoch'] + 1})"
        lines.append(f"| {r['cell']} | {r['seed']} | {r['top1_err']:.2f} | {where} | {r['seconds']} |")
    return [*lines, ""]


def _prefix(targets: np.ndarray, per_class: int | None) -> np.ndarray:
    """Indices of the first ``per_class`` images of each class (all when None)."""
    if per_class is None:
        return np.arange(len(targets))
    keep = np.zeros(len(targets), dtype=bool)
    for c in np.unique(targets):
        keep[np.flatnonzero(targets == c)[:per_class]] = True
    return np.flatnonzero(keep)


def _sd(values: Sequence[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def noise_table(runs: dict[tuple[str, int], RunErrors], per_class: int | None = None) -> dict[str, Any]:
    """The figures of the module docstring for the first ``per_class`` test images of each class."""
    targets = next(iter(runs.values())).targets
    for run in runs.values():
        if not np.array_equal(run.targets, targets):
            raise ValueError(f"{run.cell} seed {run.seed}: its test images differ from the other runs'")
    idx = _prefix(targets, per_class)
    n_img = len(idx)
    cells: dict[str, Any] = {}
    for cell in sorted({c for c, _ in runs}):
        errs = {s: 100.0 * float(r.errors[idx].mean()) for (c, s), r in runs.items() if c == cell}
        p = np.mean(list(errs.values())) / 100.0
        cells[cell] = {
            "seeds": sorted(errs),
            "errors": [round(errs[s], 3) for s in sorted(errs)],
            "mean": round(float(np.mean(list(errs.values()))), 3),
            "sd": None if _sd(list(errs.values())) is None else round(_sd(list(errs.values())), 3),
            "sd_test": round(100.0 * math.sqrt(p * (1 - p) / n_img), 3),  # binomial, one net
        }
    gains: dict[str, Any] = {}
    for name, base, other in COMPARISONS:
        per_net: dict[str, Any] = {}
        for net in NETWORKS:
            a, b = f"{net}_{base}", f"{net}_{other}"
            seeds = sorted({s for c, s in runs if c == a} & {s for c, s in runs if c == b})
            if not seeds:
                continue
            d = [100.0 * float(runs[(a, s)].errors[idx].mean() - runs[(b, s)].errors[idx].mean()) for s in seeds]
            v_test = float(
                np.mean([1e4 * np.var(runs[(a, s)].errors[idx] - runs[(b, s)].errors[idx]) / n_img for s in seeds])
            )
            sd = _sd(d)
            per_net[net] = {
                "seeds": seeds,
                "gains": [round(x, 3) for x in d],
                "mean": round(float(np.mean(d)), 3),
                "sd": None if sd is None else round(sd, 3),
                "se": None if sd is None else round(sd / math.sqrt(len(d)), 3),
                "v_test": round(v_test, 4),
                "v_train": None if sd is None else round(max(0.0, sd**2 - v_test), 4),
            }
        ses = [v["se"] for v in per_net.values()]
        mean_se = None if not ses or any(s is None for s in ses) else math.sqrt(sum(s * s for s in ses)) / len(ses)
        gains[name] = {
            "networks": per_net,
            "mean": round(float(np.mean([v["mean"] for v in per_net.values()])), 3) if per_net else None,
            "mean_se": None if mean_se is None else round(mean_se, 3),
        }
    return {"per_class": per_class, "test_images": n_img, "cells": cells, "gains": gains}


def project_se(table: dict[str, Any], comparison: str, seeds: int, test_images: int) -> float | None:
    """SE of the mean gain over the networks at ``seeds`` seeds and ``test_images`` test images (docstring)."""
    nets = table["gains"][comparison]["networks"]
    n0 = table["test_images"]
    terms = []
    for v in nets.values():
        if v["v_train"] is None:
            return None
        terms.append((v["v_train"] + v["v_test"] * n0 / test_images) / seeds)
    return math.sqrt(sum(terms)) / len(terms) if terms else None


def _markdown(
    tables: list[dict[str, Any]], projections: list[dict[str, Any]], fit: dict[str, Any] | None = None
) -> str:
    lines = _fit_markdown(fit) if fit else []
    for t in tables:
        lines.append(f"### {t['test_images']} test images ({t['per_class'] or 'all'} per class)\n")
        lines.append("| cell | seeds | top-1 error per seed | mean | seed sd | binomial sd |")
        lines.append("|---|---|---|---|---|---|")
        for cell, v in t["cells"].items():
            per = " / ".join(f"{e:.2f}" for e in v["errors"])
            sd = "-" if v["sd"] is None else f"{v['sd']:.2f}"
            lines.append(f"| {cell} | {len(v['seeds'])} | {per} | {v['mean']:.2f} | {sd} | {v['sd_test']:.2f} |")
        lines.append("")
        lines.append("| gain | network | per seed | mean ± paired SE | v_test | v_train |")
        lines.append("|---|---|---|---|---|---|")
        for name, g in t["gains"].items():
            for net, v in g["networks"].items():
                se = "-" if v["se"] is None else f"{v['se']:.2f}"
                vt = "-" if v["v_train"] is None else f"{v['v_train']:.2f}"
                per = " / ".join(f"{x:+.2f}" for x in v["gains"])
                lines.append(f"| {name} | {net} | {per} | {v['mean']:+.2f} ± {se} | {v['v_test']:.2f} | {vt} |")
            mse = "-" if g["mean_se"] is None else f"{g['mean_se']:.2f}"
            mean = "-" if g["mean"] is None else f"{g['mean']:+.2f}"
            lines.append(f"| {name} | **mean of {len(g['networks'])}** | | **{mean} ± {mse}** | | |")
        lines.append("")
    if projections:
        lines.append("### Projected SE of the mean gain over the networks\n")
        lines.append("| comparison | seeds | test images | SE |")
        lines.append("|---|---|---|---|")
        for p in projections:
            se = "-" if p["se"] is None else f"{p['se']:.2f}"
            lines.append(f"| {p['comparison']} | {p['seeds']} | {p['test_images']} | {se} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: print (and with ``--out``, write JSON + Markdown) the noise figures of a runs root."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="runs root (e.g. outputs/runs)")
    parser.add_argument("--view", default="10view")
    parser.add_argument("--per-class", type=int, nargs="*", default=[], help="test-set prefixes (images per class)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[2, 3, 4], help="seeds for the projection")
    parser.add_argument("--test-images", type=int, nargs="*", default=[400, 1000, 2000], help="for the projection")
    parser.add_argument("--fit-max", type=float, default=15.0, help="the top-1 error every run should stay within")
    parser.add_argument("--out", type=Path, default=None, help="write <out>.json and <out>.md")
    args = parser.parse_args(argv)
    runs = load_errors(args.root, args.view)
    if not runs:
        raise SystemExit(f"{args.root}: no finished run with predictions/{args.view}.npz")
    tables = [noise_table(runs, k) for k in [*args.per_class, None]]
    full = tables[-1]
    projections = [
        {"comparison": c, "seeds": s, "test_images": n, "se": project_se(full, c, s, n)}
        for c, _, _ in COMPARISONS
        for s in args.seeds
        for n in args.test_images
        if c in full["gains"] and full["gains"][c]["networks"]
    ]
    fit = fit_table(args.root, args.view, args.fit_max)
    text = _markdown(tables, projections, fit)
    print(text)
    if args.out is not None:
        atomic_write_json(args.out.with_suffix(".json"), {"fit": fit, "tables": tables, "projections": projections})
        atomic_write_text(args.out.with_suffix(".md"), text)


if __name__ == "__main__":
    main()
