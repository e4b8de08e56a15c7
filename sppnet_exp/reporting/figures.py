"""Pictures of a table, next to its ``results.md`` (matplotlib, headless Agg backend): the ``figures`` list of
``experiments/<table>/expected.yaml``, each ``{kind, file, ...}``.

Kinds (the paper's point each one shows):

- ``gains`` (Tables 2/3): the error reduction of each row over a baseline row (Table 2: of SPP over no SPP, per
  network) or of each column over a baseline column (Table 3: of 1 full over 1 crop, per model), ours (mean over
  seeds, error bar ± one standard error of the difference) beside the paper's.
- ``bars`` (Table 3): per row, the value of each column (1 crop / 1 full), ours ± SE beside the paper's.
- ``pr`` (Tables 9/10): per row, one panel per class with the precision-recall curve of every column (method),
  read from the ``pr_<row>.json`` the detection cell wrote beside its detections (lowest seed); ``file`` may hold
  ``{row}``.
- ``timing`` (Tables 9/10): conv / fc / other time per image of every method on a log axis, ours beside the
  paper's GPU times (other = total − conv − fc).
- ``ap_per_class`` (Table 12): AP per class of every row (net 1, net 2, the combination), ours ± SE.

A picture whose inputs are missing (no run, no PR file, matplotlib not installed) is skipped with a logged line;
no picture ever stops the report.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sppnet_exp.formats.pr_curves import PR_FILE, read_pr
from sppnet_exp.reporting.collect import Agg, Record
from sppnet_exp.reporting.relations import diff
from sppnet_exp.reporting.tables import CellValue, TableSpec

log = logging.getLogger(__name__)

OURS, PAPER = "ours", "paper"


@dataclass
class FigureInputs:
    """What the pictures of a table are drawn from: the rendered values, every aggregate, the chosen runs."""

    spec: TableSpec
    values: list[CellValue]
    aggs: Mapping[tuple[str, str, str], Agg]
    records: list[Record]

    def value(self, row: str, column: str, metric: str) -> CellValue | None:
        """The rendered value of (row, column, metric), or None."""
        return next((v for v in self.values if (v.row, v.column, v.metric) == (row, column, metric)), None)


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Path) -> Path:
    """Write ``fig`` as a PNG (a temp name, then renamed: a reader never sees half a picture)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        tmp.replace(path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


def _se(a: Agg | None) -> float:
    return 0.0 if a is None or a.se is None else a.se


def _bar_pairs(ax: Any, groups: Sequence[str], series: Sequence[tuple[str, list, list, list]], ylabel: str) -> None:
    """Grouped bars: per group one bar per (label, ours, ours_err, paper) series, ours solid, paper hatched."""
    n = len(series)
    width = 0.8 / (2 * n)
    for i, (label, ours, err, paper) in enumerate(series):
        color = f"C{i}"
        xs = [g + (2 * i - n + 0.5) * width for g in range(len(groups))]
        ys = [math.nan if x is None else x for x in ours]
        ax.bar(xs, ys, width, yerr=err, capsize=3, color=color, label=f"{label} ({OURS})")
        ys = [math.nan if x is None else x for x in paper]
        xs = [x + width for x in xs]
        ax.bar(xs, ys, width, color="white", edgecolor=color, hatch="//", label=f"{label} ({PAPER})")
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel(ylabel)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.legend(fontsize=7, ncols=2 * n, loc="upper center", bbox_to_anchor=(0.5, -0.12))


def gains(plt: Any, inp: FigureInputs, fig_spec: Mapping[str, Any]) -> Any:
    """Tables 2/3: the error reduction baseline − value of every other row (``baseline: {row: id}``, default the
    spec's ``gain.baseline_row``) or column (``{column: id}``), grouped by the other axis; ours ± SE beside the
    paper's."""
    spec, metric = inp.spec, str(fig_spec.get("metric", inp.spec.metrics[0].key))
    baseline = dict(fig_spec.get("baseline") or ({"row": spec.baseline_row} if spec.baseline_row else {}))
    if len(baseline) != 1:
        raise ValueError("the gains picture needs `baseline: {row: id}` or `{column: id}` (or gain.baseline_row)")
    (axis, base), other = next(iter(baseline.items())), "column" if "row" in baseline else "row"
    axes = {"row": spec.main_rows, "column": spec.columns}
    groups, members = axes[other], [a for a in axes[axis] if a.id != base]
    series = []
    for m in members:
        ours, err, paper = [], [], []
        for g in groups:
            at = {axis: m.id, other: g.id}
            at_base = {**at, axis: base}
            v, b = inp.value(at["row"], at["column"], metric), inp.value(at_base["row"], at_base["column"], metric)
            d = None if v is None or b is None or v.ours is None or b.ours is None else diff(v.ours, b.ours)
            ours.append(None if d is None else d.value)  # baseline − value: positive = lower error than the baseline
            err.append(0.0 if d is None else d.se or 0.0)
            paper.append(None if v is None or b is None or v.paper is None or b.paper is None else b.paper - v.paper)
        series.append((m.label, ours, err, paper))
    if all(x is None for s in series for x in s[1]):
        return None
    fig, ax = plt.subplots(figsize=(1.9 * len(groups) + 2, 4.2), layout="constrained")
    label = next((m.label for m in spec.metrics if m.key == metric), metric)
    _bar_pairs(ax, [g.label.replace(", ", "\n") for g in groups], series, f"reduction of {label}")
    base_label = next(a.label for a in axes[axis] if a.id == base)
    ax.set_title(f"{spec.table}: gain over {base_label} (± 1 SE over seeds; hatched: the paper)")
    return fig


def bars(plt: Any, inp: FigureInputs, fig_spec: Mapping[str, Any]) -> Any:
    """Table 3: per row, each column's value, ours ± SE beside the paper's."""
    spec, metric = inp.spec, str(fig_spec.get("metric", inp.spec.metrics[0].key))
    series = []
    for c in spec.columns:
        vs = [inp.value(r.id, c.id, metric) for r in spec.main_rows]
        ours = [None if v is None or v.ours is None else v.ours.mean for v in vs]
        errs = [_se(None if v is None else v.ours) for v in vs]
        series.append((c.label, ours, errs, [None if v is None else v.paper for v in vs]))
    if all(x is None for s in series for x in s[1]):
        return None
    fig, ax = plt.subplots(figsize=(2.2 * len(spec.main_rows) + 2, 4.2), layout="constrained")
    label = next((m.label for m in spec.metrics if m.key == metric), metric)
    _bar_pairs(ax, [r.label.replace(", ", "\n") for r in spec.main_rows], series, label)
    ax.set_title(f"{spec.table}: {label} per model (± 1 SE over seeds)")
    return fig


def _run_dir(inp: FigureInputs, cell: str) -> tuple[Path, int | None] | None:
    """The local run dir of ``cell``'s lowest seed among the chosen runs (None: no local run)."""
    recs = sorted((r for r in inp.records if r.cell == cell), key=lambda r: (r.seed is None, r.seed or 0))
    for r in recs:
        p = Path(r.source)
        if p.name == "results.json" and p.is_file():
            return p.parent, r.seed
    return None


def pr_curves(plt: Any, inp: FigureInputs, row: str) -> Any:
    """Tables 9/10, one row: a panel per class with each column's precision-recall curve."""
    spec = inp.spec
    block, axis = spec.metrics[0], next(r for r in spec.rows if r.id == row)
    curves: dict[str, dict[str, Any]] = {}
    seeds: set[int | None] = set()
    for c in spec.columns:
        found = _run_dir(inp, spec.row_cell(axis, c))
        path = None if found is None else found[0] / PR_FILE.format(row=spec.view(block, c, axis))
        if path is None or not path.is_file():
            log.info("%s %s: no PR points for %s (%s)", spec.table, row, c.id, path or "no local run")
            continue
        curves[c.label] = read_pr(path)["classes"]
        seeds.add(found[1])  # type: ignore[index]
    if not curves:
        return None
    classes = list(dict.fromkeys(k for cls in curves.values() for k in cls))
    ncols = min(5, len(classes))
    nrows = math.ceil(len(classes) / ncols)
    size = (2.6 * ncols, 2.4 * nrows + 0.4)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False, sharex=True, sharey=True, layout="constrained")
    for k, name in enumerate(classes):
        ax = axes[k // ncols][k % ncols]
        for i, (method, cls) in enumerate(curves.items()):
            if name in cls:
                pts = cls[name]
                r, p = [0.0, *pts["recall"]], [pts["precision"][0] if pts["precision"] else 0.0, *pts["precision"]]
                ax.step(r, p, where="post", color=f"C{i}", label=f"{method} {pts['ap']:.1f}", linewidth=1.2)
        ax.set_title(name, fontsize=9)
        ax.set_xlim(0, 1.0)
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=6, loc="lower left", title="AP", title_fontsize=6)
    for k in range(len(classes), nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("recall")
    for ax in axes[:, 0]:
        ax.set_ylabel("precision")
    seed = ", ".join(str(s) for s in sorted(seeds, key=lambda s: (s is None, s or 0)))
    fig.suptitle(f"{spec.table} {axis.label}: precision-recall per class (seed {seed})")
    return fig


def _other(total: float, conv: float, fc: float) -> float:
    """total − conv − fc; 0 (not drawn) under 0.1% of the total, e.g. the paper's rounding (0.382 − 0.293 − 0.089)."""
    other = total - conv - fc
    return other if other > 1e-3 * total else 0.0


def timing(plt: Any, inp: FigureInputs, fig_spec: Mapping[str, Any]) -> Any:
    """Tables 9/10: conv / fc / other time per image of each method, log axis, ours beside the paper's GPU times."""
    spec = inp.spec
    rows = {part: str(fig_spec.get(part, f"{part}_time")) for part in ("conv", "fc", "total")}
    metric = {part: next(r.metric for r in spec.rows if r.id == rid) for part, rid in rows.items()}
    parts: dict[str, dict[str, list[float]]] = {OURS: {}, PAPER: {}}
    errs: dict[str, list[float]] = {}
    for c in spec.columns:
        v = {p: inp.value(rows[p], c.id, str(metric[p])) for p in rows}
        if all(x is not None and x.ours is not None for x in v.values()):
            conv, fc, tot = (v[p].ours.mean for p in ("conv", "fc", "total"))  # type: ignore[union-attr]
            parts[OURS][c.label] = [conv, fc, _other(tot, conv, fc)]
            errs[c.label] = [_se(v["conv"].ours), _se(v["fc"].ours), 0.0]  # type: ignore[union-attr]
        if all(x is not None and x.paper is not None for x in v.values()):
            conv, fc, tot = (v[p].paper for p in ("conv", "fc", "total"))  # type: ignore[union-attr]
            parts[PAPER][c.label] = [conv, fc, _other(tot, conv, fc)]  # type: ignore[arg-type]
    if not parts[OURS]:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True, layout="constrained")
    names = ("conv", "fc", "other")
    for ax, who in zip(axes, (OURS, PAPER), strict=True):
        methods = list(parts[who])
        for j, name in enumerate(names):
            xs = [m + (j - 1) * 0.27 for m in range(len(methods))]
            ys = [parts[who][m][j] or math.nan for m in methods]  # 0 s cannot be drawn on a log axis
            yerr = [errs[m][j] for m in methods] if who == OURS else None
            ax.bar(xs, ys, 0.27, yerr=yerr, capsize=3, color=f"C{j}", label=f"{name} time")
        ax.set_xticks(range(len(methods)), methods, fontsize=8)
        ax.set_yscale("log")
        ax.set_title("ours (the device that ran the timing cell)" if who == OURS else "paper (GPU)")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("seconds per image (log)")
    fig.suptitle(f"{spec.table}: time per image by stage (other = total − conv − fc)")
    return fig


def ap_per_class(plt: Any, inp: FigureInputs, fig_spec: Mapping[str, Any]) -> Any:
    """Table 12: AP per class of each row (``AP/<class>`` of its cell's view), ours ± SE."""
    spec = inp.spec
    block, col = spec.metrics[0], spec.columns[0]
    per_row: dict[str, dict[str, Agg]] = {}
    for r in spec.main_rows:
        cell, view = spec.row_cell(r, col), spec.view(block, col, r)
        aps = {k[2][3:]: a for k, a in inp.aggs.items() if k[0] == cell and k[1] == view and k[2].startswith("AP/")}
        if aps:
            per_row[r.label] = aps
    if not per_row:
        return None
    classes = list(dict.fromkeys(c for aps in per_row.values() for c in aps))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(classes) * len(per_row)), 4.2), layout="constrained")
    width = 0.8 / len(per_row)
    for i, (label, aps) in enumerate(per_row.items()):
        xs = [k + (i - (len(per_row) - 1) / 2) * width for k in range(len(classes))]
        ys = [aps[c].mean if c in aps else math.nan for c in classes]
        v = inp.value(next(r.id for r in spec.main_rows if r.label == label), col.id, block.key)
        mean = f" (mAP {v.ours.mean:.1f})" if v is not None and v.ours is not None else ""
        ax.bar(xs, ys, width, yerr=[_se(aps.get(c)) for c in classes], capsize=2, color=f"C{i}", label=label + mean)
    ax.set_xticks(range(len(classes)), classes, rotation=45 if len(classes) > 8 else 0, fontsize=8)
    ax.set_ylabel("AP (%)")
    ax.set_title(f"{spec.table}: AP per class (± 1 SE over seeds)")
    below = -0.1 - 0.08 * (len(classes) > 8)  # under the (rotated) class names
    ax.legend(fontsize=8, ncols=len(per_row), loc="upper center", bbox_to_anchor=(0.5, below))
    return fig


KINDS: dict[str, Callable[..., Any]] = {"gains": gains, "bars": bars, "timing": timing, "ap_per_class": ap_per_class}


def render_figures(inp: FigureInputs, out_dir: str | Path) -> list[tuple[str, Path]]:
    """Draw every figure of the spec into ``out_dir``; ``[(title, path)]`` of those written, the rest logged."""
    plt = _pyplot()
    if inp.spec.figures and plt is None:
        log.warning("%s: matplotlib is not installed, pictures skipped", inp.spec.table)
        return []
    out: list[tuple[str, Path]] = []
    for f in inp.spec.figures:
        kind, file = str(f["kind"]), str(f["file"])
        jobs: list[tuple[str, str, str | None]]  # (file, title, the row of a PR picture)
        labels = {r.id: r.label for r in inp.spec.rows}
        if kind == "pr":
            ids = f.get("rows") or [r.id for r in inp.spec.main_rows if r.metric is None]
            jobs = [(file.format(row=r), f"precision-recall per class, {labels.get(r, r)}", r) for r in ids]
        elif kind in KINDS:
            jobs = [(file, str(f.get("title", Path(file).stem.replace("_", " "))), None)]
        else:
            log.warning("%s: unknown figure kind %r skipped (kinds: pr, %s)", inp.spec.table, kind, ", ".join(KINDS))
            continue
        for name, title, row in jobs:
            try:
                fig = pr_curves(plt, inp, row) if row is not None else KINDS[kind](plt, inp, f)
            except Exception as e:  # a picture never stops the report
                log.warning("%s: picture %s skipped: %s: %s", inp.spec.table, name, type(e).__name__, e)
                continue
            if fig is None:
                log.info("%s: picture %s skipped: its inputs are missing", inp.spec.table, name)
                continue
            out.append((title, _save(plt, fig, Path(out_dir) / name)))
    return out
