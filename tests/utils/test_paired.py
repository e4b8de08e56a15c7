"""The pairing and interval logic of the benchmarks on synthetic timings: a drifting machine must not bias a ratio."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from sppnet_exp.utils.paired import (
    MEETS,
    MISSES,
    TOO_FEW,
    UNDECIDED,
    Derived,
    median_interval,
    run_pairs,
    side_order,
    verdict,
)


class DriftingMachine:
    """A simulated machine whose speed drifts: a side's measured seconds = its work x the slowdown at that time.

    The slowdown ramps from 1 to ``ramp`` over the run, jumps by ``jump`` x in the middle third (another job
    landing on the VM) and carries multiplicative log-normal noise of ``noise`` per measurement.
    """

    def __init__(self, ramp: float = 3.0, jump: float = 1.8, noise: float = 0.03, horizon: float = 200.0) -> None:
        self.t, self.ramp, self.jump, self.noise, self.horizon = 0.0, ramp, jump, noise, horizon
        self.rng = np.random.default_rng(0)

    def slowdown(self) -> float:
        f = 1.0 + (self.ramp - 1.0) * min(1.0, self.t / self.horizon)
        if self.horizon / 3 <= self.t < 2 * self.horizon / 3:
            f *= self.jump
        return f

    def side(self, work: float):  # noqa: ANN201
        def run() -> dict[str, float]:
            seconds = work * self.slowdown() * float(np.exp(self.rng.normal(0.0, self.noise)))
            self.t += seconds
            return {"seconds": seconds}

        return run

    def clock(self) -> float:
        return self.t


RATIO = Derived(lambda p: p["b"]["seconds"] / p["a"]["seconds"], target=1.2, op=">=")


def test_median_interval_is_the_sign_test_interval() -> None:
    xs = [float(v) for v in range(1, 11)]  # n = 10: k = 2 (P(B <= 1) = 11/1024 <= 2.5% < P(B <= 2) = 56/1024)
    s = median_interval(xs[::-1])
    assert (s["median"], s["lo"], s["hi"]) == (5.5, 2.0, 9.0)
    assert s["coverage"] == pytest.approx(1 - 2 * 11 / 1024)
    six = median_interval([3.0, 1.0, 2.0, 6.0, 5.0, 4.0])  # n = 6 is the smallest with a 95% interval: the range
    assert (six["lo"], six["hi"]) == (1.0, 6.0) and six["coverage"] == pytest.approx(1 - 2 / 64)
    five = median_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert five["coverage"] < 0.95 and (five["lo"], five["hi"]) == (1.0, 5.0)
    assert math.isnan(median_interval([])["median"])


def test_interval_covers_the_true_median_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(2000):
        s = median_interval(rng.lognormal(0.0, 0.3, size=12).tolist())
        hits += s["lo"] <= 1.0 <= s["hi"]  # the median of lognormal(0, .) is 1
    assert 0.95 <= hits / 2000 <= 0.995  # exact coverage for n = 12 is 1 - 2 P(B <= 2) = 0.9807


def test_verdict_uses_the_whole_interval() -> None:
    assert verdict(1.3, 1.5, 1.2, ">=") == MEETS
    assert verdict(1.0, 1.1, 1.2, ">=") == MISSES
    assert verdict(1.1, 1.3, 1.2, ">=") == UNDECIDED
    assert verdict(0.01, 0.04, 0.05, "<=") == MEETS
    assert verdict(0.06, 0.09, 0.05, "<=") == MISSES
    assert verdict(0.03, 0.07, 0.05, "<=") == UNDECIDED
    with pytest.raises(ValueError, match="op"):
        verdict(0, 1, 0, ">")


def test_side_order_alternates() -> None:
    assert [side_order("ab", i) for i in range(3)] == [["a", "b"], ["b", "a"], ["a", "b"]]
    assert side_order("abc", 1) == ["c", "b", "a"]


def test_drifting_machine_does_not_bias_the_paired_ratio() -> None:
    machine = DriftingMachine()
    res = run_pairs(
        {"a": machine.side(1.0), "b": machine.side(1.25)},
        {"ratio": RATIO},
        min_pairs=30,
        warmup=1,
        clock=machine.clock,
    )
    r = res["derived"]["ratio"]
    assert r["median"] == pytest.approx(1.25, rel=0.02)
    assert r["lo"] <= 1.25 <= r["hi"]
    assert r["hi"] - r["lo"] < 0.08  # narrow although the machine's speed changed 5x over the run
    assert r["verdict"] == MEETS
    a_times = [p["a"]["seconds"] for p in res["pairs"]]
    assert max(a_times) / min(a_times) > 3  # the drift was real
    assert len(res["pairs"]) == 30 and res["pairs"][0].keys() == {"a", "b"}


def test_unpaired_medians_on_the_same_machine_are_biased() -> None:
    """What the pairing prevents: all A rounds, then all B rounds, ratio of the medians."""
    machine = DriftingMachine()
    a = [machine.side(1.0)()["seconds"] for _ in range(30)]
    b = [machine.side(1.25)()["seconds"] for _ in range(30)]
    assert statistics.median(b) / statistics.median(a) > 1.25 * 1.3


def test_run_pairs_adds_pairs_while_undecided_and_stops_on_budget() -> None:
    machine = DriftingMachine(ramp=1.0, jump=1.0, noise=0.05)
    res = run_pairs(
        {"a": machine.side(1.0), "b": machine.side(1.2)},
        {"ratio": RATIO},
        min_pairs=6,
        max_pairs=40,
        clock=machine.clock,
        budget_s=30.0,
    )
    # the true ratio sits on the target: it stays undecided, so pairs are added until the budget is spent
    assert res["stopped"] == "budget" and 6 < len(res["pairs"]) < 40
    assert res["derived"]["ratio"]["verdict"] == UNDECIDED
    decided = run_pairs(
        {"a": machine.side(1.0), "b": machine.side(2.0)},
        {"ratio": RATIO},
        min_pairs=6,
        max_pairs=40,
        clock=machine.clock,
    )
    assert decided["stopped"] == "decided" and len(decided["pairs"]) == 6


def test_too_few_pairs_give_no_verdict() -> None:
    machine = DriftingMachine(ramp=1.0, jump=1.0, noise=0.0)
    res = run_pairs(
        {"a": machine.side(1.0), "b": machine.side(2.0)}, {"ratio": RATIO}, min_pairs=3, clock=machine.clock
    )
    assert res["derived"]["ratio"]["verdict"] == TOO_FEW
