"""``"module:function"`` names: how the engine names a task and a detection method names its runner, so that the
modules they name are imported only when run (the pre-flight and ``--help`` load no torch)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["import_target"]


def import_target(target: str) -> Any:
    """The object ``"package.module:name"`` names, its module imported now; a clear error for a malformed name."""
    module, sep, name = target.partition(":")
    if not sep or not module or not name:
        raise KeyError(f"{target!r} is not a 'module:function' name")
    return getattr(importlib.import_module(module), name)
