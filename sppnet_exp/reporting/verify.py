"""detectron2-style result checks against the ``verify`` sections of ``experiments/<table>/expected.yaml``.

The section is chosen by (data, scale) through its ``when`` block (``paper`` for imagenet/paper,
``embedded`` for generated/embedded); with no matching section the table is reported but not verified
(``ok`` is None).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sppnet_exp.reporting.tables import CellValue, TableSpec


@dataclass
class VerifyResult:
    """Outcome of :func:`verify_values`: ``ok`` is None when no section applies."""

    ok: bool | None
    section: str | None
    lines: list[str] = field(default_factory=list)
    failed: int = 0
    checked: int = 0


def pick_section(spec: TableSpec, data: str | None, scale: str | None) -> tuple[str | None, dict[str, Any]]:
    """The first verify section whose ``when`` matches (data, scale)."""
    for name, sec in spec.verify.items():
        when = (sec or {}).get("when", {})
        if when.get("data") == data and when.get("scale") == scale:
            return name, dict(sec)
    return None, {}


def _selected(sel: Mapping[str, str], v: CellValue) -> bool:
    """Whether a value matches a relation selector such as ``{row: nospp}`` or ``{column: full}``."""
    return all(getattr(v, k) == want for k, want in sel.items())


def verify_values(spec: TableSpec, values: Sequence[CellValue], data: str | None, scale: str | None) -> VerifyResult:
    """Check values against the section's tolerance/bounds and enabled relations; one line per check."""
    name, sec = pick_section(spec, data, scale)
    t = spec.table
    if name is None:
        known = ", ".join(
            f"{n} (data={s.get('when', {}).get('data')}, scale={s.get('when', {}).get('scale')})"
            for n, s in spec.verify.items()
        )
        return VerifyResult(
            ok=None,
            section=None,
            lines=[f"{t}: no verify section for data={data} scale={scale}; reported only. Sections: {known or '-'}"],
        )
    res = VerifyResult(ok=True, section=name)
    tol: dict[str, float] = {k: float(x) for k, x in (sec.get("tolerance") or {}).items()}
    bounds: dict[str, dict[str, float]] = dict(sec.get("bounds") or {})
    compare_paper = sec.get("compare") == "paper"
    require_all = bool(sec.get("require_all", True))
    checked_metrics = set(bounds) | (set(tol) if compare_paper else set())

    def emit(line: str, passed: bool | None) -> None:
        res.lines.append(line + ("" if passed is None else (" OK" if passed else " FAIL")))
        if passed is not None:
            res.checked += 1
            res.failed += not passed

    for v in values:
        if v.metric not in checked_metrics:
            continue
        label = f"{t} {spec.name(v.row, v.column)} {v.metric}"
        if v.ours is None:
            if require_all and not v.extra:
                emit(f"{label}: missing (no finished run of cell {v.cell}, view {v.view})", False)
            elif v.paper is not None:
                emit(f"{label}: no run (optional)", None)
            continue
        ours = v.ours.mean
        if compare_paper and v.metric in tol and v.paper is not None:
            emit(
                f"{label}: {ours:.2f} vs {v.paper:.2f} ± {tol[v.metric]:.2f}",
                abs(ours - v.paper) <= tol[v.metric],
            )
        if v.metric in bounds:
            lo = float(bounds[v.metric].get("min", float("-inf")))
            hi = float(bounds[v.metric].get("max", float("inf")))
            emit(f"{label}: {ours:.2f} in [{lo:.2f}, {hi:.2f}]", lo <= ours <= hi)

    for rel in sec.get("relations") or []:
        metric = rel["metric"]
        less, than = dict(rel["less"]), dict(rel["than"])
        margin = float(rel.get("margin", 0.0))
        desc = f"{t} relation {metric}: {_sel(less)} < {_sel(than)}" + (f" - {margin:.2f}" if margin else "")
        if not rel.get("enabled", True):
            res.lines.append(f"{desc}: disabled in this section")
            continue
        # extra rows take part only when a selector names them (e.g. the chance row of a detection table)
        lhs = [v for v in values if v.metric == metric and (not v.extra or "row" in less) and _selected(less, v)]
        for a in lhs:
            # the partner differs from `a` only in the selected axes
            free = {k: getattr(a, k) for k in ("row", "column") if k not in than}
            b = next(
                (
                    v
                    for v in values
                    if v.metric == metric and _selected(than, v) and all(getattr(v, k) == x for k, x in free.items())
                ),
                None,
            )
            if b is None:
                continue
            where = ", ".join(f"{k}={x}" for k, x in free.items())
            if a.ours is None or b.ours is None:
                emit(f"{desc} [{where}]: skipped, a cell is missing", None)
                continue
            emit(
                f"{desc} [{where}]: {a.ours.mean:.2f} < {b.ours.mean:.2f}",
                a.ours.mean < b.ours.mean - margin,
            )
    res.ok = res.failed == 0
    verdict = "PASSED" if res.ok else "FAILED"
    res.lines.append(f"{t} verify [{name}]: {res.checked} check(s), {res.failed} failed -> {verdict}")
    return res


def _sel(sel: Mapping[str, str]) -> str:
    """``row=nospp`` style text of a selector."""
    return ",".join(f"{k}={x}" for k, x in sel.items())
