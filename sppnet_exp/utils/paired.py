"""Paired benchmarking on a noisy machine: interleaved rounds, per-pair ratios, distribution-free intervals.

Shared VMs change speed from one second to the next, so a ratio of two medians taken at different times pairs
rounds that ran at different machine speeds. Here every comparison is a sequence of **pairs**: each pair runs
every side once, back to back, in an order that alternates between pairs (A B, B A, A B, ... ; for three sides
A B C, C B A, ...), so a drift that is linear within two pairs hits every side equally. A ratio (or any figure
derived from several sides) is computed **per pair**, and the median over pairs is reported with its 95%
distribution-free interval: the order statistics ``[x_(k), x_(n+1-k)]`` of the ``n`` per-pair values, ``k`` the
largest rank with ``P(Binomial(n, 1/2) < k) <= 2.5%`` (the sign-test interval for a median; its coverage is
exact for any continuous distribution). With fewer than 6 pairs no such ``k`` exists and the interval is the
range (min–max), its actual coverage recorded beside it.

A target is judged on the interval, never on one number (:func:`verdict`): it is met when the whole interval
satisfies it, missed when the whole interval fails it, and undecided (noise) otherwise; with fewer pairs than a
95% interval needs (6) there is no verdict at all. :func:`run_pairs` keeps
adding pairs (up to a maximum and a time budget) while a target is undecided, after discarding warm-up rounds.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MEETS",
    "MISSES",
    "TOO_FEW",
    "UNDECIDED",
    "Derived",
    "fmt",
    "interval_summary",
    "median_interval",
    "run_pairs",
    "side_order",
    "summarize_pairs",
    "verdict",
]

MEETS, MISSES, UNDECIDED = "meets", "misses", "undecided (noise)"
TOO_FEW = "undecided (too few pairs for a 95% interval)"
LEVEL = 0.95

Measure = Mapping[str, float]
Pair = dict[str, dict[str, float]]  # side -> its measured figures in this pair


def _binom_cdf_half(k: int, n: int) -> float:
    """P(Binomial(n, 1/2) <= k)."""
    if k < 0:
        return 0.0
    return sum(math.comb(n, i) for i in range(min(k, n) + 1)) / 2.0**n


def median_interval(values: Sequence[float], level: float = LEVEL) -> dict[str, float]:
    """Median of ``values`` with its distribution-free ``level`` interval (see the module docstring).

    Returns ``{"median", "lo", "hi", "coverage", "min", "max", "n"}``; ``coverage`` is the interval's exact
    coverage (>= ``level`` unless there are fewer than 6 values, where the interval is the range).
    """
    xs = sorted(float(v) for v in values if v == v)  # NaN-free
    n = len(xs)
    if n == 0:
        nan = float("nan")
        return {"median": nan, "lo": nan, "hi": nan, "coverage": 0.0, "min": nan, "max": nan, "n": 0}
    alpha = (1.0 - level) / 2.0
    k = 0  # 1-based rank of the lower bound; 0 = none reaches the level
    for j in range(1, n // 2 + 1):
        if _binom_cdf_half(j - 1, n) <= alpha:
            k = j
        else:
            break
    rank = max(k, 1)
    coverage = 1.0 - 2.0 * _binom_cdf_half(rank - 1, n)
    return {
        "median": statistics.median(xs),
        "lo": xs[rank - 1],
        "hi": xs[n - rank],
        "coverage": coverage,
        "min": xs[0],
        "max": xs[-1],
        "n": n,
    }


def fmt(s: Mapping[str, Any] | None, digits: int = 2, scale: float = 1.0, unit: str = "") -> str:
    """``median [lo, hi]`` of a :func:`median_interval` summary, times ``scale``."""
    if not s or s.get("median") is None or (isinstance(s["median"], float) and math.isnan(s["median"])):
        return "n/a"
    m, lo, hi = (float(s[k]) * scale for k in ("median", "lo", "hi"))
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]{unit}"


def verdict(lo: float, hi: float, target: float, op: str) -> str:
    """``meets`` when all of ``[lo, hi]`` satisfies ``value op target``, ``misses`` when none does, else undecided."""
    if op not in (">=", "<="):
        raise ValueError(f"verdict: op must be '>=' or '<=', got {op!r}")
    if not (lo == lo and hi == hi):
        return UNDECIDED
    if op == ">=":
        return MEETS if lo >= target else MISSES if hi < target else UNDECIDED
    return MEETS if hi <= target else MISSES if lo > target else UNDECIDED


@dataclass(frozen=True)
class Derived:
    """A figure computed from one pair's measurements (a ratio, a fraction), optionally with a target."""

    fn: Callable[[Pair], float]
    target: float | None = None
    op: str = ">="
    unit: str = ""
    doc: str = ""


def side_order(names: Sequence[str], pair_index: int) -> list[str]:
    """The run order of the sides in pair ``pair_index``: as given in even pairs, reversed in odd ones."""
    names = list(names)
    return names if pair_index % 2 == 0 else names[::-1]


def interval_summary(pairs: Sequence[Pair], derived: Mapping[str, Derived]) -> dict[str, Any]:
    """Per side and figure, and per derived figure: median, interval and spread over ``pairs``; verdicts."""
    sides: dict[str, dict[str, dict[str, float]]] = {}
    for name in pairs[0] if pairs else {}:
        keys = pairs[0][name].keys()
        sides[name] = {key: median_interval([p[name][key] for p in pairs]) for key in keys}
    out: dict[str, Any] = {}
    for name, d in derived.items():
        s = median_interval([d.fn(p) for p in pairs])
        s.update(unit=d.unit, doc=d.doc)
        if d.target is not None:
            v = verdict(s["lo"], s["hi"], d.target, d.op) if s["coverage"] >= LEVEL else TOO_FEW
            s.update(target=d.target, op=d.op, verdict=v)
        out[name] = s
    return {"sides": sides, "derived": out}


def summarize_pairs(pairs: Sequence[Pair], derived: Mapping[str, Derived], **extra: Any) -> dict[str, Any]:
    """:func:`interval_summary` plus the raw ``pairs`` (every pair's figures) and ``extra`` keys."""
    return {**extra, **interval_summary(pairs, derived), "pairs": [dict(p) for p in pairs]}


def run_pairs(
    sides: Mapping[str, Callable[[], Measure]],
    derived: Mapping[str, Derived],
    min_pairs: int,
    max_pairs: int | None = None,
    warmup: int = 1,
    budget_s: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """Run ``warmup`` discarded rounds, then pairs of every side (order per :func:`side_order`) and summarise.

    Each side is a callable returning its measured figures (``{"seconds": .., ...}``). After ``min_pairs``, pairs
    are added while any derived target is undecided, up to ``max_pairs`` (default ``min_pairs``) and while the
    time spent on pairs stays under ``budget_s``. Returns :func:`summarize_pairs` with ``stopped`` (why it
    stopped), ``warmup`` and ``seconds``.
    """
    if min_pairs < 1:
        raise ValueError(f"run_pairs: min_pairs must be >= 1, got {min_pairs}")
    max_pairs = max(min_pairs, max_pairs or min_pairs)
    names = list(sides)
    start = clock()
    for w in range(warmup):
        for name in side_order(names, w):
            sides[name]()
    t_pairs = clock()
    pairs: list[Pair] = []
    stopped = "max_pairs"
    while len(pairs) < max_pairs:
        pair: Pair = {}
        for name in side_order(names, len(pairs)):
            pair[name] = {k: float(v) for k, v in sides[name]().items()}
        pairs.append({name: pair[name] for name in names})
        if len(pairs) < min_pairs:
            continue
        undecided = [d for d in derived.values() if d.target is not None and _undecided(pairs, d)]
        if not undecided:
            stopped = "decided" if any(d.target is not None for d in derived.values()) else "min_pairs"
            break
        if budget_s is not None and clock() - t_pairs >= budget_s:
            stopped = "budget"
            break
    return summarize_pairs(pairs, derived, stopped=stopped, warmup=warmup, seconds=clock() - start)


def _undecided(pairs: Sequence[Pair], d: Derived) -> bool:
    s = median_interval([d.fn(p) for p in pairs])
    if s["coverage"] < LEVEL:
        return True
    return verdict(s["lo"], s["hi"], float(d.target), d.op) == UNDECIDED  # type: ignore[arg-type]
