"""The paper's findings beside what these runs show: the two halves of a results.md preamble, kept apart.

A table spec (``experiments/<table>/expected.yaml``) lists its ``findings``; each has the paper's sentence
(``paper``), and optionally a ``relation`` in the schema of the verify relations (:mod:`.relations`), the phrase
``says`` that the relation states ("the full view has a lower top-1 error than the 1 crop") and the ``unit`` of
one comparison ("rows", "networks"). The reporter never writes the paper's sentence as ours: it counts in how many
of the comparisons the relation holds on our means over seeds ("in these runs the full view ... in 1 of 4 rows")
and, as a check of the sentence, on the paper's own numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sppnet_exp.reporting.collect import Agg
from sppnet_exp.reporting.relations import AXES, _kind, compared
from sppnet_exp.reporting.tables import CellValue, TableSpec

__all__ = ["Finding", "Tally", "render_findings", "tally"]


@dataclass
class Tally:
    """How a relation fares on a set of values: comparisons that hold, that do not, and that have no value."""

    holds: list[str] = field(default_factory=list)
    fails: list[str] = field(default_factory=list)
    missing: int = 0
    mean_gain: float | None = None  # for a `mean_gain` relation: the mean of the gains

    @property
    def n(self) -> int:
        return len(self.holds) + len(self.fails)


@dataclass
class Finding:
    """One finding of a table spec: the paper's sentence, and the relation that tests it on numbers."""

    paper: str
    relation: dict[str, Any] | None = None
    says: str | None = None
    unit: str = "comparisons"

    @classmethod
    def parse(cls, d: Mapping[str, Any], where: str) -> Finding:
        if "paper" not in d:
            raise ValueError(f"{where}: a finding needs `paper` (the paper's sentence): {dict(d)}")
        rel = dict(d["relation"]) if d.get("relation") else None
        if rel is not None:
            _kind(rel, where)  # raises on a malformed relation
        return cls(
            paper=str(d["paper"]).strip(), relation=rel, says=d.get("says"), unit=str(d.get("unit", "comparisons"))
        )


def _labels(spec: TableSpec) -> dict[str, dict[str, str]]:
    return {"row": {r.id: r.label for r in spec.rows}, "column": {c.id: c.label for c in spec.columns}}


def _name(spec: TableSpec, found: Sequence[tuple[CellValue, CellValue]], a: CellValue, b: CellValue) -> str:
    """A comparison named by the axes that vary between the comparisons (ZF-5; SPP-net (1))."""
    labels = _labels(spec)
    axes = [k for k in AXES if len({getattr(x, k) for x, _ in found}) > 1] or [
        k for k in AXES if getattr(a, k) == getattr(b, k)
    ]
    return ", ".join(labels[k].get(getattr(a, k), getattr(a, k)) for k in axes)


def _side(spec: TableSpec, sel: Mapping[str, Any], v: CellValue, other: CellValue) -> str:
    """The label of one side of a comparison: its value on the axes its selector names where the two sides
    differ (``1 full``)."""
    labels = _labels(spec)
    axes = [k for k in AXES if k in sel and getattr(v, k) != getattr(other, k)]
    return ", ".join(labels[k].get(getattr(v, k), getattr(v, k)) for k in axes)


def tally(spec: TableSpec, rel: Mapping[str, Any], values: Sequence[CellValue]) -> Tally:
    """Count the comparisons of ``rel`` that hold on the means of ``values`` (one seed or many: means only)."""
    kind, metric = _kind(rel, f"{spec.table} finding"), str(rel["metric"])
    found = compared(rel, kind, metric, values)
    out = Tally()
    gains: list[float] = []
    margin = float(rel.get("margin", 0.0))
    for a, b in found:
        if a.ours is None or b.ours is None:
            out.missing += 1
            continue
        x, y, dg = a.ours.mean, b.ours.mean, max(a.digits, b.digits)
        if kind == "at":
            lo, hi = rel.get("min"), rel.get("max")
            holds = (lo is None or x >= float(lo)) and (hi is None or x <= float(hi))
            shown = f"{x:.{dg}f}"
        else:
            first, second = ("of", "to") if kind == "of" else ("less", "than")
            shown = f"{_side(spec, rel[first], a, b)} {x:.{dg}f} vs {_side(spec, rel[second], b, a)} {y:.{dg}f}"
            if kind == "of":
                holds = abs(y - x) <= float(rel["within"])
            else:
                gain = y - x
                gains.append(gain)
                holds = gain >= margin if rel.get("or_equal") else gain > margin
        (out.holds if holds else out.fails).append(f"{_name(spec, found, a, b)} ({shown})")
    if "mean_gain" in rel and gains:
        out.mean_gain = sum(gains) / len(gains)
    return out


def _paper_values(values: Sequence[CellValue]) -> list[CellValue]:
    """``values`` with the paper's number in place of ours (a value without one: missing)."""
    return [replace(v, ours=None if v.paper is None else Agg(mean=v.paper, std=None, n=1)) for v in values]


def _count(t: Tally, unit: str) -> str:
    if t.mean_gain is not None:
        return f"mean gain {t.mean_gain:+.2f} over {t.n} {unit}"
    return f"in {len(t.holds)} of {t.n} {unit}"


def render_findings(spec: TableSpec, values: Sequence[CellValue], scope: str) -> tuple[list[str], list[str]]:
    """Markdown bullet lines: what the paper finds (its sentences, each checked on the paper's numbers) and what
    these runs show (``scope``: what they are, e.g. ``data=generated, scale=embedded, mean over seeds 0, 1``)."""
    findings = [Finding.parse(f, f"{spec.path or spec.table} findings") for f in spec.findings]
    if not findings:
        return [], []
    paper_vals = _paper_values(values)
    paper = ["**What the paper finds** (its text; each sentence checked on the paper's numbers in the table):", ""]
    ours = [f"**What these runs show** ({scope}; not the paper's claim restated):", ""]
    for f in findings:
        check = ""
        if f.relation is not None:
            tp = tally(spec, f.relation, paper_vals)
            if tp.n:
                check = f" (by the paper's numbers: {f.says or 'the relation holds'} {_count(tp, f.unit)})"
        paper.append(f"- {f.paper}{check}")
        if f.relation is None:
            continue
        t = tally(spec, f.relation, values)
        says = f.says or "the relation holds"
        if not t.n:
            ours.append(f"- {says}: no finished runs of these cells to compare")
            continue
        line = f"- {says[0].upper()}{says[1:]} {_count(t, f.unit)}"
        parts = ([f"holds for {', '.join(t.holds)}"] if t.holds else []) + (
            [f"not for {', '.join(t.fails)}"] if t.fails else []
        )
        line += ": " + "; ".join(parts)
        if t.missing:
            line += f" ({t.missing} without runs)"
        ours.append(line + ".")
    paper.append("")
    if len(ours) == 2:
        ours = []
    else:
        ours.append("")
    return paper, ours
