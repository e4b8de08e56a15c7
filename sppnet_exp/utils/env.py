"""Provenance recorded next to every result: library versions, git commit, host and devices."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

_PACKAGES = {
    "torch": "torch",
    "torchvision": "torchvision",
    "lightning": "lightning",
    "hydra": "hydra-core",
    "omegaconf": "omegaconf",
    "torchmetrics": "torchmetrics",
    "wandb": "wandb",
    "numpy": "numpy",
}


def _dist_version(dist: str) -> str | None:
    """Installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, Any]:
    """Versions of Python, the main libraries, CUDA/cuDNN (None on CPU-only builds) and the platform."""
    out: dict[str, Any] = {"python": platform.python_version()}
    for key, dist in _PACKAGES.items():
        out[key] = _dist_version(dist)
    cuda = cudnn = None
    try:
        import torch

        cuda = torch.version.cuda
        if torch.backends.cudnn.is_available():
            cudnn = torch.backends.cudnn.version()
    except ImportError:
        pass
    out["cuda"] = cuda
    out["cudnn"] = cudnn
    out["platform"] = platform.platform()
    return out


def git_info(repo_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """``{"commit": sha, "dirty": bool}`` of the checkout at ``repo_dir``; None values outside git."""
    cwd = Path(repo_dir) if repo_dir is not None else Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": bool(status.strip())}


def host_info() -> dict[str, Any]:
    """Hostname, CPU count and the CUDA device names (empty list without CUDA)."""
    devices: list[str] = []
    try:
        import torch

        if torch.cuda.is_available():
            devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return {
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "cuda_devices": devices,
        "device": devices[0] if devices else "cpu",
        "executable": sys.executable,
    }
