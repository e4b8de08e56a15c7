"""The paper's findings as statistical relations between table cells, checked on the mean over seeds.

A relation of a ``verify`` section (schema in ``experiments/table2/expected.yaml``) compares ours, the mean over the
seeds of each cell, and prints every difference with its standard error beside it:

- ``less: SEL, than: SEL`` — ours(less) < ours(than) − ``margin`` (``or_equal: true``: ≤), for every pair the
  selectors form; ``min_se: k`` also asks the difference to exceed k standard errors; ``at_least: k`` asks it of
  k of the N pairs only (Table 2: "(b) < (a) for at least 3 of the 4 networks").
- ``less: SEL, than: SEL, mean_gain: k`` — the gains ours(than) − ours(less) averaged over the pairs exceed
  ``margin`` and k standard errors of that average (Table 2: the gains of SPP averaged over the 4 networks).
- ``of: SEL, to: SEL, within: d`` — |ours(of) − ours(to)| ≤ d (Table 9: SPP 5-scale within 3 mAP of R-CNN).
- ``at: SEL, min: x`` and/or ``max: x`` — x ≤ ours(at) ≤ x' (Tables 9/10: the speed-ups of section 4.3).

A selector maps ``row`` / ``column`` to an id or a list of ids. The first selector (``less``, ``of``, ``at``) picks
values of ``metric`` (extra rows only where it names the row); each is paired with the values of the second one
that equal it on the axes the second leaves free. Standard errors: a cell's is std/√n over its seeds; that of a
difference is the std of the per-seed differences / √n when both cells ran the same seeds (paired), else
√(s_a²/n_a + s_b²/n_b); that of a mean of N gains √(Σ SE_i²) / N. A single seed has none (printed as —).

``status: not_reproduced`` with a ``reason`` marks a finding that did not hold after a principled attempt: it is still
evaluated and printed with its figures, labelled NOT REPRODUCED (reason), never OK; it neither passes nor fails.
A missing cell fails the relation when the section's ``require_all`` is true, marked or not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sppnet_exp.reporting.collect import Agg
from sppnet_exp.reporting.tables import CellValue

AXES = ("row", "column")
OK, FAIL, NOT_REPRODUCED = "OK", "FAIL", "NOT REPRODUCED"
KINDS = {  # selector keys -> the keys that may come with them
    "less": {"less", "than", "margin", "or_equal", "min_se", "at_least", "mean_gain"},
    "of": {"of", "to", "within"},
    "at": {"at", "min", "max"},
}
COMMON = {"metric", "status", "reason", "enabled", "note"}


@dataclass
class Check:
    """One printed line of a relation: ``verdict`` OK / FAIL / NOT REPRODUCED (``note``: the reason), or None for
    a line that is not a check (a pair of an ``at_least`` relation, a disabled relation, a skipped cell)."""

    line: str
    verdict: str | None = None
    note: str = ""

    def text(self) -> str:
        """The line with its verdict: ``... OK``, ``... NOT REPRODUCED (reason)``."""
        if self.verdict is None:
            return self.line
        return f"{self.line} {self.verdict}" + (f" ({self.note})" if self.note else "")


@dataclass(frozen=True)
class Diff:
    """ours(b) − ours(a) with its standard error (None for a single seed) and whether seeds were paired."""

    value: float
    se: float | None
    paired: bool
    n: str

    def text(self, digits: int = 2) -> str:
        """``Δ +1.01 ± 0.30 SE (paired, n=3)``."""
        se = "—" if self.se is None else f"{self.se:.{digits}f}"
        return f"Δ {self.value:+.{digits}f} ± {se} SE ({'paired, ' if self.paired else ''}n={self.n})"


def _std(xs: Sequence[float]) -> float:
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def diff(a: Agg, b: Agg) -> Diff:
    """ours(b) − ours(a): paired SE over the per-seed differences when both ran the same seeds, else unpaired."""
    value = b.mean - a.mean
    paired = a.n >= 2 and a.seeds == b.seeds and None not in a.seeds and len(a.values) == len(b.values) == a.n
    if paired:
        d = [y - x for x, y in zip(a.values, b.values, strict=True)]
        return Diff(value, _std(d) / math.sqrt(len(d)), True, str(a.n))
    n = str(a.n) if a.n == b.n else f"{a.n}/{b.n}"
    if a.std is None or b.std is None:
        return Diff(value, None, False, n)
    return Diff(value, math.sqrt(a.std**2 / a.n + b.std**2 / b.n), False, n)


def mean_se(diffs: Sequence[Diff]) -> float | None:
    """Standard error of the mean of independent differences: √(Σ SE_i²) / N; None when one has none."""
    if not diffs or any(d.se is None for d in diffs):
        return None
    return math.sqrt(sum(d.se**2 for d in diffs)) / len(diffs)  # type: ignore[operator]


def _matches(sel: Mapping[str, Any], v: CellValue) -> bool:
    """Whether ``v`` is picked by a selector such as ``{row: nospp}`` or ``{row: [net1, net2]}``."""
    for k, want in sel.items():
        allowed = want if isinstance(want, list | tuple) else [want]
        if getattr(v, k) not in allowed:
            return False
    return True


def _sel(sel: Mapping[str, Any]) -> str:
    """``row=nospp`` / ``row=net1,net2`` text of a selector."""
    return " ".join(f"{k}={','.join(map(str, x)) if isinstance(x, list | tuple) else x}" for k, x in sel.items())


def _concrete(sel: Mapping[str, Any], v: CellValue) -> dict[str, str]:
    """The selector with each axis set to ``v``'s value (a list selector names the member in a pair's line)."""
    return {k: getattr(v, k) for k in sel}


def pairs(
    first: Mapping[str, Any], second: Mapping[str, Any], metric: str, values: Sequence[CellValue]
) -> list[tuple[CellValue, CellValue]]:
    """(a, b) for every value a of ``first`` and value b of ``second`` equal to a on the axes ``second`` leaves free."""
    lhs = [v for v in values if v.metric == metric and (not v.extra or "row" in first) and _matches(first, v)]
    out = []
    for a in lhs:
        free = [k for k in AXES if k not in second]
        for b in values:
            if b.metric == metric and _matches(second, b) and all(getattr(b, k) == getattr(a, k) for k in free):
                out.append((a, b))
    return out


def compared(
    rel: Mapping[str, Any], kind: str, metric: str, values: Sequence[CellValue]
) -> list[tuple[CellValue, CellValue]]:
    """The (a, b) value pairs a relation of ``kind`` compares; a threshold (``at``) pairs each value with itself."""
    if kind == "at":
        sel = rel["at"]
        return [(v, v) for v in values if v.metric == metric and (not v.extra or "row" in sel) and _matches(sel, v)]
    first, second = ("less", "than") if kind == "less" else ("of", "to")
    return pairs(rel[first], rel[second], metric, values)


def _kind(rel: Mapping[str, Any], where: str) -> str:
    """The relation's kind (its first selector key); unknown or mixed keys raise naming the relation."""
    kinds = [k for k in KINDS if k in rel]
    if len(kinds) != 1 or "metric" not in rel:
        raise ValueError(f"{where}: a relation needs `metric` and one of {list(KINDS)}: {dict(rel)}")
    kind = kinds[0]
    unknown = set(rel) - KINDS[kind] - COMMON
    if unknown:
        raise ValueError(f"{where}: keys {sorted(unknown)} do not go with `{kind}`: {dict(rel)}")
    need = {"less": ("than",), "of": ("to", "within"), "at": ()}[kind]
    if any(k not in rel for k in need) or (kind == "at" and "min" not in rel and "max" not in rel):
        raise ValueError(f"{where}: `{kind}` needs {list(need) or ['min or max']}: {dict(rel)}")
    if "at_least" in rel and "mean_gain" in rel:
        raise ValueError(f"{where}: `at_least` and `mean_gain` are two relations; write them as two entries")
    status = rel.get("status")
    if status not in (None, "not_reproduced") or (status and not rel.get("reason")):
        raise ValueError(f"{where}: `status` is `not_reproduced` with a `reason` (the measured one), or absent")
    return kind


def describe(rel: Mapping[str, Any], where: str = "relation") -> str:
    """The relation as one line of text: ``top1_err: row=spp_single < row=nospp in at least 3 pairs``."""
    kind, m = _kind(rel, where), rel["metric"]
    if kind == "at":
        lo, hi = rel.get("min"), rel.get("max")
        rng = " and ".join(s for s in (lo is not None and f"≥ {lo}", hi is not None and f"≤ {hi}") if s)
        return f"{m}: {_sel(rel['at'])} {rng}"
    if kind == "of":
        return f"{m}: |{_sel(rel['of'])} − {_sel(rel['to'])}| ≤ {float(rel['within']):.2f}"
    margin = float(rel.get("margin", 0.0))
    op = "≤" if rel.get("or_equal") else "<"
    if "mean_gain" in rel:
        tail = f" > {margin:.2f}" if margin else ""
        return f"{m}: mean gain of {_sel(rel['less'])} over {_sel(rel['than'])}{tail} by > {rel['mean_gain']} SE"
    s = f"{m}: {_sel(rel['less'])} {op} {_sel(rel['than'])}" + (f" - {margin:.2f}" if margin else "")
    if rel.get("min_se") is not None:
        s += f" by > {rel['min_se']} SE"
    if rel.get("at_least") is not None:
        s += f" in at least {int(rel['at_least'])} pairs"
    return s


def _check(line: str, holds: bool, rel: Mapping[str, Any]) -> Check:
    """OK / FAIL, or for a marked relation NOT REPRODUCED with its reason (and a hint when it holds now)."""
    if rel.get("status") == "not_reproduced":
        hint = "; it holds in these results: check and remove the mark" if holds else ""
        return Check(line, NOT_REPRODUCED, f"{rel['reason']}{hint}")
    return Check(line, OK if holds else FAIL)


def _pair_holds(rel: Mapping[str, Any], d: Diff) -> tuple[bool, str]:
    """Whether one (less, than) pair satisfies the relation, and why not when it does not."""
    margin = float(rel.get("margin", 0.0))
    holds = d.value >= margin if rel.get("or_equal") else d.value > margin
    k = rel.get("min_se")
    if k is None or not holds:
        return holds, ""
    if d.se is None:
        return False, "; no standard error: needs >= 2 seeds per cell"
    return d.value > float(k) * d.se, ""


def check_relation(rel: Mapping[str, Any], values: Sequence[CellValue], table: str, require_all: bool) -> list[Check]:
    """Evaluate one relation on the rendered values; one :class:`Check` per printed line."""
    where = f"{table} relation"
    kind, metric = _kind(rel, where), str(rel["metric"])
    desc = f"{where} {describe(rel, where)}"
    if not rel.get("enabled", True):
        return [Check(f"{desc}: disabled in this section")]
    found = compared(rel, kind, metric, values)
    if not found:
        return [Check(f"{desc}: no value of the table matches the selectors", FAIL)]
    out: list[Check] = []
    present: list[tuple[CellValue, CellValue]] = []
    for a, b in found:
        gone = [v for v in ((a,) if a is b else (a, b)) if v.ours is None]
        if not gone:
            present.append((a, b))
            continue
        text = "; ".join(f"cell {v.cell} view {v.view} has no finished run" for v in gone)
        out.append(Check(f"{desc}: missing ({text})", FAIL) if require_all else Check(f"{desc}: skipped ({text})"))
    if not present:
        return out
    if kind == "at":
        return out + [_threshold(rel, a, where) for a, _ in present]
    if kind == "of":
        return out + [_within(rel, a, b, where) for a, b in present]
    if "mean_gain" in rel:
        return out + [_mean_gain(rel, present, desc)]
    return out + _less(rel, present, where, desc)


def _free(second: Mapping[str, Any], a: CellValue) -> str:
    """`` [column=zf5]``: the axes a pair shares (those the second selector leaves free)."""
    free = [f"{k}={getattr(a, k)}" for k in AXES if k not in second]
    return f" [{', '.join(free)}]" if free else ""


def _threshold(rel: Mapping[str, Any], v: CellValue, where: str) -> Check:
    """``x <= ours`` and/or ``ours <= x'`` on one value, its standard error beside it."""
    ours: Agg = v.ours  # type: ignore[assignment]
    lo, hi = rel.get("min"), rel.get("max")
    holds = (lo is None or ours.mean >= float(lo)) and (hi is None or ours.mean <= float(hi))
    se = "—" if ours.se is None else f"{ours.se:.{v.digits}f}"
    rng = " and ".join(s for s in (lo is not None and f"≥ {lo}", hi is not None and f"≤ {hi}") if s)
    at = _sel({"row": v.row, "column": v.column})
    line = f"{where} {rel['metric']}: {at} {rng}: {ours.mean:.{v.digits}f} ± {se} SE (n={ours.n})"
    return _check(line, holds, rel)


def _within(rel: Mapping[str, Any], a: CellValue, b: CellValue, where: str) -> Check:
    """|ours(of) − ours(to)| <= d on one pair."""
    d, dg = diff(a.ours, b.ours), max(a.digits, b.digits)  # type: ignore[arg-type]
    head = f"{where} {rel['metric']}: |{_sel(_concrete(rel['of'], a))} − {_sel(_concrete(rel['to'], b))}|"
    means = f"{a.ours.mean:.{dg}f} vs {b.ours.mean:.{dg}f}"  # type: ignore[union-attr]
    line = f"{head} ≤ {float(rel['within']):.2f}{_free(rel['to'], a)}: {means}, {d.text(dg)}"
    return _check(line, abs(d.value) <= float(rel["within"]), rel)


def _less(rel: Mapping[str, Any], present: Sequence[tuple[CellValue, CellValue]], where: str, desc: str) -> list[Check]:
    """Every pair ours(less) < ours(than) − margin (or at least ``at_least`` of them)."""
    op = "≤" if rel.get("or_equal") else "<"
    margin = float(rel.get("margin", 0.0))
    k = rel.get("at_least")
    out, held = [], 0
    for a, b in present:
        d, dg = diff(a.ours, b.ours), max(a.digits, b.digits)  # type: ignore[arg-type]
        holds, why = _pair_holds(rel, d)
        held += holds
        head = f"{where} {rel['metric']}: {_sel(_concrete(rel['less'], a))} {op} {_sel(_concrete(rel['than'], b))}"
        head += (f" - {margin:.2f}" if margin else "") + (f" by > {rel['min_se']} SE" if rel.get("min_se") else "")
        line = f"{head}{_free(rel['than'], a)}: {a.ours.mean:.{dg}f} {op} {b.ours.mean:.{dg}f}, {d.text(dg)}{why}"  # type: ignore[union-attr]
        if k is None:
            out.append(_check(line, holds, rel))
        else:
            out.append(Check(line + (" (holds)" if holds else " (does not hold)")))
    if k is not None:
        line = f"{desc}: {held} of {len(present)} hold (need {int(k)})"
        out.append(_check(line, held >= int(k), rel))
    return out


def _mean_gain(rel: Mapping[str, Any], present: Sequence[tuple[CellValue, CellValue]], desc: str) -> Check:
    """The mean over the pairs of ours(than) − ours(less) > margin and > k standard errors of the mean."""
    diffs = [diff(a.ours, b.ours) for a, b in present]  # type: ignore[arg-type]
    dg = max(max(a.digits, b.digits) for a, b in present)
    mean = sum(d.value for d in diffs) / len(diffs)
    se = mean_se(diffs)
    k, margin = float(rel["mean_gain"]), float(rel.get("margin", 0.0))
    gains = ", ".join(f"{d.value:+.{dg}f}" for d in diffs)
    if se is None:
        line = f"{desc}: mean {mean:+.{dg}f} ± — SE over {len(diffs)} ({gains}); no standard error: needs >= 2 seeds"
        return _check(line, False, rel)
    ratio = "∞" if se == 0 else f"{mean / se:.1f}"
    line = f"{desc}: mean {mean:+.{dg}f} ± {se:.{dg}f} SE = {ratio} SE over {len(diffs)} ({gains})"
    return _check(line, mean > margin and mean > k * se, rel)
