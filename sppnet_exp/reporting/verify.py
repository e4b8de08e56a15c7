"""detectron2-style result checks against the ``verify`` sections of ``experiments/<table>/expected.yaml``.

The section is chosen by (data, scale) through its ``when`` block (``paper`` for imagenet/paper,
``embedded`` for generated/embedded); with no matching section the table is reported but not verified
(``ok`` is None). A section compares values with the paper's (``tolerance``), with absolute ``bounds``, and checks
the paper's findings as ``relations`` on means over seeds (:mod:`.relations`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sppnet_exp.reporting.relations import NOT_REPRODUCED, OK, check_relation
from sppnet_exp.reporting.tables import CellValue, TableSpec


@dataclass
class VerifyResult:
    """Outcome of :func:`verify_values`: ``ok`` is None when no section applies."""

    ok: bool | None
    section: str | None
    lines: list[str] = field(default_factory=list)
    failed: int = 0
    checked: int = 0
    not_reproduced: int = 0  # relations marked not reproduced: printed with their figures, neither pass nor fail


def pick_section(spec: TableSpec, data: str | None, scale: str | None) -> tuple[str | None, dict[str, Any]]:
    """The first verify section whose ``when`` matches (data, scale)."""
    for name, sec in spec.verify.items():
        when = (sec or {}).get("when", {})
        if when.get("data") == data and when.get("scale") == scale:
            return name, dict(sec)
    return None, {}


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
        for check in check_relation(rel, values, t, require_all):
            if check.verdict == NOT_REPRODUCED:  # a documented finding: shown with its figures, never OK
                res.lines.append(check.text())
                res.not_reproduced += 1
            else:
                emit(check.line, None if check.verdict is None else check.verdict == OK)
    res.ok = res.failed == 0
    verdict = "PASSED" if res.ok else "FAILED"
    marked = f", {res.not_reproduced} not reproduced (documented)" if res.not_reproduced else ""
    res.lines.append(f"{t} verify [{name}]: {res.checked} check(s), {res.failed} failed{marked} -> {verdict}")
    return res
