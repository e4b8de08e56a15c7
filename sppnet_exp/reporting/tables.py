"""Table specs (``experiments/<table>/expected.yaml``) and the paper-layout renderer (Markdown, CSV, console).

A spec names rows, columns and metric blocks; each (row, column) pair is one run cell (``cell`` template)
and each metric block a (metric, view) pair. Every rendered value shows ours (mean ± std over seeds), the
paper's number, the difference ours − paper and, where the spec has a baseline row, the gain over it in
brackets as in the paper.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sppnet_exp.reporting.collect import Agg

DASH = "—"
CSV_COLUMNS = ["table", "row", "column", "metric", "view", "ours", "std", "n", "paper", "diff", "gain", "data", "scale"]


@dataclass
class Axis:
    """One row or column of a table spec."""

    id: str
    label: str
    view: str | None = None
    extra: bool = False
    paper: dict[str, dict[str, float]] = field(default_factory=dict)
    cell: str | None = None  # rows only: own cell template (e.g. the timing run of a detection table)
    metric: str | None = None  # rows only: own metric key (e.g. conv time in a table of mAPs)
    digits: int = 2  # rows only: decimals shown (e.g. 3 for seconds)


@dataclass
class MetricBlock:
    """One metric block (e.g. "top-1 error (%)" on the 10-view test)."""

    key: str
    label: str
    view: str | None = None


@dataclass
class TableSpec:
    """A parsed ``expected.yaml``."""

    table: str
    title: str
    description: str
    paper_source: str
    wandb_group: str
    cell_template: str
    name_template: str
    metrics: list[MetricBlock]
    columns: list[Axis]
    rows: list[Axis]
    baseline_row: str | None
    verify: dict[str, Any]
    path: Path | None = None
    figures: list[dict[str, Any]] = field(default_factory=list)  # pictures drawn by .figures, each {kind, file, ...}
    findings: list[dict[str, Any]] = field(default_factory=list)  # the paper's findings (.findings), each {paper, ...}

    @property
    def main_rows(self) -> list[Axis]:
        """Rows of the paper's table proper."""
        return [r for r in self.rows if not r.extra]

    @property
    def extra_rows(self) -> list[Axis]:
        """In-text results rendered separately."""
        return [r for r in self.rows if r.extra]

    def cell(self, row: str, column: str) -> str:
        """Run cell name of (row, column)."""
        return self.cell_template.format(row=row, column=column)

    def name(self, row: str, column: str) -> str:
        """Human name of (row, column) used in verify lines."""
        return self.name_template.format(row=row, column=column)

    def view(self, block: MetricBlock, column: Axis, row: Axis | None = None) -> str:
        """The results.json view of a value: the row's (a template), else the column's, else the block's."""
        if row is not None and row.view is not None:
            return row.view.format(row=row.id, column=column.id)
        view = column.view or block.view
        if view is None:
            raise ValueError(f"{self.table}: no view for metric {block.key} in column {column.id}")
        return view

    def row_cell(self, row: Axis, column: Axis) -> str:
        """Run cell of (row, column): the row's own template when it has one."""
        template = row.cell or self.cell_template
        return template.format(row=row.id, column=column.id)

    def metric(self, block: MetricBlock, row: Axis) -> str:
        """Metric key of a value: the row's own, else the block's."""
        return row.metric or block.key

    def cells(self) -> list[str]:
        """Every run cell any (row, column) pair of the table refers to."""
        return sorted({self.row_cell(r, c) for r in self.rows for c in self.columns})

    def paper_value(self, row: str, column: str, metric: str) -> float | None:
        """The paper's number, or None."""
        r = next(x for x in self.rows if x.id == row)
        v = r.paper.get(column, {}).get(metric)
        return float(v) if v is not None else None


def _axis(d: Mapping[str, Any], where: str) -> Axis:
    """Parse one row/column entry."""
    if "id" not in d:
        raise ValueError(f"{where}: entry without 'id': {dict(d)}")
    paper = {str(k): {str(m): float(v) for m, v in (vals or {}).items()} for k, vals in (d.get("paper") or {}).items()}
    return Axis(
        id=str(d["id"]),
        label=str(d.get("label", d["id"])),
        view=d.get("view"),
        extra=bool(d.get("extra", False)),
        paper=paper,
        cell=d.get("cell"),
        metric=d.get("metric"),
        digits=int(d.get("digits", 2)),
    )


def load_spec(path: str | os.PathLike[str]) -> TableSpec:
    """Read and check an ``expected.yaml``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table spec not found: {path}")
    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"invalid YAML in {path}: {e}") from e
    if not isinstance(d, Mapping):
        raise ValueError(f"{path}: expected a mapping at top level")
    for key in ("table", "metrics", "columns", "rows"):
        if key not in d:
            raise ValueError(f"{path}: missing required key '{key}'")
    columns = [_axis(c, f"{path} columns") for c in d["columns"]]
    rows = [_axis(r, f"{path} rows") for r in d["rows"]]
    metrics = [
        MetricBlock(key=str(m["key"]), label=str(m.get("label", m["key"])), view=m.get("view")) for m in d["metrics"]
    ]
    col_ids = {c.id for c in columns}
    for r in rows:
        unknown = set(r.paper) - col_ids
        if unknown:
            raise ValueError(f"{path}: row {r.id} has paper values for unknown columns {sorted(unknown)}")
    baseline = (d.get("gain") or {}).get("baseline_row")
    if baseline is not None and baseline not in {r.id for r in rows}:
        raise ValueError(f"{path}: gain.baseline_row {baseline!r} is not a row id")
    spec = TableSpec(
        table=str(d["table"]),
        title=str(d.get("title", d["table"])),
        description=str(d.get("description", "")).strip(),
        paper_source=str(d.get("paper_source", "paper")),
        wandb_group=str(d.get("wandb_group", d["table"])),
        cell_template=str(d.get("cell", "{column}_{row}")),
        name_template=str(d.get("name", "{row}/{column}")),
        metrics=metrics,
        columns=columns,
        rows=rows,
        baseline_row=baseline,
        verify=dict(d.get("verify") or {}),
        path=path,
        figures=[dict(f) for f in d.get("figures") or []],
        findings=[dict(f) for f in d.get("findings") or []],
    )
    for f in spec.figures:
        if "kind" not in f or "file" not in f:
            raise ValueError(f"{path}: a figure needs `kind` and `file`: {f}")
    for block in metrics:
        for c in columns:
            for r in rows:
                spec.view(block, c, r)  # raises when a value has no view
    return spec


@dataclass
class CellValue:
    """One rendered number: a (row, column, metric) of the table."""

    row: str
    column: str
    metric: str
    view: str
    cell: str
    extra: bool
    ours: Agg | None
    paper: float | None
    digits: int = 2
    gain: float | None = None  # ours: baseline − ours
    paper_gain: float | None = None  # paper: baseline − paper

    @property
    def diff(self) -> float | None:
        """Ours − paper."""
        if self.ours is None or self.paper is None:
            return None
        return self.ours.mean - self.paper


def build_values(spec: TableSpec, aggs: Mapping[tuple[str, str, str], Agg]) -> list[CellValue]:
    """Every (row, column, metric) of the spec with ours (from ``aggs``), the paper's number and the gains."""
    out: list[CellValue] = []
    for block in spec.metrics:
        for row in spec.rows:
            for col in spec.columns:
                view = spec.view(block, col, row)
                cell = spec.row_cell(row, col)
                metric = spec.metric(block, row)
                out.append(
                    CellValue(
                        row=row.id,
                        column=col.id,
                        metric=metric,
                        view=view,
                        cell=cell,
                        extra=row.extra,
                        ours=aggs.get((cell, view, metric)),
                        paper=spec.paper_value(row.id, col.id, metric),
                        digits=row.digits,
                    )
                )
    if spec.baseline_row is not None:
        base = {(v.column, v.metric, v.view): v for v in out if v.row == spec.baseline_row}
        for v in out:
            b = base.get((v.column, v.metric, v.view))
            if b is None or v.row == spec.baseline_row:
                continue
            if b.ours is not None and v.ours is not None:
                v.gain = b.ours.mean - v.ours.mean
            if b.paper is not None and v.paper is not None:
                v.paper_gain = b.paper - v.paper
    return out


def _f(x: float | None, signed: bool = False, digits: int = 2) -> str:
    """``digits`` decimals (two by default), the dash for None."""
    if x is None:
        return DASH
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def fmt_ours(v: CellValue) -> str:
    """``35.10 ± 0.20 (1.01)``: mean, std when n>1, gain in brackets."""
    if v.ours is None:
        return DASH
    s = _f(v.ours.mean, digits=v.digits)
    if v.ours.std is not None:
        s += f" ± {v.ours.std:.{v.digits}f}"
    if v.gain is not None:
        s += f" ({v.gain:.2f})"
    return s


def fmt_paper(v: CellValue) -> str:
    """``34.98 (1.01)``: the paper's number with its gain."""
    if v.paper is None:
        return DASH
    return _f(v.paper, digits=v.digits) + (f" ({v.paper_gain:.2f})" if v.paper_gain is not None else "")


@dataclass
class Header:
    """What the table was computed from."""

    data: str | None
    scale: str | None
    seeds: list[int | None]
    n_runs: int
    source: str
    notes: list[str] = field(default_factory=list)
    recipe: str | None = None  # None: the table's own recipe; else the overrides of the runs shown
    written_to: str | None = None  # where a report of another recipe is written (and that experiments/ is not)

    def line(self, paper_source: str) -> str:
        """One-line provenance summary."""
        seeds = ", ".join(str(s) for s in self.seeds) if self.seeds else DASH
        recipe = "the table's own recipe" if self.recipe is None else f"recipe overrides {self.recipe}"
        return (
            f"ours: data={self.data or DASH}, scale={self.scale or DASH}, {recipe}, seeds [{seeds}], "
            f"{self.n_runs} run(s) from {self.source} · paper: {paper_source}"
        )

    def recipe_warning(self) -> str | None:
        """The header line of a report of runs made with non-default trainer / loader settings."""
        if self.recipe is None:
            return None
        where = f" This report is written to {self.written_to};" if self.written_to else ""
        return (
            f"**Not the table's own recipe**: these runs were made with {self.recipe} (not the default trainer and"
            f" loader settings).{where} the table's results.md under experiments/ is only written from runs of"
            " its own recipe."
        )

    def scope(self) -> str:
        """What the numbers are, for the "what these runs show" half of the preamble."""
        seeds = ", ".join(str(s) for s in self.seeds) if self.seeds else DASH
        recipe = "" if self.recipe is None else f", {self.recipe}"
        return f"data={self.data or DASH}, scale={self.scale or DASH}{recipe}, means over seeds [{seeds}]"


def _index(values: Sequence[CellValue]) -> dict[tuple[str, str, str], CellValue]:
    """Values by (row, column, metric)."""
    return {(v.row, v.column, v.metric): v for v in values}


def _extra_lines(spec: TableSpec, values: Sequence[CellValue]) -> list[CellValue]:
    """Extra-row values worth listing: the paper has a number or we have one."""
    order = {r.id: i for i, r in enumerate(spec.rows)}
    keep = [v for v in values if v.extra and (v.paper is not None or v.ours is not None)]
    return sorted(keep, key=lambda v: order[v.row])  # stable: per row, metric blocks in spec order


def render_markdown(
    spec: TableSpec,
    values: Sequence[CellValue],
    header: Header,
    findings: tuple[Sequence[str], Sequence[str]] = ((), ()),
) -> str:
    """The paper's layout in Markdown: one block per metric, each cell "ours / paper / Δ". The preamble: what the
    table is (the spec's description), what the paper finds and, apart, what these runs show (``findings``:
    :func:`sppnet_exp.reporting.findings.render_findings`)."""
    idx = _index(values)
    cols = {c.id: c for c in spec.columns}
    out = [f"# {spec.title}", ""]
    warning = header.recipe_warning()
    if warning:
        out += [f"> {warning}", ""]
    if spec.description:
        out += [spec.description, ""]
    paper_findings, our_findings = findings
    out += [*paper_findings, *our_findings]
    out += [header.line(spec.paper_source), ""]
    out += [f"> {n}" for n in header.notes] + ([""] if header.notes else [])
    legend = "Each cell: **ours** (mean ± std over seeds) · paper · Δ = ours − paper"
    if spec.baseline_row:
        legend += "; brackets: gain over the no-SPP row, as in the paper"
    out += [legend + ". Missing: " + DASH + ".", ""]
    for block in spec.metrics:
        out += [f"## {block.label}", ""]
        out.append("| | " + " | ".join(c.label for c in spec.columns) + " |")
        out.append("|---|" + "---|" * len(spec.columns))
        for row in spec.main_rows:
            cells = []
            for c in spec.columns:
                v = idx[(row.id, c.id, spec.metric(block, row))]
                diff = _f(v.diff, signed=True, digits=v.digits)
                cells.append(f"**{fmt_ours(v)}**<br>paper {fmt_paper(v)}<br>Δ {diff}")
            out.append(f"| {row.label} | " + " | ".join(cells) + " |")
        out.append("")
    extras = _extra_lines(spec, values)
    if extras:
        out += ["## Additional results from the paper's text", ""]
        out += ["| result | network | metric | ours | paper | Δ |", "|---|---|---|---|---|---|"]
        labels = {r.id: r.label for r in spec.rows}
        mlabels = {m.key: m.label for m in spec.metrics}
        for v in extras:
            out.append(
                f"| {labels[v.row]} | {cols[v.column].label} | {mlabels.get(v.metric, v.metric)} | {fmt_ours(v)} | "
                f"{fmt_paper(v)} | {_f(v.diff, signed=True, digits=v.digits)} |"
            )
        out.append("")
    return "\n".join(out)


def csv_rows(spec: TableSpec, values: Sequence[CellValue], header: Header) -> list[dict[str, Any]]:
    """One dict per (row, column, metric), keys ``CSV_COLUMNS``."""
    rows = []
    for v in values:
        rows.append(
            {
                "table": spec.table,
                "row": v.row,
                "column": v.column,
                "metric": v.metric,
                "view": v.view,
                "ours": None if v.ours is None else round(v.ours.mean, 4),
                "std": None if v.ours is None or v.ours.std is None else round(v.ours.std, 4),
                "n": 0 if v.ours is None else v.ours.n,
                "paper": v.paper,
                "diff": None if v.diff is None else round(v.diff, 4),
                "gain": None if v.gain is None else round(v.gain, 4),
                "data": header.data,
                "scale": header.scale,
            }
        )
    return rows


def render_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV text of :func:`csv_rows` (empty fields for missing values)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r[k]) for k in CSV_COLUMNS})
    return buf.getvalue()


def _grid(table: list[list[str]]) -> list[str]:
    """Left-aligned fixed-width text grid."""
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def render_console(spec: TableSpec, values: Sequence[CellValue], header: Header, findings: Sequence[str] = ()) -> str:
    """Plain-text version: per metric block, ours / paper / Δ sub-columns per network (``findings``: the lines of
    what these runs show, :func:`sppnet_exp.reporting.findings.render_findings`)."""
    idx = _index(values)
    warning = header.recipe_warning()
    out = [spec.title, *([warning.replace("**", "")] if warning else []), header.line(spec.paper_source)]
    out += [f"note: {n}" for n in header.notes]
    out += [line.replace("**", "") for line in findings if line]
    for block in spec.metrics:
        out += ["", block.label]
        head = [""] + [f"{c.label} {part}" for c in spec.columns for part in ("ours", "paper", "Δ")]
        grid = [head]
        for row in spec.main_rows:
            line = [row.label]
            for c in spec.columns:
                v = idx[(row.id, c.id, spec.metric(block, row))]
                line += [fmt_ours(v), fmt_paper(v), _f(v.diff, signed=True, digits=v.digits)]
            grid.append(line)
        out += _grid(grid)
    extras = _extra_lines(spec, values)
    if extras:
        out += ["", "additional results from the paper's text"]
        labels = {r.id: r.label for r in spec.rows}
        cols = {c.id: c.label for c in spec.columns}
        grid = [["result", "network", "metric", "ours", "paper", "Δ"]]
        for v in extras:
            diff = _f(v.diff, signed=True, digits=v.digits)
            grid.append([labels[v.row], cols[v.column], v.metric, fmt_ours(v), fmt_paper(v), diff])
        out += _grid(grid)
    return "\n".join(out) + "\n"
