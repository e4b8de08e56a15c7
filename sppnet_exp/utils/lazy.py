"""A package face whose public names are imported on first use (PEP 562): a light submodule of the package (the
data roots, the mapping rules' names) then loads without torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, sources: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: name -> ``getattr(<package>.<sources[name]>, name)``, imported on
    first use and kept in ``namespace`` (the package's ``globals()``) so later lookups are plain attributes."""

    def __getattr__(name: str) -> Any:
        if name not in sources:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{sources[name]}", package), name)
        namespace[name] = value
        return value

    return __getattr__
