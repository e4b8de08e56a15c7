"""Training input sizes per epoch: single-size, multi-size (alternating) and random-size (paper §2.3)."""

from __future__ import annotations

import random
from collections.abc import Sequence


class SizeSchedule:
    """The input side length used in each epoch.

    - ``fixed``: always ``sizes[0]`` (no-SPP and SPP single-size training);
    - ``alternate``: ``sizes[epoch % len(sizes)]`` — the paper's 224/180 multi-size training, one full epoch
      on each network in turn;
    - ``random``: an integer drawn uniformly from ``[min(sizes), max(sizes)]`` per epoch (the paper's
      U[180, 224] variant), from an RNG keyed by (seed, epoch) so every DDP rank draws the same size.
    """

    SCHEDULES = ("fixed", "alternate", "random")

    def __init__(self, schedule: str = "fixed", sizes: Sequence[int] = (224,), seed: int = 0) -> None:
        if schedule not in self.SCHEDULES:
            raise ValueError(f"size schedule {schedule!r}: expected one of {self.SCHEDULES}")
        if not sizes or any(int(s) < 1 for s in sizes):
            raise ValueError(f"size schedule needs positive sizes, got {list(sizes)}")
        self.schedule = schedule
        self.sizes = [int(s) for s in sizes]
        self.seed = int(seed)

    def size_for_epoch(self, epoch: int) -> int:
        """Return the side length for ``epoch`` (0-based)."""
        if self.schedule == "fixed":
            return self.sizes[0]
        if self.schedule == "alternate":
            return self.sizes[epoch % len(self.sizes)]
        return random.Random(self.seed * 1_000_003 + epoch).randint(min(self.sizes), max(self.sizes))

    def __repr__(self) -> str:
        return f"SizeSchedule({self.schedule!r}, {self.sizes})"
