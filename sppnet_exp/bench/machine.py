"""What a benchmark ran on: CPU model, cores, load before and after, memory, pinned thread counts, versions."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any

from sppnet_exp.utils.env import host_info, versions

__all__ = ["cpu_model", "load_average", "machine_info", "pin_threads"]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def pin_threads(threads: int | None = None) -> dict[str, Any]:
    """Fix torch's intra-op threads (default: the usable cores) and one inter-op thread; return what is set.

    Call it before any timed work: the inter-op pool can only be sized before its first use.
    """
    import torch

    n = int(threads or _usable_cores())
    torch.set_num_threads(n)
    with contextlib.suppress(RuntimeError):  # already used in this process: leave it, record what it is
        torch.set_num_interop_threads(1)
    return {
        "torch_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
    }


def machine_info() -> dict[str, Any]:
    """The machine a benchmark runs on (call at the start; add ``load_after`` at the end)."""
    host = host_info()
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "memory_gb": _memory_gb(),
        "hostname": host["hostname"],
        "device": host["device"],
        "load_before": load_average(),
        "versions": versions(),
    }
