"""Results, collection, rendering and verification of the paper's tables.

Entry point for ``sppnet_exp.report``: :func:`build_report` → :class:`Report` (Markdown/CSV/console text,
the rows, the verify outcome), then ``Report.to_files(experiments_dir / table)`` (``results.md``, ``results.csv``
and the table's pictures, :mod:`.figures`) and optionally ``Report.log_to_wandb(...)``. A report of runs made with
another recipe than the table's own (``Report.own_recipe`` false) belongs under the runs root, not experiments/.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sppnet_exp.engine.results import (
    RESULTS_FILE,
    deep_merge,
    iter_results,
    make_payload,
    read_results,
    update_results,
    write_results,
)
from sppnet_exp.reporting.collect import Collection, aggregate, load_local, select
from sppnet_exp.reporting.figures import FigureInputs, render_figures
from sppnet_exp.reporting.findings import render_findings
from sppnet_exp.reporting.tables import (
    CSV_COLUMNS,
    Header,
    TableSpec,
    build_values,
    csv_rows,
    load_spec,
    render_console,
    render_csv,
    render_markdown,
)
from sppnet_exp.reporting.verify import VerifyResult, verify_values
from sppnet_exp.utils.identity import describe_overrides
from sppnet_exp.utils.io import atomic_write_text

__all__ = [
    "CSV_COLUMNS",
    "RESULTS_FILE",
    "Report",
    "build_report",
    "deep_merge",
    "iter_results",
    "load_spec",
    "make_payload",
    "read_results",
    "update_results",
    "write_results",
]

SPEC_FILE = "expected.yaml"


@dataclass
class Report:
    """A rendered table plus its verify outcome (``verify_ok`` None: not verified / no section applies)."""

    table: str
    spec: TableSpec
    markdown: str
    csv: str
    console: str
    rows: list[dict[str, Any]]
    data: str | None
    scale: str | None
    n_runs: int
    notes: list[str] = field(default_factory=list)
    verify_ok: bool | None = None
    verify_lines: list[str] = field(default_factory=list)
    verify_section: str | None = None
    own_recipe: bool = True  # the runs use the table's own recipe (default trainer and loader settings)
    overrides: dict[str, Any] = field(default_factory=dict)  # else: their non-default settings
    inputs: FigureInputs | None = field(default=None, repr=False)  # what the pictures are drawn from
    figures: list[tuple[str, Path]] = field(default_factory=list)  # (title, PNG) of the pictures drawn

    def draw_figures(self, out_dir: str | os.PathLike[str]) -> list[tuple[str, Path]]:
        """Draw the spec's pictures into ``out_dir`` (those whose inputs are missing are skipped, logged)."""
        self.figures = [] if self.inputs is None else render_figures(self.inputs, out_dir)
        return self.figures

    def to_files(self, out_dir: str | os.PathLike[str]) -> list[Path]:
        """Write the pictures, then ``results.md`` (linking them) and ``results.csv``, atomically into ``out_dir``."""
        out = Path(out_dir)
        figures = self.draw_figures(out)
        md = self.markdown
        if figures:
            md += "\n## Figures\n\n" + "\n\n".join(f"![{title}]({p.name})" for title, p in figures) + "\n"
        if self.verify_lines:
            md += "\n## Verification\n\n```\n" + "\n".join(self.verify_lines) + "\n```\n"
        written = [atomic_write_text(out / "results.md", md), atomic_write_text(out / "results.csv", self.csv)]
        return written + [p for _, p in figures]

    def log_to_wandb(
        self,
        project: str,
        group: str | None = None,
        mode: str = "online",
        entity: str | None = None,
        dir: str | None = None,
    ) -> str | None:
        """Log the rows as a ``wandb.Table``, the pictures as ``wandb.Image`` and the verify lines in a
        ``job_type="report"`` run (group default: the spec's). Pictures not drawn yet are drawn into ``dir``."""
        from sppnet_exp.reporting.wandb_io import log_table

        if not self.figures and self.inputs is not None and self.inputs.spec.figures and dir is not None:
            self.draw_figures(Path(dir) / f"{self.table}-figures")

        return log_table(
            self.rows,
            table=self.table,
            project=project,
            group=group or self.spec.wandb_group,
            mode=mode,
            entity=entity,
            markdown=self.markdown,
            images=self.figures,
            verify_lines=self.verify_lines,
            config={
                "data": self.data,
                "scale": self.scale,
                "n_runs": self.n_runs,
                "verify_ok": self.verify_ok,
                "own_recipe": self.own_recipe,
                "recipe_overrides": self.overrides,
            },
            dir=dir,
        )


def build_report(
    table: str,
    runs_root: str | os.PathLike[str],
    experiments_dir: str | os.PathLike[str],
    data: str | None = None,
    scale: str | None = None,
    source: str = "local",
    wandb_project: str | None = None,
    wandb_entity: str | None = None,
    verify: bool = False,
    recipe: str = "auto",
    other_dir: str | os.PathLike[str] | None = None,
) -> Report:
    """Collect the runs of ``table`` (local dirs or a W&B group), one recipe (:func:`.collect.select`), average
    over seeds, render, maybe verify. ``other_dir``: where a report of another recipe than the table's own is
    written (named in its header)."""
    spec = load_spec(Path(experiments_dir) / table / SPEC_FILE)
    skipped: list[Path] = []
    if source == "local":
        records = load_local(runs_root, skipped)
        origin = str(runs_root)
    elif source == "wandb":
        if not wandb_project:
            raise ValueError("source=wandb needs wandb_project")
        from sppnet_exp.reporting.wandb_io import load_wandb_records

        records = load_wandb_records(wandb_project, wandb_entity, spec.wandb_group)
        origin = f"W&B {wandb_entity + '/' if wandb_entity else ''}{wandb_project} group {spec.wandb_group}"
    else:
        raise ValueError(f"source must be 'local' or 'wandb', got {source!r}")
    coll: Collection = select(records, spec.cells(), data, scale, recipe=recipe)
    notes = list(coll.notes)
    if skipped:
        notes.append(f"{len(skipped)} unreadable results file(s) skipped: " + ", ".join(str(p) for p in skipped))
    if not coll.records:
        notes.append(f"no finished runs of {table} found in {origin} for data={coll.data} scale={coll.scale}")
    aggs = aggregate(coll.records)
    values = build_values(spec, aggs)
    seeds = sorted({r.seed for r in coll.records}, key=lambda s: (s is None, s))
    header = Header(data=coll.data, scale=coll.scale, seeds=seeds, n_runs=len(coll.records), source=origin, notes=notes)
    if not coll.own_recipe:
        header.recipe = describe_overrides(coll.overrides)
        header.written_to = str(Path(other_dir) / table) if other_dir is not None else None
    findings = render_findings(spec, values, header.scope())
    rows = csv_rows(spec, values, header)
    report = Report(
        table=table,
        spec=spec,
        markdown=render_markdown(spec, values, header, findings),
        csv=render_csv(rows),
        console=render_console(spec, values, header, findings[1]),
        rows=rows,
        data=coll.data,
        scale=coll.scale,
        n_runs=len(coll.records),
        notes=notes,
        own_recipe=coll.own_recipe,
        overrides=dict(coll.overrides),
        inputs=FigureInputs(spec=spec, values=values, aggs=aggs, records=coll.records),
    )
    if verify:
        vr: VerifyResult = verify_values(spec, values, coll.data, coll.scale)
        report.verify_ok, report.verify_lines, report.verify_section = vr.ok, vr.lines, vr.section
    return report
