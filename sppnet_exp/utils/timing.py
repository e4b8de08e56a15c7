"""The one CUDA synchronisation for timers: wall-clock phases on a GPU are only meaningful after a sync."""

from __future__ import annotations

import time

import torch

__all__ = ["sync", "synced_clock"]


def sync(device: torch.device | str | None) -> None:
    """Wait for the queued kernels of ``device`` (a no-op on CPU)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def synced_clock(device: torch.device | str | None) -> float:
    """``time.perf_counter()`` after :func:`sync`."""
    sync(device)
    return time.perf_counter()
