"""Training input sizes: single-size, multi-size (alternating) and random-size (paper §2.3), per epoch or per
segment of the schedule."""

from __future__ import annotations

import random
from collections.abc import Sequence


class SizeSchedule:
    """The input side length used at each point of training.

    - ``fixed``: always ``sizes[0]`` (no-SPP and SPP single-size training);
    - ``alternate``: the sizes in turn — the paper's 224/180 multi-size training, "one full epoch on each
      network" in turn (§2.3);
    - ``random``: an integer drawn uniformly from ``[min(sizes), max(sizes)]`` per period (the paper's
      U[180, 224] variant), from an RNG keyed by (seed, period) so every DDP rank draws the same size.

    The period is one epoch (``segments=None``: the paper's rule) or one of ``segments`` equal parts of the whole
    run's optimizer steps. The paper alternates over 70-90 epochs, so each size spans the whole schedule, every
    learning-rate phase included, in 35-45 stretches; a 9-epoch run alternating by epoch puts 4 whole epochs at the
    small size and gives the last phase to one size only. ``segments = paper_epochs`` keeps the paper's number of
    switches and the fraction of the schedule each stretch takes whatever the number of epochs (at the paper's
    scale, where the run has ``paper_epochs`` epochs, it is the per-epoch rule again). Step-keyed, so it is the
    same on every rank and after a resume.
    """

    SCHEDULES = ("fixed", "alternate", "random")

    def __init__(
        self, schedule: str = "fixed", sizes: Sequence[int] = (224,), seed: int = 0, segments: int | None = None
    ) -> None:
        if schedule not in self.SCHEDULES:
            raise ValueError(f"size schedule {schedule!r}: expected one of {self.SCHEDULES}")
        if not sizes or any(int(s) < 1 for s in sizes):
            raise ValueError(f"size schedule needs positive sizes, got {list(sizes)}")
        if segments is not None and int(segments) < 1:
            raise ValueError(f"size schedule segments must be a positive number of periods or null, got {segments}")
        self.schedule = schedule
        self.sizes = [int(s) for s in sizes]
        self.seed = int(seed)
        self.segments = None if segments is None else int(segments)

    def period(self, epoch: int, step: int = 0, total_steps: int | None = None) -> int:
        """Index of the period holding optimizer ``step`` of epoch ``epoch`` (both 0-based)."""
        if self.segments is None:
            return int(epoch)
        if not total_steps or total_steps < 1:
            raise ValueError("a size schedule by segments needs the run's total number of optimizer steps")
        return min(self.segments - 1, int(step) * self.segments // int(total_steps))

    def size_for_period(self, period: int) -> int:
        """The side length of period ``period`` (an epoch, or a segment of the run)."""
        if self.schedule == "fixed":
            return self.sizes[0]
        if self.schedule == "alternate":
            return self.sizes[period % len(self.sizes)]
        return random.Random(self.seed * 1_000_003 + period).randint(min(self.sizes), max(self.sizes))

    def size_for_epoch(self, epoch: int) -> int:
        """The side length of epoch ``epoch`` under the per-epoch rule (``segments=None``)."""
        return self.size_for_period(epoch)

    def size_at(self, epoch: int, step: int, total_steps: int | None = None) -> int:
        """The side length at optimizer ``step`` (global, 0-based) of epoch ``epoch``."""
        return self.size_for_period(self.period(epoch, step, total_steps))

    def __repr__(self) -> str:
        per = "epoch" if self.segments is None else f"1/{self.segments} of the run"
        return f"SizeSchedule({self.schedule!r}, {self.sizes}, per {per})"
